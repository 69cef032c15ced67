"""The ingest pipeline: limits → validation → one batched insert (acknowledged = stored)."""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.core.cache import cache

from apps.apikeys.services import KeyPrincipal
from apps.ingest.batcher import get_batcher
from apps.ingest.fastnative import decode_native
from apps.ingest.native import Limits, Rejection, validate_spans
from apps.ingest.ratelimit import limiter
from apps.ingest.rows import FORMAT, INSERT_TARGET, encode_columns, rows_to_columns
from kriyplatform.errors import AppError


class PayloadTooLarge(AppError):
    status_code = 413


class UnsupportedMedia(AppError):
    status_code = 415


class RateLimited(AppError):
    status_code = 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(slots=True)
class IngestResult:
    accepted: int
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": [r.as_dict() for r in self.rejected]}


def decompress(body: bytes, encoding: str) -> bytes:
    """Inflate at most MAX_DECOMPRESSED_BYTES: a gzip bomb is refused without inflating past it."""
    encoding = (encoding or "identity").strip().lower()
    limit = settings.KRIY_INGEST["MAX_DECOMPRESSED_BYTES"]
    if encoding in ("", "identity"):
        data = body
    elif encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 31 if encoding != "deflate" else 15
        d = zlib.decompressobj(wbits=wbits)
        try:
            data = d.decompress(body, limit + 1)
            if len(data) > limit or d.unconsumed_tail:
                raise PayloadTooLarge(f"body: over {limit} bytes once decompressed")
            data += d.flush(limit + 1 - len(data))
        except zlib.error as exc:
            raise AppError(f"body: not valid {encoding} data ({exc})") from exc
        if not d.eof:
            raise AppError(f"body: truncated {encoding} stream")
    else:
        raise UnsupportedMedia(
            f"Content-Encoding: {encoding} is not supported; use gzip, deflate or none"
        )
    if len(data) > limit:
        raise PayloadTooLarge(f"body: over {limit} bytes")
    return data


@dataclass(frozen=True, slots=True)
class OrgLimits:
    retention_days: int
    monthly_quota: int


def org_limits(organization_id: int) -> OrgLimits:
    key = f"kriy:org-limits:{organization_id}"
    cached = cache.get(key)
    if cached is None:
        from apps.orgs.models import Organization

        org = Organization.objects.only("retention_days", "monthly_span_quota").get(
            pk=organization_id
        )
        cached = (org.retention_days, org.monthly_span_quota)
        cache.set(key, cached, 60)
    return OrgLimits(*cached)


def check_rate(principal: KeyPrincipal, n_spans: int) -> None:
    decision = limiter().take(f"org:{principal.organization_id}", max(1, n_spans))
    if not decision.allowed:
        raise RateLimited(
            f"rate limit: this organization's ingest rate ({settings.KRIY_RATE_LIMIT_SPANS_PER_SEC} spans/s) is spent; retry after {decision.retry_after}s",
            decision.retry_after,
        )
    check_quota(principal, n_spans)


def check_quota(principal: KeyPrincipal, n_spans: int) -> None:
    from apps.spans.selectors import org_month_usage

    limits = org_limits(principal.organization_id)
    used = org_month_usage(principal.organization_id)
    if used + n_spans > limits.monthly_quota:
        now = datetime.now(UTC)
        nxt = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=UTC)
        raise RateLimited(
            f"quota: this organization's monthly quota of {limits.monthly_quota} spans is used up; it renews on {nxt:%Y-%m-%d}",
            int((nxt - now).total_seconds()) + 1,
        )


def rows_insert(rows: list[dict[str, Any]], *, project_id: int, retention_days: int) -> None:
    """Store validated rows directly, in ingest's own encoding (seeding tools, benchmarks):
    no key, rate limit or batching; the caller knows the project."""
    from kriyplatform.clickhouse.client import ch_insert

    if rows:
        data = encode_columns(
            rows_to_columns(rows),
            len(rows),
            project_id=project_id,
            retention_days=retention_days,
            version=time.time_ns(),
        )
        ch_insert(INSERT_TARGET, data, FORMAT)


def spans_store(*, principal: KeyPrincipal, rows: list[dict[str, Any]]) -> None:
    """Insert validated rows; returns once the span store has them (raises otherwise)."""
    if rows:
        spans_store_columns(principal=principal, cols=rows_to_columns(rows), n=len(rows))


def spans_store_columns(*, principal: KeyPrincipal, cols: dict[str, Any], n: int) -> None:
    """Insert ``n`` rows given as columns (``apps.ingest.rows``); returns once stored."""
    if not n:
        return
    limits = org_limits(principal.organization_id)
    data = encode_columns(
        cols,
        n,
        project_id=principal.project_id,
        retention_days=limits.retention_days,
        version=time.time_ns(),
    )
    get_batcher().submit(data, n)
    from apps.spans.selectors import note_ingested

    note_ingested(principal.organization_id, n)


def spans_ingest_body(*, principal: KeyPrincipal, body: bytes) -> IngestResult:
    """A native request body: the fast path when every span is valid, else the detailed one."""
    limits = Limits.from_settings()
    fast = decode_native(body, limits, settings.KRIY_INGEST["MAX_SPANS_PER_REQUEST"])
    if fast is not None:
        cols, n = fast
        check_rate(principal, n)
        spans_store_columns(principal=principal, cols=cols, n=n)
        return IngestResult(n, [])
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AppError(f"body: not valid JSON ({exc})") from exc
    if type(doc) is not dict or "spans" not in doc:
        raise AppError('body: expected {"spans": [span, …]}', field="spans")
    return spans_ingest(principal=principal, spans=doc["spans"], limits=limits)


def spans_ingest(
    *, principal: KeyPrincipal, spans: Any, limits: Limits | None = None
) -> IngestResult:
    """Native spans of one request: validate each, store the valid ones, report the others."""
    if type(spans) is not list:
        raise AppError('spans: the body must be {"spans": [span, …]}', field="spans")
    max_spans = settings.KRIY_INGEST["MAX_SPANS_PER_REQUEST"]
    if len(spans) > max_spans:
        raise PayloadTooLarge(
            f"spans: at most {max_spans} spans per request, got {len(spans)}", field="spans"
        )
    check_rate(principal, len(spans))
    rows, rejected = validate_spans(spans, limits or Limits.from_settings())
    spans_store(principal=principal, rows=rows)
    # every valid span counts as accepted, also one that replaced an earlier copy of itself
    return IngestResult(len(spans) - len(rejected), rejected)
