"""OTLP/HTTP trace decoding and mapping onto the native span shape (spans.md §1).

Pure module: no Django imports, because `manage.py detect` uses it offline too.
The hot path is `to_native` over protobuf requests, so its loops are written flat
(local names, `WhichOneof`, no per-attribute helper chains) rather than pretty.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

__all__ = [
    "ExportTraceServiceRequest",
    "OtlpDecodeError",
    "decode_request",
    "encode_response",
    "encode_status",
    "to_native",
]


class OtlpDecodeError(ValueError):
    """The request body is not a valid OTLP ExportTraceServiceRequest (answer 400)."""


# json_format counts message levels; 100 is its default and upb's own protobuf limit,
# so both encodings accept the same depth.
_MAX_MESSAGE_DEPTH = 100
# AnyValue nesting allowed in to_native. Parsed requests cannot get near it (the parse
# limits above stop at about 48); it only guards hand-built messages.
_MAX_ANY_DEPTH = 64
# Responses should stay <= 4 MiB (OTLP spec); trim error_message well below that.
_MAX_ERROR_MESSAGE_BYTES = 1 << 20

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"

_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)

_TRACE_ID_ERROR = "traceId: must be 16 bytes, not all zero"
_SPAN_ID_ERROR = "spanId: must be 8 bytes, not all zero"
_PARENT_ID_ERROR = "parentSpanId: must be empty or 8 bytes"
_NAME_ERROR = "name: must not be empty"

_STATUS = {0: "unset", 1: "ok", 2: "error"}

# gen_ai.operation.name → kind (spans.md §1 plus the otlp-reference §5 extensions).
# invoke_agent is handled separately: it also marks the span for the handoff decision.
_OPERATION_KIND = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "llm",
    "execute_tool": "tool",
    "invoke_workflow": "agent",
    "retrieval": "retrieval",
    "search_memory": "retrieval",
    "handoff": "handoff",
}
_OPENINFERENCE_KIND = {
    "LLM": "llm",
    "EMBEDDING": "llm",
    "TOOL": "tool",
    "AGENT": "agent",
    "RETRIEVER": "retrieval",
    "RERANKER": "retrieval",
    "CHAIN": "step",
}
_HANDOFF_PREFIX = "handoff to "

_SCALAR_TYPES = frozenset((str, int, float, bool))
# AnyValue cases whose Python value needs no conversion.
_PLAIN = frozenset(("string_value", "int_value", "bool_value"))


class _TooDeepError(Exception):
    pass


# --------------------------------------------------------------------------- decoding


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_request(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    """Parse an (already decompressed) OTLP/HTTP trace export body.

    Raises OtlpDecodeError with a message fit for a 400 body.
    """
    media = _media_type(content_type)
    req = ExportTraceServiceRequest()
    if media == _PROTOBUF:
        try:
            req.ParseFromString(body)
        except DecodeError as exc:  # includes upb's nesting-depth limit
            raise OtlpDecodeError(f"invalid protobuf: {exc}") from None
        return req
    if media == _JSON:
        from apps.ingest.otlp_json import OtlpJsonError, parse_request

        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:  # also orjson's own nesting limit
            raise OtlpDecodeError(f"invalid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise OtlpDecodeError("invalid OTLP JSON: the body must be a JSON object")
        try:
            return parse_request(doc)  # type: ignore[return-value] - a duck-typed request
        except OtlpJsonError as exc:
            raise OtlpDecodeError(f"invalid OTLP JSON: {exc}") from None
        except RecursionError:
            raise OtlpDecodeError("invalid OTLP JSON: nested too deeply") from None
    raise OtlpDecodeError(f"unsupported content type {content_type!r}: use {_PROTOBUF} or {_JSON}")


def _json_list(obj: dict, camel: str, snake: str) -> list:
    # json_format accepts the proto field name as well as lowerCamelCase, so the id
    # rewrite must find spans under either spelling or snake_case hex ids would be
    # silently misread as base64.
    v = obj.get(camel)
    if v is None:
        v = obj.get(snake)
    return v if isinstance(v, list) else []


def _hex_ids_to_base64(doc: dict) -> None:
    """OTLP JSON carries span/trace ids as hex; json_format reads bytes as base64.

    Hex text is also valid base64, so without this rewrite ids would silently decode
    to the wrong bytes (otlp-reference §6). Only the id fields are touched: every
    other bytes field (AnyValue.bytesValue) stays base64.
    """
    for i, rs in enumerate(_json_list(doc, "resourceSpans", "resource_spans")):
        if not isinstance(rs, dict):
            continue
        for j, ss in enumerate(_json_list(rs, "scopeSpans", "scope_spans")):
            if not isinstance(ss, dict):
                continue
            for k, sp in enumerate(_json_list(ss, "spans", "spans")):
                if not isinstance(sp, dict):
                    continue
                path = f"resourceSpans[{i}].scopeSpans[{j}].spans[{k}]"
                _convert_id(sp, "traceId", "trace_id", 16, path)
                _convert_id(sp, "spanId", "span_id", 8, path)
                _convert_id(sp, "parentSpanId", "parent_span_id", 8, path)
                for m, link in enumerate(_json_list(sp, "links", "links")):
                    if isinstance(link, dict):
                        lpath = f"{path}.links[{m}]"
                        _convert_id(link, "traceId", "trace_id", 16, lpath)
                        _convert_id(link, "spanId", "span_id", 8, lpath)


def _convert_id(obj: dict, camel: str, snake: str, size: int, path: str) -> None:
    for key in (camel, snake):
        v = obj.get(key)
        if v is None or v == "":  # absent/empty: an empty id (a root's parent)
            continue
        if not isinstance(v, str):
            raise OtlpDecodeError(f"{path}.{camel}: must be a hex string")
        try:
            raw = bytes.fromhex(v) if len(v) == 2 * size else b""
        except ValueError:
            raw = b""
        # fromhex skips whitespace, so the byte length is checked as well.
        if len(raw) != size:
            raise OtlpDecodeError(f"{path}.{camel}: must be {2 * size} hex characters")
        obj[key] = base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------- mapping


def _finite(d: float) -> float | str:
    # NaN/Infinity are not JSON; use the proto3 JSON spelling instead of losing them.
    if math.isfinite(d):
        return d
    return "NaN" if d != d else ("Infinity" if d > 0 else "-Infinity")


def _any_to_py(v: Any, depth: int) -> Any:
    """AnyValue → JSON-compatible Python value (used below the top level only)."""
    t = v.WhichOneof("value")
    if t == "string_value":
        return v.string_value
    if t == "int_value":
        return v.int_value
    if t == "bool_value":
        return v.bool_value
    if t == "double_value":
        return _finite(v.double_value)
    if t == "array_value" or t == "kvlist_value":
        if depth >= _MAX_ANY_DEPTH:
            raise _TooDeepError
        depth += 1
        if t == "array_value":
            return [_any_to_py(x, depth) for x in v.array_value.values]
        return {kv.key: _any_to_py(kv.value, depth) for kv in v.kvlist_value.values}
    if t == "bytes_value":
        return base64.b64encode(v.bytes_value).decode("ascii")
    return None


def _convert_kvs(kvs: Any, out: dict, structured: dict | None) -> str | None:
    """Convert KeyValues into `out` as native attribute values.

    Non-scalar values become JSON text; when `structured` is given, their Python form
    is kept there as well so input/output can use it without re-parsing the text.
    Returns the key of a value nested too deeply, else None.
    """
    for kv in kvs:
        v = kv.value
        t = v.WhichOneof("value")
        if t in _PLAIN:
            out[kv.key] = getattr(v, t)
            continue
        if t is None:
            continue  # an empty AnyValue carries nothing
        if t == "double_value":
            d = v.double_value
            out[kv.key] = d if math.isfinite(d) else _finite(d)
            continue
        if t == "bytes_value":
            out[kv.key] = base64.b64encode(v.bytes_value).decode("ascii")
            continue
        if t == "array_value":
            # Fast path for the common array of strings/ints/bools: it stays a list.
            lst = []
            for x in v.array_value.values:
                xt = x.WhichOneof("value")
                if xt not in _PLAIN:
                    break
                lst.append(getattr(x, xt))
            else:
                out[kv.key] = lst
                if structured is not None:
                    structured[kv.key] = lst
                continue
        try:
            py = _any_to_py(v, 0)
        except _TooDeepError:
            return kv.key
        if t == "array_value" and all(type(x) in _SCALAR_TYPES for x in py):
            out[kv.key] = py  # e.g. an array with doubles: still a list of scalars
        else:
            out[kv.key] = orjson.dumps(py).decode()
        if structured is not None:
            structured[kv.key] = py
    return None


def _text(v: Any) -> str | None:
    """A usable identifier from an attribute value: non-empty string, or a number."""
    tv = type(v)
    if tv is str:
        return v or None
    if tv is int or tv is float:
        return str(v)
    return None


def _parse_json_text(s: str) -> Any:
    try:
        return orjson.loads(s)
    except orjson.JSONDecodeError:
        return s


def _is_json_mime(m: Any) -> bool:
    return type(m) is str and m.split(";", 1)[0].strip().lower() == _JSON


def _content(attrs: dict, structured: dict, key: str) -> Any:
    """Pop a GenAI content attribute: structured → its value, JSON text → parsed."""
    if key in structured:
        attrs.pop(key, None)
        return structured[key]
    v = attrs.pop(key)
    return _parse_json_text(v) if type(v) is str else v


def _flattened_messages(attrs: dict, prefix: str) -> list[dict] | None:
    """Rebuild OpenInference `llm.{input,output}_messages.<i>.message.{role,content}`."""
    found: dict[int, dict] = {}
    consumed = []
    plen = len(prefix)
    for key in attrs:
        if not key.startswith(prefix):
            continue
        idx, _, field = key[plen:].partition(".")
        if (field != "message.role" and field != "message.content") or not (
            idx.isascii() and idx.isdigit()
        ):
            continue
        msg = found.get(int(idx))
        if msg is None:
            msg = found[int(idx)] = {"role": None, "content": None}
        msg[field[8:]] = attrs[key]
        consumed.append(key)
    if not found:
        return None
    for key in consumed:  # content now lives in input/output; do not store it twice
        del attrs[key]
    return [found[i] for i in sorted(found)]


def to_native(req: ExportTraceServiceRequest) -> list[tuple[dict | None, list[str], str]]:
    """Map every span of the request to (native span or None, errors, span_id_hex).

    Entries follow request order, flattened over resource_spans → scope_spans → spans.
    A span with errors maps to None; the other spans of the request still map.
    """
    out: list[tuple[dict | None, list[str], str]] = []
    append = out.append
    for rs in req.resource_spans:
        context = resource_context(rs)
        if isinstance(context, str):
            error = f"resource.attributes.{context}: nested deeper than {_MAX_ANY_DEPTH}"
            for ss in rs.scope_spans:
                for sp in ss.spans:
                    append((None, [error], sp.span_id.hex()))
            continue
        res_base, service, res_session = context
        for ss in rs.scope_spans:
            base = scope_base(res_base, ss.scope)
            for sp in ss.spans:
                append(_span(sp, base, service, res_session))
    return out


def resource_context(rs: Any) -> tuple[dict, str | None, str | None] | str:
    """What a ResourceSpans gives each of its spans: its attributes as ``resource.*``, the
    service name (the agent fallback) and a session id; or the key of a value nested too deeply."""
    resource: dict = {}
    too_deep = _convert_kvs(rs.resource.attributes, resource, None)
    if too_deep is not None:
        return too_deep
    return context_from_attributes(resource)


def context_from_attributes(resource: dict) -> tuple[dict, str | None, str | None]:
    """``resource_context`` from the resource's converted attributes."""
    service = _text(resource.get("service.name"))
    session = _text(resource.get("session.id")) or _text(resource.get("gen_ai.conversation.id"))
    return {"resource." + k: v for k, v in resource.items()}, service, session


def scope_base(res_base: dict, scope: Any) -> dict:
    """The resource attributes plus the instrumentation scope's name and version."""
    return scope_base_values(res_base, scope.name, scope.version)


def scope_base_values(res_base: dict, name: str, version: str) -> dict:
    """``scope_base`` from the scope's name and version."""
    if not (name or version):
        return res_base
    base = dict(res_base)
    if name:
        base["otel.scope.name"] = name
    if version:
        base["otel.scope.version"] = version
    return base


def _span(
    sp: Any, base: dict, service: str | None, res_session: str | None
) -> tuple[dict | None, list[str], str]:
    trace_id = sp.trace_id
    span_id = sp.span_id
    parent = sp.parent_span_id
    name = sp.name
    errors: list[str] = []
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        errors.append(_TRACE_ID_ERROR)
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        errors.append(_SPAN_ID_ERROR)
    if parent and len(parent) != 8:
        errors.append(_PARENT_ID_ERROR)
    if not name:
        errors.append(_NAME_ERROR)
    span_hex = span_id.hex()
    if errors:
        return None, errors, span_hex

    attrs = base.copy()
    structured: dict = {}
    too_deep = _convert_kvs(sp.attributes, attrs, structured)
    if too_deep is not None:
        return None, [f"attributes.{too_deep}: nested deeper than {_MAX_ANY_DEPTH}"], span_hex
    get = attrs.get

    # kind: gen_ai.operation.name first, then openinference.span.kind, else step.
    invoke_agent = False
    kind = None
    oi_kind = get("openinference.span.kind")
    op = get("gen_ai.operation.name")
    if type(op) is str:
        if op == "invoke_agent":
            kind = "agent"
            invoke_agent = True
        else:
            kind = _OPERATION_KIND.get(op)
    if kind is None:
        if type(oi_kind) is str:
            kind = _OPENINFERENCE_KIND.get(oi_kind, "step")
            if kind == "tool" and name.startswith(_HANDOFF_PREFIX):
                kind = "handoff"  # how openai-agents (OpenInference) records handoffs
        else:
            kind = "step"

    agent = _text(get("gen_ai.agent.name")) or _text(get("agent.name")) or service or "unknown"
    session = _text(get("session.id")) or _text(get("gen_ai.conversation.id")) or res_session

    # input/output: OpenInference value, else GenAI messages, else tool call args/result,
    # else the flattened OpenInference LLM messages. Consumed attributes are removed.
    inp = out = None
    if "input.value" in attrs:
        inp = attrs.pop("input.value")
        if _is_json_mime(attrs.pop("input.mime_type", None)) and type(inp) is str:
            inp = _parse_json_text(inp)
        elif "input.value" in structured:
            inp = structured["input.value"]
    elif "gen_ai.input.messages" in attrs:
        inp = _content(attrs, structured, "gen_ai.input.messages")
    elif "gen_ai.tool.call.arguments" in attrs:
        inp = _content(attrs, structured, "gen_ai.tool.call.arguments")
    elif oi_kind == "LLM":
        inp = _flattened_messages(attrs, "llm.input_messages.")
    if "output.value" in attrs:
        out = attrs.pop("output.value")
        if _is_json_mime(attrs.pop("output.mime_type", None)) and type(out) is str:
            out = _parse_json_text(out)
        elif "output.value" in structured:
            out = structured["output.value"]
    elif "gen_ai.output.messages" in attrs:
        out = _content(attrs, structured, "gen_ai.output.messages")
    elif "gen_ai.tool.call.result" in attrs:
        out = _content(attrs, structured, "gen_ai.tool.call.result")
    elif oi_kind == "LLM":
        out = _flattened_messages(attrs, "llm.output_messages.")

    links = sp.links
    if links:
        attrs["otel.links"] = orjson.dumps(
            [{"trace_id": ln.trace_id.hex(), "span_id": ln.span_id.hex()} for ln in links]
        ).decode()

    events = []
    for ev in sp.events:
        ev_attrs: dict = {}
        too_deep = _convert_kvs(ev.attributes, ev_attrs, None)
        if too_deep is not None:
            error = f"events.attributes.{too_deep}: nested deeper than {_MAX_ANY_DEPTH}"
            return None, [error], span_hex
        events.append({"name": ev.name, "time": ev.time_unix_nano, "attributes": ev_attrs})

    status = sp.status
    native = {
        "trace_id": trace_id.hex(),
        "span_id": span_hex,
        # An all-zero parent is not a valid span id; treat it as "no parent" (a root).
        "parent_span_id": parent.hex() if parent and parent != _ZERO_SPAN_ID else None,
        "session_id": session,
        "agent": agent,
        "name": name,
        "kind": kind,
        "start_time": sp.start_time_unix_nano,
        "end_time": sp.end_time_unix_nano,
        "status": _STATUS.get(status.code, "unset"),
        "status_message": status.message or None,
        "input": inp,
        "output": out,
        "attributes": attrs,
        "events": events,
    }
    if invoke_agent:
        native["_invoke_agent"] = True
    return native, errors, span_hex


# --------------------------------------------------------------------------- responses


def _is_json(content_type: str) -> bool:
    return _media_type(content_type) == _JSON


def encode_response(rejected: int, error_message: str, content_type: str) -> bytes:
    """ExportTraceServiceResponse in the request's encoding.

    Full success leaves partial_success unset: 0 bytes in protobuf, `{}` in JSON.
    """
    resp = ExportTraceServiceResponse()
    if rejected or error_message:
        raw = error_message.encode()
        if len(raw) > _MAX_ERROR_MESSAGE_BYTES:
            error_message = raw[:_MAX_ERROR_MESSAGE_BYTES].decode(errors="ignore") + "…"
        resp.partial_success.rejected_spans = rejected
        resp.partial_success.error_message = error_message
    if _is_json(content_type):
        return json_format.MessageToJson(resp, indent=None).encode()
    return resp.SerializeToString()


def encode_status(message: str, content_type: str, code: int = 3) -> bytes:
    """google.rpc.Status error body (code 3 = INVALID_ARGUMENT) in the request's encoding."""
    st = status_pb2.Status(code=code, message=message)
    if _is_json(content_type):
        return json_format.MessageToJson(st, indent=None).encode()
    return st.SerializeToString()
