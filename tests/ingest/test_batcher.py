"""Group commit (apps.ingest.batcher): each request is acknowledged after the flush that carried
its rows, refused rows fail only their own request, and a flush waits only under concurrency."""

from __future__ import annotations

import threading
import time

from apps.ingest.batcher import GroupCommitBatcher
from kriyplatform.clickhouse.client import ClickHouseError


class Store:
    def __init__(self, delay: float = 0.0, refuse: bytes = b"") -> None:
        self.inserts: list[bytes] = []
        self.delay = delay
        self.refuse = refuse

    def __call__(self, data: bytes) -> None:
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


def test_under_concurrency_a_flush_waits_for_more_requests_to_join() -> None:
    store = Store(delay=0.2)
    b = GroupCommitBatcher(store, max_wait_s=0.3)
    done: list[bytes] = []

    def send(name: bytes, after: float) -> None:
        time.sleep(after)
        b.submit(name, 1)
        done.append(name)

    # "a" flushes alone; "b" and "c" queue behind it, so the next flush is concurrent traffic
    # and waits: "d", arriving during that wait, joins it.
    threads = [
        threading.Thread(target=send, args=(n, t))
        for n, t in ((b"a;", 0), (b"b;", 0.05), (b"c;", 0.1), (b"d;", 0.35))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.inserts == [b"a;", b"b;c;d;"]
    assert sorted(done) == [b"a;", b"b;", b"c;", b"d;"]


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
