"""Group commit (apps.ingest.batcher): acknowledged after the flush that carried the rows, and a
flush waits only for requests already being decoded."""

from __future__ import annotations

import threading
import time

import pytest

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


def test_a_lone_request_never_waits() -> None:
    store = Store()
    b = GroupCommitBatcher(store, gather_s=5.0)
    started = time.perf_counter()
    for i in range(3):
        with b.arriving():
            b.submit(b"r%d;" % i, 1)
    assert time.perf_counter() - started < 1.0
    assert store.inserts == [b"r0;", b"r1;", b"r2;"]


def test_a_flush_waits_for_a_request_being_decoded_and_carries_both() -> None:
    store = Store()
    b = GroupCommitBatcher(store, gather_s=5.0)
    decoding = threading.Event()

    def other() -> None:
        with b.arriving():
            decoding.set()
            time.sleep(0.3)  # decoding
            b.submit(b"other;", 1)

    t = threading.Thread(target=other)
    t.start()
    decoding.wait()
    started = time.perf_counter()
    with b.arriving():
        b.submit(b"mine;", 1)
    waited = time.perf_counter() - started
    t.join()
    assert store.inserts == [b"mine;other;"]
    assert 0.2 < waited < 4.0


def test_a_request_that_stores_nothing_releases_the_waiting_flush() -> None:
    store = Store()
    b = GroupCommitBatcher(store, gather_s=5.0)
    decoding = threading.Event()

    def refused() -> None:
        with pytest.raises(ValueError), b.arriving():
            decoding.set()
            time.sleep(0.2)
            raise ValueError("every span invalid")

    t = threading.Thread(target=refused)
    t.start()
    decoding.wait()
    started = time.perf_counter()
    b.submit(b"mine;", 1)
    assert time.perf_counter() - started < 4.0
    t.join()
    assert store.inserts == [b"mine;"]
    assert b._arriving == 0


def test_the_wait_is_bounded() -> None:
    store = Store()
    b = GroupCommitBatcher(store, gather_s=0.2)
    release = threading.Event()

    def slow() -> None:
        with b.arriving():
            release.wait(10)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.05)
    started = time.perf_counter()
    b.submit(b"mine;", 1)
    assert 0.15 < time.perf_counter() - started < 2.0
    release.set()
    t.join()


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
