"""Builders for native spans and requests in tests."""

from __future__ import annotations

import gzip
import secrets
from typing import Any

import orjson
from django.test import Client

BASE_NS = 1_767_261_600_000_000_000  # 2026-01-01T10:00:00Z


def trace_id() -> str:
    return secrets.token_hex(16)


def span_id() -> str:
    return secrets.token_hex(8)


def span(**over: Any) -> dict[str, Any]:
    """A valid native span; start/end given as offsets in ms from BASE_NS when ints < 1e12."""
    s: dict[str, Any] = {
        "trace_id": over.pop("trace_id", None) or trace_id(),
        "span_id": over.pop("span_id", None) or span_id(),
        "agent": "support",
        "name": "handle_ticket",
        "kind": "agent",
        "start_time": 0,
        "end_time": 1000,
        "status": "ok",
    }
    s.update(over)
    for k in ("start_time", "end_time"):
        if isinstance(s[k], int) and s[k] < 10**12:
            s[k] = BASE_NS + s[k] * 1_000_000
    return s


def trace(
    agent: str = "support", n_children: int = 2, session_id: str | None = None, **root_over: Any
) -> list[dict[str, Any]]:
    tid = trace_id()
    root = span(
        trace_id=tid, agent=agent, session_id=session_id, start_time=0, end_time=1000, **root_over
    )
    out = [root]
    for i in range(n_children):
        out.append(
            span(
                trace_id=tid,
                agent=agent,
                parent_span_id=root["span_id"],
                name=f"step{i}",
                kind="tool",
                start_time=10 + i * 100,
                end_time=90 + i * 100,
            )
        )
    return out


def post_spans(
    client: Client, spans: list[dict[str, Any]], *, gzip_body: bool = False, **extra: Any
) -> Any:
    body = orjson.dumps({"spans": spans})
    headers: dict[str, Any] = {}
    if gzip_body:
        body = gzip.compress(body)
        headers["HTTP_CONTENT_ENCODING"] = "gzip"
    headers.update(extra)
    return client.post("/api/v1/spans", data=body, content_type="application/json", **headers)
