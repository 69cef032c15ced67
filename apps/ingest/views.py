"""Ingest endpoints. Plain Django views on purpose: no DRF serializer on the hot path."""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from apps.apikeys.auth import bearer_token
from apps.apikeys.services import KeyPrincipal, api_key_authenticate, api_key_is_revoked
from apps.ingest.runtime import tune_once
from apps.ingest.services import (
    PayloadTooLarge,
    RateLimited,
    UnsupportedMedia,
    check_rate,
    decompress,
    spans_ingest_body,
    spans_store,
    spans_store_columns,
)
from kriyplatform.errors import RELATIONAL_OUTAGE, AppError, SpanStoreUnavailable

log = logging.getLogger(__name__)
JSON = "application/json"
PROTOBUF = "application/x-protobuf"


def _json(body: dict, status: int, **headers: str) -> HttpResponse:
    resp = HttpResponse(orjson.dumps(body), status=status, content_type=JSON)
    for k, v in headers.items():
        resp[k.replace("_", "-")] = v
    return resp


def _authenticate(request: HttpRequest) -> tuple[KeyPrincipal | None, int, str]:
    raw = bearer_token(request)
    if raw is None:
        return None, 401, "Authorization: send `Bearer <API key>` (an ingest-scoped kp_… key)"
    principal = api_key_authenticate(raw)
    if principal is None:
        if api_key_is_revoked(raw):
            return None, 403, "Authorization: this API key was revoked"
        return None, 401, "Authorization: unknown API key"
    if "ingest" not in principal.scopes:
        return None, 403, "Authorization: this API key lacks the 'ingest' scope"
    return principal, 200, ""


def _read_body(request: HttpRequest) -> bytes:
    limit = settings.KRIY_INGEST["MAX_BODY_BYTES"]
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise PayloadTooLarge(f"body: over {limit} bytes")
    body = request.body
    if len(body) > limit:
        raise PayloadTooLarge(f"body: over {limit} bytes")
    return body


def _guarded(
    handler: Callable[[HttpRequest], HttpResponse], error: Callable[[str, int, dict], HttpResponse]
) -> Callable[[HttpRequest], HttpResponse]:
    """Map every refusal to its status code; nothing here may answer 500."""

    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        tune_once()
        if request.method != "POST":
            resp = error("method: use POST", 405, {})
            resp["Allow"] = "POST"
            return resp
        try:
            return handler(request)
        except RateLimited as exc:
            return error(exc.message, 429, {"Retry-After": str(exc.retry_after)})
        except AppError as exc:
            return error(exc.message, exc.status_code, {})
        except SpanStoreUnavailable as exc:
            log.warning("ingest refused, span store unavailable: %s", exc)
            return error(
                "the span store is unavailable; nothing was stored, resend later",
                503,
                {"Retry-After": str(exc.retry_after)},
            )
        except RELATIONAL_OUTAGE as exc:
            log.warning("ingest refused, database unavailable: %s", exc)
            return error(
                "the database is unavailable; nothing was stored, resend later",
                503,
                {"Retry-After": "5"},
            )

    return view


def _native(request: HttpRequest) -> HttpResponse:
    principal, status, message = _authenticate(request)
    if principal is None:
        return (
            _json({"error": message}, status, WWW_Authenticate='Bearer realm="kriyplatform"')
            if status == 401
            else _json({"error": message}, status)
        )
    ctype = request.content_type or ""
    if ctype != JSON:
        raise UnsupportedMedia(
            f"Content-Type: {ctype or '(none)'} is not supported; send application/json"
        )
    data = decompress(_read_body(request), request.META.get("HTTP_CONTENT_ENCODING", ""))
    result = spans_ingest_body(principal=principal, body=data)
    body = result.as_dict()
    if result.accepted == 0 and result.rejected:
        return _json(body, 400)
    return _json(body, 200)


def _native_error(message: str, status: int, headers: dict) -> HttpResponse:
    return _json({"error": message}, status, **{k.replace("-", "_"): v for k, v in headers.items()})


native_spans = _guarded(_native, _native_error)


def _otlp_ctype(request: HttpRequest) -> str:
    ctype = (request.content_type or "").lower()
    return ctype if ctype in (JSON, PROTOBUF) else ""


def _otlp(request: HttpRequest) -> HttpResponse:
    ctype = _otlp_ctype(request)
    principal, status, message = _authenticate(request)
    if principal is None:
        return _otlp_error(message, status, {})
    if not ctype:
        raise UnsupportedMedia(
            f"Content-Type: {request.content_type or '(none)'} is not supported; send application/x-protobuf or application/json"
        )
    data = decompress(_read_body(request), request.META.get("HTTP_CONTENT_ENCODING", ""))
    return _otlp_ingest(principal, data, ctype)


def _otlp_ingest(principal: KeyPrincipal, data: bytes, ctype: str) -> HttpResponse:
    from apps.ingest.fastotlp import otlp_columns, otlp_columns_from_bytes
    from apps.ingest.native import Limits, validate_spans
    from apps.ingest.otlp import OtlpDecodeError, decode_request, encode_response, to_native

    limits = Limits.from_settings()
    max_spans = settings.KRIY_INGEST["MAX_SPANS_PER_REQUEST"]
    if ctype == PROTOBUF:
        # the common case, read straight off the wire; anything unusual goes through protobuf
        fast = otlp_columns_from_bytes(data, limits, max_spans)
        if fast is not None:
            cols, n = fast
            check_rate(principal, n)
            spans_store_columns(principal=principal, cols=cols, n=n)
            return HttpResponse(encode_response(0, "", ctype), status=200, content_type=ctype)
    try:
        req = decode_request(data, ctype)
    except OtlpDecodeError as exc:
        raise AppError(f"body: {exc}") from exc
    fast = otlp_columns(req, limits, max_spans)
    if fast is not None:  # every span maps and is valid (else the detailed path below)
        cols, n = fast
        check_rate(principal, n)
        spans_store_columns(principal=principal, cols=cols, n=n)
        return HttpResponse(encode_response(0, "", ctype), status=200, content_type=ctype)
    mapped = to_native(req)
    if len(mapped) > max_spans:
        raise PayloadTooLarge(f"spans: at most {max_spans} spans per request, got {len(mapped)}")
    if not mapped:
        return HttpResponse(encode_response(0, "", ctype), status=200, content_type=ctype)
    check_rate(principal, len(mapped))
    natives = [m[0] for m in mapped]
    rows, rejected = validate_spans(natives, limits)
    # Mapping errors (bad ids) come first; validation errors of mapped spans otherwise.
    errors: list[str] = []
    n_rejected = 0
    for r in rejected:
        n_rejected += 1
        native, map_errors, sid = mapped[r.index]
        why = map_errors if native is None else r.errors
        errors.append(f"span {r.index} ({sid or r.span_id or 'no id'}): {'; '.join(why)}")
    spans_store(principal=principal, rows=rows)
    message = "; ".join(errors)
    if len(message) > 64 * 1024:
        message = message[: 64 * 1024] + " …"
    if not rows:
        return _otlp_error(message or "no valid span", 400, {}, ctype)
    return HttpResponse(encode_response(n_rejected, message, ctype), status=200, content_type=ctype)


def _otlp_error(message: str, status: int, headers: dict, ctype: str = "") -> HttpResponse:
    from apps.ingest.otlp import encode_status

    ctype = ctype or PROTOBUF
    resp = HttpResponse(encode_status(message, ctype), status=status, content_type=ctype)
    for k, v in headers.items():
        resp[k] = v
    return resp


def _otlp_error_for(
    request_ctype_getter: Callable[[], str],
) -> Callable[[str, int, dict], HttpResponse]:
    def err(message: str, status: int, headers: dict) -> HttpResponse:
        return _otlp_error(message, status, headers, request_ctype_getter())

    return err


@csrf_exempt
def otlp_traces(request: HttpRequest) -> HttpResponse:
    # Error bodies are google.rpc.Status in the request's encoding (protobuf when unknown).
    return _guarded(_otlp, lambda m, s, h: _otlp_error(m, s, h, _otlp_ctype(request)))(request)
