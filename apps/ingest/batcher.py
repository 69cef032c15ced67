"""Group commit for span inserts.

ClickHouse (and chDB even more) wants few large inserts: an embedded insert costs ~5 ms whatever
its size. Concurrent requests therefore hand their encoded rows to this batcher; whichever request
finds no flush running becomes the leader, takes everything pending and inserts it in one go,
while the others wait. Every request returns only after the flush that carried its rows has
succeeded (acknowledged means stored), or raises that flush's error. With one client there is no
waiting at all; under concurrency the batches grow by themselves.

A request announces itself while it decodes (``arriving()``): a leader about to flush first waits
(at most ``gather_s``) for the requests already being decoded to hand their rows over, so that
concurrent requests share one insert instead of taking turns. A flush never waits for requests
that have not arrived, so a lone client never waits at all. Each insert costs the span store a
few milliseconds of CPU whatever its size, and every part it makes has to be merged later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
        gather_s: float = 0.0,
    ):
        self._insert = insert
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._gather_s = gather_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._pending: list[_Ticket] = []
        self._pending_rows = 0
        self._arriving = 0
        self._local = threading.local()
        self._flushing = False
        self.flushes = 0
        self.rows = 0

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around the decoding of a request that will (probably) ``submit``: flushes starting
        meanwhile wait for it (bounded by ``gather_s``)."""
        if not self._gather_s:
            yield
            return
        with self._lock:
            self._arriving += 1
        self._local.arriving = True
        try:
            yield
        finally:
            if self._local.arriving:  # it did not submit (refused, nothing valid, an error)
                self._local.arriving = False
                with self._lock:
                    self._arriving -= 1
                    self._arrived.notify_all()

    def submit(self, data: bytes, rows: int) -> None:
        """Store these encoded rows; returns once they are in the span store, else raises."""
        ticket = _Ticket(data, rows)
        arrived = getattr(self._local, "arriving", False)
        with self._lock:
            if arrived:
                self._local.arriving = False
                self._arriving -= 1
                self._arrived.notify_all()
            self._pending.append(ticket)
            self._pending_rows += rows
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
            if self._max_wait_s:
                time.sleep(self._max_wait_s)  # let concurrent requests join this flush
            with self._lock:
                if self._arriving and self._gather_s:
                    # Requests being decoded right now: let them join this flush.
                    self._arrived.wait_for(
                        lambda: not self._arriving or self._pending_rows >= self._max_rows,
                        self._gather_s,
                    )
                batch, rows = [], 0
                while self._pending and (
                    not batch or rows + self._pending[0].rows <= self._max_rows
                ):
                    t = self._pending.pop(0)
                    batch.append(t)
                    rows += t.rows
                self._pending_rows -= rows
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
            self.rows += sum(t.rows for t in batch)
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


# Upper bound on how long a flush waits for requests still being decoded (a request of a few
# hundred spans decodes in 1-3 ms; a much larger one is not worth waiting for).
DEFAULT_GATHER_MS = 10.0

_batcher: GroupCommitBatcher | None = None
_batcher_lock = threading.Lock()


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
                    gather_s=cfg.get("BATCH_GATHER_MS", DEFAULT_GATHER_MS) / 1000,
                )
    return _batcher


def shutdown_batcher() -> None:
    """Nothing is buffered between requests (each waits for its flush); kept for symmetry."""
    global _batcher
    _batcher = None
