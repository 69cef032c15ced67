"""Group commit (apps.ingest.batcher): each request is acknowledged after the flush that carried
its rows, refused rows fail only their own request, and a flush waits only for requests it expects."""

from __future__ import annotations

import threading
import time

from apps.ingest.batcher import GroupCommitBatcher
from kriyplatform.clickhouse.client import ClickHouseError


class Store:
    def __init__(self, delay: float = 0.0, refuse: bytes = b"") -> None:
        self.inserts: list[bytes] = []
        self.started: list[float] = []  # when each insert began (perf_counter)
        self.delay = delay
        self.refuse = refuse

    def __call__(self, data: bytes) -> None:
        self.started.append(time.perf_counter())
        time.sleep(self.delay)
        if self.refuse and self.refuse in data:
            raise ClickHouseError("refused")
        self.inserts.append(data)


def test_a_lone_client_never_waits() -> None:
    store = Store()
    b = GroupCommitBatcher(store, max_wait_s=1.0)
    started = time.perf_counter()
    for i in range(3):
        b.submit(b"r%d;" % i, 1)
    assert time.perf_counter() - started < 1.0
    assert store.inserts == [b"r0;", b"r1;", b"r2;"]


def test_a_flush_waits_only_for_as_many_requests_as_the_previous_one_carried() -> None:
    store = Store(delay=0.2)
    b = GroupCommitBatcher(store, max_wait_s=0.3)
    done: list[bytes] = []
    began = time.perf_counter()

    def send(name: bytes, after: float) -> None:
        time.sleep(after)
        b.submit(name, 1)
        done.append(name)

    # "a" flushes alone. "b" and "c" queue behind it and flush together as soon as "a" is
    # stored: nobody else is expected. "d" queues behind them; that flush carried two, so "d"
    # waits for a partner, and flushes the moment "e" arrives instead of after the full wait.
    threads = [
        threading.Thread(target=send, args=(n, t))
        for n, t in ((b"a;", 0), (b"b;", 0.05), (b"c;", 0.1), (b"d;", 0.3), (b"e;", 0.45))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.inserts == [b"a;", b"b;c;", b"d;e;"]
    assert sorted(done) == [b"a;", b"b;", b"c;", b"d;", b"e;"]
    starts = [t - began for t in store.started]
    assert starts[1] < 0.2 + 0.15  # "b" and "c" did not wait (a wait would start it at 0.5)
    assert 0.45 <= starts[2] < 0.4 + 0.25  # started with "e", not at the end of the wait (0.7)


def test_rows_the_store_refuses_fail_only_their_own_request() -> None:
    store = Store(delay=0.2, refuse=b"bad")
    b = GroupCommitBatcher(store)
    results: dict[str, object] = {}

    def send(name: bytes) -> None:
        try:
            b.submit(name + b";", 1)
            results[name.decode()] = "ok"
        except ClickHouseError as exc:
            results[name.decode()] = exc

    first = threading.Thread(target=send, args=(b"first",))
    first.start()
    time.sleep(0.05)  # "first" is flushing: the next two wait and share the next flush
    others = [threading.Thread(target=send, args=(n,)) for n in (b"good", b"bad")]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join()
    assert results["first"] == "ok" and results["good"] == "ok"
    assert isinstance(results["bad"], ClickHouseError)
    assert b"good;" in store.inserts and not any(b"bad" in i for i in store.inserts)
