"""kriy_client against a local HTTP server in a thread (the outside edge), and once against a
real platform server."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import json
import logging
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from kriy_client import Client, Span, current_span, parse_retry_after
from tests.bench.harness import PY, ROOT
from tests.examples.conftest import Platform, free_port

KEY = "kp_test_key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    spans: list[dict[str, Any]]
    at: float


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    disconnect: bool = False  # close the connection without answering


class FakePlatform:
    """Answers ``POST /api/v1/spans`` like the platform: scripted replies first, then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: deque[Reply] = deque()
        self.cond = threading.Condition()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with fake.cond:
                    reply = fake.script.popleft() if fake.script else Reply()
                if reply.disconnect:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                body = json.loads(gzip.decompress(raw))
                with fake.cond:
                    fake.requests.append(
                        Received(self.path, dict(self.headers), body["spans"], time.monotonic())
                    )
                    fake.cond.notify_all()
                doc = reply.body
                if doc is None:
                    doc = {"accepted": len(body["spans"]), "rejected": []}
                out = json.dumps(doc).encode()
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    @property
    def spans(self) -> list[dict[str, Any]]:
        with self.cond:
            return [s for r in self.requests for s in r.spans]

    def wait_for_spans(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while sum(len(r.spans) for r in self.requests) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {n} spans, got {len(self.spans)}")
                self.cond.wait(remaining)
        return self.spans


@pytest.fixture
def fake() -> Iterator[FakePlatform]:
    server = FakePlatform()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def make_client(fake: FakePlatform) -> Iterator[Any]:
    clients: list[Client] = []

    def make(**kwargs: Any) -> Client:
        kwargs.setdefault("flush_interval", 60)  # nothing is sent until a batch fills or flush()
        kwargs.setdefault("backoff_base", 0.01)
        client = Client(kwargs.pop("endpoint", fake.url), kwargs.pop("api_key", KEY), **kwargs)
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close(timeout=5)


def by_name(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in spans}


# --- batching and the wire ------------------------------------------------------------------------


def test_spans_are_sent_in_batches_of_at_most_max_batch(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client(max_batch=10)
    for i in range(25):
        with client.span(f"step-{i}", agent="batcher"):
            pass
    assert client.flush(timeout=10)

    sizes = [len(r.spans) for r in fake.requests]
    assert sizes == [10, 10, 5]
    assert [s["name"] for s in fake.spans] == [f"step-{i}" for i in range(25)]
    assert client.stats() == {"queued": 0, "sent": 25, "rejected": 0, "failed": 0, "dropped": 0}


def test_a_partial_batch_is_sent_after_flush_interval_without_flush(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client(flush_interval=0.2)
    with client.span("lonely", agent="timer"):
        pass
    assert [s["name"] for s in fake.wait_for_spans(1, timeout=10)] == ["lonely"]


def test_body_is_gzipped_json_posted_with_the_bearer_key(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()
    with client.span("lookup", agent="wire", kind="tool", input={"customer": 42}) as span:
        span.set_output({"name": "Dana", "orders": [1, 2]})
    client.flush(timeout=10)

    (request,) = fake.requests
    assert request.path == "/api/v1/spans"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/json"
    (sent,) = request.spans
    assert sent["input"] == {"customer": 42}
    assert sent["output"] == {"name": "Dana", "orders": [1, 2]}
    assert sent["kind"] == "tool" and sent["status"] == "ok"
    assert isinstance(sent["start_time"], int) and sent["end_time"] >= sent["start_time"]


def test_values_that_are_not_json_do_not_break_the_batch(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()

    class Opaque:
        def __str__(self) -> str:
            return "<opaque>"

    with client.span("odd", agent="wire", input=Opaque()) as span:
        span.set_output({"score": float("nan"), "when": time})
        span.set_attribute("ratio", float("inf"))
        span.set_attribute("tags", {"b", "a"})
        span.set_attribute("nested", {"a": 1})
        span.set_attribute("dropped", None)
    with client.span("plain", agent="wire"):
        pass
    client.flush(timeout=10)

    spans = by_name(fake.spans)
    assert spans["odd"]["input"] == "<opaque>"
    assert isinstance(spans["odd"]["output"], str)  # NaN is not JSON: kept as its text
    assert spans["odd"]["attributes"] == {
        "ratio": "inf",
        "tags": ["a", "b"],
        "nested": "{'a': 1}",
    }
    assert "plain" in spans


# --- nesting ------------------------------------------------------------------------------------


def test_nested_spans_share_the_outermost_trace_id_and_link_their_parents(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()
    with client.span("handle", agent="support", kind="agent", session_id="s-1") as root:
        assert current_span() is root
        with client.span("plan", kind="llm") as plan, client.span("search", kind="tool") as search:
            pass
        with client.span("reply", agent="writer") as reply:
            pass
    assert current_span() is None
    with client.span("next-turn", agent="support") as other:
        pass
    client.flush(timeout=10)

    spans = by_name(fake.spans)
    assert spans["handle"]["parent_span_id"] is None
    assert spans["plan"]["parent_span_id"] == root.span_id
    assert spans["search"]["parent_span_id"] == plan.span_id
    assert spans["reply"]["parent_span_id"] == root.span_id
    assert {spans[n]["trace_id"] for n in ("handle", "plan", "search", "reply")} == {root.trace_id}
    assert spans["next-turn"]["trace_id"] == other.trace_id != root.trace_id
    # agent and session are inherited unless given
    assert spans["search"]["agent"] == "support" and spans["reply"]["agent"] == "writer"
    assert spans["search"]["session_id"] == "s-1" and "session_id" not in spans["next-turn"]
    assert len({s["span_id"] for s in fake.spans}) == 5
    assert search.parent_span_id == plan.span_id and reply.trace_id == root.trace_id


def test_concurrent_asyncio_tasks_each_nest_under_their_own_span(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()

    async def worker(name: str) -> Span:
        with client.span(name, kind="tool") as span:
            await asyncio.sleep(0.01)
            with client.span(f"{name}.inner"):
                await asyncio.sleep(0.01)
            return span

    async def agent() -> tuple[Span, list[Span]]:
        with client.span("fan-out", agent="async-agent", kind="agent") as root:
            return root, list(await asyncio.gather(worker("a"), worker("b")))

    root, (a, b) = asyncio.run(agent())
    client.flush(timeout=10)

    spans = by_name(fake.spans)
    assert spans["a"]["parent_span_id"] == spans["b"]["parent_span_id"] == root.span_id
    assert spans["a.inner"]["parent_span_id"] == a.span_id
    assert spans["b.inner"]["parent_span_id"] == b.span_id


def test_an_exception_marks_the_span_error_and_is_reraised(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()
    with client.span("turn", agent="fragile"):
        with pytest.raises(TimeoutError, match="gateway"), client.span("charge", kind="tool"):
            raise TimeoutError("gateway did not answer")
        with client.span("charge", kind="tool") as retry:
            retry.retry(1, "TimeoutError: gateway did not answer")
    with pytest.raises(KeyError), client.span("crash", agent="fragile"):
        raise KeyError("order")
    client.flush(timeout=10)

    first, second = (s for s in fake.spans if s["name"] == "charge")
    assert first["status"] == "error"
    assert first["status_message"] == "TimeoutError: gateway did not answer"
    (event,) = first["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "TimeoutError"
    assert "raise TimeoutError" in event["attributes"]["exception.stacktrace"]
    assert second["status"] == "ok"
    spans = by_name(fake.spans)
    assert spans["turn"]["status"] == "ok"  # the agent handled it
    assert spans["crash"]["status"] == "error"
    assert spans["crash"]["status_message"] == "KeyError: 'order'"


def test_explicit_status_is_kept(fake: FakePlatform, make_client: Any) -> None:
    client = make_client()
    with client.span("judge", agent="a") as span:
        span.set_status("error", "answer failed the rubric")
    with client.span("unknown", agent="a") as span:
        span.set_status("bogus")  # ignored, logged
    client.flush(timeout=10)

    spans = by_name(fake.spans)
    assert spans["judge"]["status"] == "error"
    assert spans["judge"]["status_message"] == "answer failed the rubric"
    assert spans["unknown"]["status"] == "ok"


def test_reliability_helpers_write_the_kriy_conventions(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()
    with client.span("handoff to billing", agent="triage", kind="handoff") as span:
        span.mark_partial()
        span.retry(2, "HTTP 503 from billing")
        span.constraints(["budget<=500", "region=EU"])
        span.context(required=["customer.id", "order.id"], present=["customer.id"])
        span.state("account:42", 7, "write")
    client.flush(timeout=10)

    (sent,) = fake.spans
    assert sent["kind"] == "handoff"
    assert sent["attributes"] == {
        "kriy.result.partial": True,
        "kriy.retry.attempt": 2,
        "kriy.retry.reason": "HTTP 503 from billing",
        "kriy.constraints": ["budget<=500", "region=EU"],
        "kriy.context.required": ["customer.id", "order.id"],
        "kriy.context.present": ["customer.id"],
        "kriy.state.key": "account:42",
        "kriy.state.version": 7,
        "kriy.state.op": "write",
    }


def test_trace_decorator_wraps_sync_and_async_functions(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()

    @client.trace("crm.lookup", agent="deco", kind="tool", capture_io=True)
    def lookup(customer_id: int, *, page: int = 1) -> dict[str, Any]:
        return {"id": customer_id, "page": page}

    @client.trace(agent="deco", kind="llm")
    async def draft(text: str) -> str:
        await asyncio.sleep(0)
        return text.upper()

    @client.trace(agent="deco")
    def explode() -> None:
        raise RuntimeError("no")

    assert lookup(42, page=2) == {"id": 42, "page": 2}
    assert asyncio.run(draft("hi")) == "HI"
    with pytest.raises(RuntimeError):
        explode()
    client.flush(timeout=10)

    spans = by_name(fake.spans)
    assert spans["crm.lookup"]["input"] == {"customer_id": 42, "page": 2}
    assert spans["crm.lookup"]["output"] == {"id": 42, "page": 2}
    assert spans["crm.lookup"]["kind"] == "tool"
    qualname = "test_trace_decorator_wraps_sync_and_async_functions.<locals>.draft"
    assert spans[qualname]["kind"] == "llm" and "input" not in spans[qualname]
    assert spans[next(n for n in spans if n.endswith("explode"))]["status"] == "error"


# --- retries and refusals --------------------------------------------------------------------------


def test_retry_after_on_429_is_honoured_then_the_batch_succeeds(
    fake: FakePlatform, make_client: Any
) -> None:
    fake.script.append(Reply(429, {"Retry-After": "1"}, {"error": "rate limit"}))
    client = make_client(max_retries=3)
    with client.span("throttled", agent="a"):
        pass
    started = time.monotonic()
    assert client.flush(timeout=10)

    first, second = fake.requests
    # backoff_base is 10 ms: only the header can explain a one-second wait
    assert second.at - first.at >= 0.95
    assert time.monotonic() - started >= 0.95
    assert second.spans == first.spans
    assert client.stats()["sent"] == 1 and client.stats()["failed"] == 0


def test_retry_after_as_an_http_date_is_honoured(fake: FakePlatform, make_client: Any) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    fake.script.append(Reply(503, {"Retry-After": when}, {"error": "span store unavailable"}))
    client = make_client()
    with client.span("store-down", agent="a"):
        pass
    assert client.flush(timeout=10)

    first, second = fake.requests
    assert second.at - first.at >= 0.9  # the date has one-second resolution
    assert client.stats()["sent"] == 1


def test_parse_retry_after_reads_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_and_unavailable_answers_are_retried_with_backoff(
    status: int, fake: FakePlatform, make_client: Any
) -> None:
    fake.script.extend([Reply(status), Reply(status)])
    client = make_client(max_retries=3)
    with client.span("flaky", agent="a"):
        pass
    assert client.flush(timeout=10)
    assert len(fake.requests) == 3
    assert client.stats()["sent"] == 1


def test_a_dropped_connection_is_retried(fake: FakePlatform, make_client: Any) -> None:
    fake.script.append(Reply(disconnect=True))
    client = make_client(max_retries=2)
    with client.span("reset", agent="a"):
        pass
    assert client.flush(timeout=10)
    assert [s["name"] for s in fake.spans] == ["reset"]
    assert client.stats()["sent"] == 1


def test_retries_stop_after_max_retries(fake: FakePlatform, make_client: Any) -> None:
    fake.script.extend(Reply(503) for _ in range(10))
    client = make_client(max_retries=2)
    with client.span("doomed", agent="a"):
        pass
    assert client.flush(timeout=10)
    assert len(fake.requests) == 3  # the first attempt and two retries
    assert client.stats()["failed"] == 1


def test_other_4xx_is_not_retried_and_logged_once(
    fake: FakePlatform, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script.extend(
        Reply(401, body={"error": "Authorization: unknown API key"}) for _ in range(2)
    )
    client = make_client()
    caplog.set_level(logging.INFO, logger="kriy_client")
    for name in ("first", "second"):
        with client.span(name, agent="a"):
            pass
        assert client.flush(timeout=10)

    assert len(fake.requests) == 2  # one per batch, no retry
    refusals = [r for r in caplog.records if "answered 401" in r.getMessage()]
    assert len(refusals) == 1 and "unknown API key" in refusals[0].getMessage()
    assert client.stats()["failed"] == 2


def test_per_span_rejections_are_counted_not_retried(fake: FakePlatform, make_client: Any) -> None:
    fake.script.append(
        Reply(
            200,
            body={
                "accepted": 1,
                "rejected": [{"index": 1, "span_id": "x", "errors": ["name: too long"]}],
            },
        )
    )
    client = make_client()
    for name in ("good", "bad"):
        with client.span(name, agent="a"):
            pass
    assert client.flush(timeout=10)
    assert len(fake.requests) == 1
    assert client.stats()["sent"] == 1 and client.stats()["rejected"] == 1


def test_a_413_splits_the_batch(fake: FakePlatform, make_client: Any) -> None:
    fake.script.append(Reply(413, body={"error": "body: too large"}))
    client = make_client()
    for i in range(4):
        with client.span(f"s{i}", agent="a"):
            pass
    assert client.flush(timeout=10)
    assert [len(r.spans) for r in fake.requests] == [4, 2, 2]
    assert client.stats()["sent"] == 4


# --- the queue, flush and close ----------------------------------------------------------------------


def test_a_full_queue_drops_the_oldest_spans_and_counts_them(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client(max_queue=5, max_batch=100)
    for i in range(8):
        with client.span(f"s{i}", agent="a"):
            pass
    assert client.stats()["dropped"] == 3
    assert client.flush(timeout=10)
    assert [s["name"] for s in fake.spans] == ["s3", "s4", "s5", "s6", "s7"]
    assert client.stats() == {"queued": 0, "sent": 5, "rejected": 0, "failed": 0, "dropped": 3}


def test_close_flushes_and_later_spans_are_ignored(fake: FakePlatform, make_client: Any) -> None:
    client = make_client()
    for i in range(3):
        with client.span(f"s{i}", agent="a"):
            pass
    assert client.close(timeout=10)
    assert len(fake.spans) == 3
    with client.span("after-close", agent="a"):
        pass
    assert client.close() and client.flush(timeout=1)
    assert len(fake.spans) == 3


def test_spans_are_flushed_at_interpreter_exit(fake: FakePlatform) -> None:
    script = (
        "from kriy_client import Client\n"
        f"c = Client({fake.url!r}, {KEY!r}, flush_interval=60)\n"
        "for i in range(3):\n"
        "    with c.span(f'exit-{i}', agent='a'):\n"
        "        pass\n"
        "print('done without close()')\n"
    )
    proc = subprocess.run(
        [PY, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(s["name"] for s in fake.wait_for_spans(3)) == ["exit-0", "exit-1", "exit-2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_sends_its_own_spans_and_not_the_parents_queue(
    fake: FakePlatform, make_client: Any
) -> None:
    client = make_client()
    with client.span("queued-before-fork", agent="a"):
        pass
    pid = os.fork()
    if pid == 0:  # the child: a fresh queue and sender thread, the parent's span is not resent
        code = 1
        try:
            with client.span("in-child", agent="a"):
                pass
            code = 0 if client.flush(timeout=10) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert client.flush(timeout=10)
    assert sorted(s["name"] for s in fake.wait_for_spans(2)) == ["in-child", "queued-before-fork"]
    assert len(fake.spans) == 2


def test_a_dead_endpoint_never_raises_into_the_agent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kriy_client")
    client = Client(
        f"http://127.0.0.1:{free_port()}",  # nothing listens there
        KEY,
        flush_interval=0.01,
        max_retries=2,
        backoff_base=0.01,
        timeout=1,
    )

    @client.trace(agent="resilient")
    def work(x: int) -> int:
        with client.span("inner") as span:
            span.set_output(x).mark_partial().state("k", 1, "read")
        return x * 2

    assert [work(i) for i in range(20)] == [i * 2 for i in range(20)]
    assert client.flush(timeout=10)
    assert client.stats()["failed"] == 40 and client.stats()["sent"] == 0
    assert client.close(timeout=5)
    assert any("dropped after 3 attempts" in r.getMessage() for r in caplog.records)


def test_close_cuts_a_long_backoff_short(fake: FakePlatform, make_client: Any) -> None:
    fake.script.append(Reply(503, {"Retry-After": "60"}))
    client = make_client()
    with client.span("stuck", agent="a"):
        pass
    started = time.monotonic()
    assert client.close(timeout=1) is False  # not everything was sent
    assert time.monotonic() - started < 5
    assert client.stats()["failed"] == 1


def test_misconfigured_clients_are_disabled_not_broken(caplog: pytest.LogCaptureFixture) -> None:
    for client in (Client("", ""), Client("ftp://example.com", KEY), Client("http://x", "")):
        assert not client.enabled
        with client.span("noop", agent="a") as span:
            span.set_output(1)
        assert client.flush(timeout=1) and client.close(timeout=1)
        assert client.stats()["sent"] == 0


# --- against the real platform -------------------------------------------------------------------


def test_spans_from_the_client_are_stored_and_judged_by_a_real_platform(
    platform: Platform,
) -> None:
    client = Client(platform.url, platform.key, flush_interval=0.1)
    with client.span(
        "answer_ticket", agent="client-e2e", kind="agent", session_id="e2e-session"
    ) as root:
        with client.span("crm.lookup", kind="tool", input={"customer": "C-1"}) as crm:
            crm.set_output({"orders": ["A-1"], "has_more": True}).mark_partial()
        with client.span("draft_reply", kind="llm") as draft:
            draft.context(required=["orders", "tier"], present=["orders"])
            draft.set_output("Your order A-1 shipped.")
    assert client.close(timeout=30)
    assert client.stats()["sent"] == 3

    trace = platform.judged_trace("client-e2e", root.trace_id)
    assert trace["outcome"] == "defective"
    assert {(f["type"], f["span_id"]) for f in trace["findings"]} == {
        ("partial_result_used", crm.span_id),
        ("context_missing", draft.span_id),
    }
    spans = {s["span_id"]: s for s in trace["spans"]}
    assert spans[crm.span_id]["parent_span_id"] == root.span_id
    assert spans[crm.span_id]["input"] == {"customer": "C-1"}
    assert {s["session_id"] for s in spans.values()} == {"e2e-session"}
