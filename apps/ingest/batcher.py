"""Group commit for span inserts.

ClickHouse (and chDB even more) wants few large inserts: an embedded insert costs ~5 ms whatever
its size. Concurrent requests therefore hand their encoded rows to this batcher; whichever request
finds no flush running becomes the leader, takes everything pending and inserts it in one go,
while the others wait. Every request returns only after the flush that carried its rows has
succeeded (acknowledged means stored), or raises that flush's error. With one client there is no
waiting at all; under concurrency the batches grow by themselves.

``max_wait_s`` (``KRIY_INGEST["BATCH_MAX_WAIT_MS"]``) lets a flush wait that long for more
requests to join it, which makes fewer, larger inserts: each insert costs the span store a few
milliseconds of CPU whatever its size (~9 ms for the 35 columns of ``spans`` on chDB), and every
part it makes is merged again later. A flush waits only while fewer requests are pending than
the previous flush carried (the others are probably still decoding), and starts as soon as they
are in: a lone client never waits, and a flush whose partners are already queued does not either.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kriyplatform.clickhouse.client import ClickHouseError


@dataclass
class _Ticket:
    data: bytes
    rows: int
    done: bool = False
    error: BaseException | None = None
    event: threading.Event = field(default_factory=threading.Event)


class GroupCommitBatcher:
    def __init__(
        self,
        insert: Callable[[bytes], None],
        max_rows: int = 20_000,
        max_wait_s: float = 0.0,
    ):
        self._insert = insert
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._lock = threading.Lock()
        self._joined = threading.Condition(self._lock)  # notified when a request is submitted
        self._pending: list[_Ticket] = []
        self._last_batch = 0  # requests the previous flush carried
        self._flushing = False
        self.flushes = 0
        self.rows = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=4096)  # (monotonic time, rows)

    def recent_rate(self, window_s: float = 3.0) -> float:
        """Rows stored per second over the last ``window_s`` seconds (this process)."""
        since = time.monotonic() - window_s
        return sum(n for t, n in list(self._recent) if t >= since) / window_s

    def submit(self, data: bytes, rows: int) -> None:
        """Store these encoded rows; returns once they are in the span store, else raises."""
        ticket = _Ticket(data, rows)
        with self._lock:
            self._pending.append(ticket)
            self._joined.notify()
            leader = not self._flushing
            if leader:
                self._flushing = True
        if not leader:
            ticket.event.wait()
            if ticket.done:
                if ticket.error is not None:
                    raise ticket.error
                return
            # Woken to lead the next flush (the previous leader finished without our rows).
        self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error

    def _lead(self, own: _Ticket) -> None:
        while True:
            with self._lock:
                if self._max_wait_s and len(self._pending) < self._last_batch:
                    # Fewer requests waiting than the previous flush carried: the others are
                    # probably still decoding; let them join (each submit wakes this wait).
                    deadline = time.monotonic() + self._max_wait_s
                    while len(self._pending) < self._last_batch:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._joined.wait(left)
                batch, rows = [], 0
                while self._pending and (
                    not batch or rows + self._pending[0].rows <= self._max_rows
                ):
                    t = self._pending.pop(0)
                    batch.append(t)
                    rows += t.rows
                self._last_batch = len(batch)
            self._flush(batch)
            with self._lock:
                if own.done and not self._pending:
                    self._flushing = False
                    return
                if own.done:
                    # Hand leadership to the oldest waiter so this request can answer now.
                    nxt = self._pending[0]
                    nxt.event.set()
                    return
            # Our own rows did not fit this flush: lead another round.

    def _flush(self, batch: list[_Ticket]) -> None:
        try:
            self._insert(b"".join(t.data for t in batch))
            self.flushes += 1
            n = sum(t.rows for t in batch)
            self.rows += n
            self._recent.append((time.monotonic(), n))
        except ClickHouseError as exc:
            if len(batch) == 1:
                self._finish(batch, exc)
                return
            # Rows the store refuses must not sink the other requests of the batch: retry alone.
            for t in batch:
                try:
                    self._insert(t.data)
                    self._finish([t], None)
                except BaseException as exc:
                    self._finish([t], exc)
            return
        except BaseException as exc:
            self._finish(batch, exc)
            return
        self._finish(batch, None)

    @staticmethod
    def _finish(batch: list[_Ticket], error: BaseException | None) -> None:
        for t in batch:
            t.error = error
            t.done = True
            t.event.set()


_batcher: GroupCommitBatcher | None = None
_batcher_lock = threading.Lock()


def current_batcher() -> GroupCommitBatcher | None:
    """The batcher, if this process has ingested anything (never creates one)."""
    return _batcher


def get_batcher() -> GroupCommitBatcher:
    global _batcher
    if _batcher is None:
        with _batcher_lock:
            if _batcher is None:
                from django.conf import settings

                from apps.ingest.rows import FORMAT, INSERT_TARGET
                from kriyplatform.clickhouse.client import ch_insert

                cfg = settings.KRIY_INGEST
                _batcher = GroupCommitBatcher(
                    lambda data: ch_insert(INSERT_TARGET, data, FORMAT),
                    max_rows=cfg["BATCH_MAX_ROWS"],
                    max_wait_s=cfg["BATCH_MAX_WAIT_MS"] / 1000,
                )
    return _batcher


def shutdown_batcher() -> None:
    """Nothing is buffered between requests (each waits for its flush); kept for symmetry."""
    global _batcher
    _batcher = None
