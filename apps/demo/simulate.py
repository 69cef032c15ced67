"""Traffic simulator: sends realistic agent traffic to a running platform over its real API.

Used by ``manage.py simulate`` (demos, load and soak tests) and by the first-run demo seeding.
No Django imports: it talks HTTP like any agent would.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import orjson

from apps.demo.traffic import Rates, TrafficGenerator, to_otlp

WEEK_NS = 7 * 86_400 * 10**9


@dataclass
class SendStats:
    spans: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    retries: int = 0
    failures: int = 0
    started: float = field(default_factory=time.monotonic)
    errors: list[str] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self) -> str:
        rate = self.spans / self.elapsed if self.elapsed else 0
        return (
            f"{self.spans:,} spans sent ({self.accepted:,} accepted, {self.rejected:,} rejected) "
            f"in {self.requests:,} requests, {rate:,.0f} spans/s, {self.retries} retries, {self.failures} failed"
        )


class Sender:
    """Posts batches over one keep-alive connection; honours Retry-After on 429/503."""

    def __init__(
        self, url: str, key: str, fmt: str = "native", gzip_body: bool = True, max_retries: int = 8
    ):
        u = urlparse(url.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"--url: expected http(s)://host:port, got {url!r}")
        if fmt not in ("native", "otlp"):
            raise ValueError("--format: native or otlp")
        self.u, self.key, self.fmt, self.gzip_body, self.max_retries = (
            u,
            key,
            fmt,
            gzip_body,
            max_retries,
        )
        self.base = u.path or ""
        self.stats = SendStats()
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.u.scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = cls(self.u.hostname, self.u.port, timeout=60)
        return self._conn

    def send(self, spans: list[dict[str, Any]]) -> None:
        if self.fmt == "native":
            path, ctype, body = "/api/v1/spans", "application/json", orjson.dumps({"spans": spans})
        else:
            path, ctype, body = (
                "/v1/traces",
                "application/x-protobuf",
                to_otlp(spans).SerializeToString(),
            )
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": ctype}
        if self.gzip_body:
            body, headers["Content-Encoding"] = gzip.compress(body, 1), "gzip"
        self.stats.spans += len(spans)
        for attempt in range(self.max_retries + 1):
            try:
                conn = self._connection()
                conn.request("POST", self.base + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError as exc:
                self._conn = None
                if attempt == self.max_retries:
                    self._fail(f"network: {exc}", len(spans))
                    return
                self.stats.retries += 1
                time.sleep(min(30, 0.5 * 2**attempt))
                continue
            self.stats.requests += 1
            if resp.status == 200:
                if self.fmt == "native":
                    out = orjson.loads(data)
                    self.stats.accepted += out["accepted"]
                    self.stats.rejected += len(out["rejected"])
                else:
                    self.stats.accepted += len(spans)
                return
            if resp.status in (429, 502, 503, 504) and attempt < self.max_retries:
                self.stats.retries += 1
                time.sleep(_retry_after(resp.getheader("Retry-After"), attempt))
                continue
            self._fail(f"HTTP {resp.status}: {data[:300]!r}", len(spans))
            return

    def _fail(self, message: str, n: int) -> None:
        self.stats.failures += 1
        if len(self.stats.errors) < 20:
            self.stats.errors.append(message)


def _retry_after(value: str | None, attempt: int) -> float:
    if value:
        try:
            return min(60.0, max(0.0, float(value)))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return min(60.0, max(0.0, when.timestamp() - time.time()))
    return min(30.0, 0.5 * 2**attempt)


def demo_rates(week: int, weeks: int, defect_scale: float = 1.0) -> Rates:
    """Defect rates of week ``week`` (0 = oldest) in a backfill: the team improves week after
    week; handoff constraints get fixed two-thirds of the way through; the tool loop is fixed
    early and comes back in the last week (a regression)."""
    progress = week / max(1, weeks - 1)
    rates = Rates().scaled(defect_scale * (1.7 - 1.1 * progress))
    if week >= int(weeks * 2 / 3):
        rates.handoff_drop = 0.0
    if int(weeks * 0.35) <= week < weeks - 1:
        rates.tool_loop = 0.0
    return rates


def backfill(
    sender: Sender,
    *,
    weeks: int,
    traces_per_week: int,
    seed: int = 7,
    defect_scale: float = 1.0,
    batch: int = 300,
    until_ns: int | None = None,
    rate: float | None = None,
    progress: Callable[[str], None] | None = None,
    week_done: Callable[[int], None] | None = None,
) -> SendStats:
    """``weeks`` weeks of history ending now (oldest week first), improving week over week."""
    end = until_ns or time.time_ns()
    start = end - weeks * WEEK_NS
    gen = TrafficGenerator(seed=seed)
    for w in range(weeks):
        gen.rates = demo_rates(w, weeks, defect_scale)
        w_start = start + w * WEEK_NS
        w_end = min(end - 60 * 10**9, w_start + WEEK_NS)
        _pump(sender, gen.sessions(w_start, w_end, traces_per_week), batch, rate, progress)
        if week_done:
            week_done(w)
    return sender.stats


def live(
    sender: Sender,
    *,
    rate: float,
    duration: float,
    seed: int = 7,
    defect_scale: float = 1.0,
    batch: int = 300,
    progress: Callable[[str], None] | None = None,
) -> SendStats:
    """Traffic happening now, at ``rate`` spans/s for ``duration`` seconds."""
    gen = TrafficGenerator(seed=seed)
    gen.rates = Rates().scaled(defect_scale)
    deadline = time.monotonic() + duration

    def traces() -> Iterator[list[dict[str, Any]]]:
        while time.monotonic() < deadline:
            now = time.time_ns()
            # each trace starts a little before now, so it has finished by the time it is sent
            yield from gen.sessions(now - 120 * 10**9, now - 60 * 10**9, 20)

    _pump(sender, traces(), batch, rate, progress)
    return sender.stats


def _pump(
    sender: Sender,
    traces: Iterator[list[dict[str, Any]]],
    batch: int,
    rate: float | None,
    progress: Callable[[str], None] | None,
) -> None:
    buf: list[dict[str, Any]] = []
    last_report = time.monotonic()
    for tr in traces:
        buf.extend(tr)
        if len(buf) >= batch:
            sender.send(buf)
            buf = []
            if rate:
                # pace: never more than `rate` spans/s on average since the start
                ahead = sender.stats.spans / rate - sender.stats.elapsed
                if ahead > 0:
                    time.sleep(ahead)
            if progress and time.monotonic() - last_report >= 1:
                progress(sender.stats.line())
                last_report = time.monotonic()
    if buf:
        sender.send(buf)
    if progress:
        progress(sender.stats.line())
