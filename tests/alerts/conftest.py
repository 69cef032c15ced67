"""Helpers of the alert tests: recent traffic through ingest and the judge, and a real local
HTTP receiver (the outside edge of webhooks — not a mock)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.factories import post_spans, span, trace_id

NS = 1_000_000_000


def now_ns() -> int:
    return time.time_ns()


def recent_trace(
    agent: str = "support",
    outcome: str = "clean",
    *,
    ago_s: float = 60,
    duration_ms: int = 1000,
    name: str = "handle_ticket",
) -> list[dict[str, Any]]:
    """A trace whose root started ``ago_s`` seconds ago: failed (root error), defective (a
    partial result used by a later step → ``partial_result_used``) or clean."""
    tid = trace_id()
    t0 = now_ns() - int(ago_s * NS)
    root = span(
        trace_id=tid,
        agent=agent,
        name=name,
        start_time=t0,
        end_time=t0 + duration_ms * 1_000_000,
        status="error" if outcome == "failed" else "ok",
    )
    out = [root]
    lookup = span(
        trace_id=tid,
        agent=agent,
        parent_span_id=root["span_id"],
        name="crm.lookup",
        kind="tool",
        start_time=t0 + 1_000_000,
        end_time=t0 + 2_000_000,
        attributes={"kriy.result.partial": True} if outcome == "defective" else {},
    )
    out.append(lookup)
    out.append(
        span(
            trace_id=tid,
            agent=agent,
            parent_span_id=root["span_id"],
            name="draft",
            kind="llm",
            start_time=t0 + 3_000_000,
            end_time=t0 + 4_000_000,
        )
    )
    return out


def ingest(tenant: Any, spans: list[dict[str, Any]]) -> None:
    """Store the spans and judge exactly their traces (faster than a whole judge pass, which
    would re-judge every span of the test session), then bring the issues up to date."""
    from apps.detection.services import judge_project_traces
    from apps.issues.services import issues_refresh

    assert post_spans(tenant.api(), spans).status_code == 200
    ids = sorted({s["trace_id"] for s in spans})
    judge_project_traces(project_id=tenant.project.pk, trace_ids=ids)
    issues_refresh(project_id=tenant.project.pk)


def traffic(tenant: Any, **counts: int) -> None:
    """``traffic(t, failed=2, defective=1, clean=3)`` for agent support, in one request."""
    spans: list[dict[str, Any]] = []
    for outcome, n in counts.items():
        for _ in range(n):
            spans += recent_trace("support", outcome)
    ingest(tenant, spans)


# --- the receiver -------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    # answers to give, in order; the last one repeats
    codes: list[int] = field(default_factory=lambda: [200])
    location: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_code(self) -> int:
        with self.lock:
            return self.codes.pop(0) if len(self.codes) > 1 else self.codes[0]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = state["r"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers.items()), body))
            code = rec.next_code()
            self.send_response(code)
            if 300 <= code < 400 and rec.location:
                self.send_header("Location", rec.location)
            payload = b"ok" if code < 300 else b"receiver says no"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/kriy")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on which nothing listens (a port bound and released)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/nothing"
