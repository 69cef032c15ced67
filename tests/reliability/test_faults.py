"""Faults survived: the relational database, Redis and the span store going away and coming back."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
from django.db import connection

from apps.ingest.ratelimit import reset_limiter
from kriyplatform.clickhouse.client import HttpTransport
from kriyplatform.errors import SpanStoreUnavailable
from tests.factories import post_spans, trace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_database_outage_answers_503_with_retry_after_then_recovers(tenant_a) -> None:
    page, api = f"{tenant_a.base}/issues/", tenant_a.api(tenant_a.read_key)
    assert tenant_a.client.get(page).status_code == 200
    assert api.get("/api/v1/issues").status_code == 200
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())  # nothing listens: connection refused
    try:
        for resp in (
            tenant_a.client.get(page),
            api.get("/api/v1/issues"),
            tenant_a.client.get("/healthz"),
        ):
            assert resp.status_code == 503, resp.content[:200]
            assert resp["Retry-After"]
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original
    assert tenant_a.client.get(page).status_code == 200  # no restart needed
    assert api.get("/api/v1/issues").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_ingest_with_a_cached_key_keeps_working_while_the_database_is_down(tenant_a) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    assert post_spans(api, trace()).status_code == 200  # key, limits and quota now cached
    original = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = str(free_port())
    try:
        resp = post_spans(api, trace())
    finally:
        connection.close()
        connection.settings_dict["PORT"] = original
    assert resp.status_code == 200


def test_clickhouse_server_unreachable_is_span_store_unavailable() -> None:
    transport = HttpTransport(f"http://127.0.0.1:{free_port()}/?connect_timeout=1", "kriy")
    with pytest.raises(SpanStoreUnavailable):
        transport.query("SELECT 1", {}, "JSONEachRow")


@pytest.fixture
def own_redis() -> Iterator[tuple[int, callable, callable]]:
    """A redis-server of our own on a free port that the test can stop and start again."""
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is required (it runs on these machines)")
    port, workdir = free_port(), tempfile.mkdtemp(prefix="kriy-redis-")
    proc: list[subprocess.Popen] = []

    def start() -> None:
        p = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
        )
        proc.append(p)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def stop() -> None:
        p = proc.pop()
        p.terminate()
        p.wait(10)

    start()
    yield port, start, stop
    while proc:
        stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.django_db
def test_rate_limiting_fails_open_while_redis_is_down_and_applies_again_when_it_returns(
    tenant_a, settings, own_redis, caplog
) -> None:
    port, start, stop = own_redis
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    settings.KRIY_RATE_LIMIT_SPANS_PER_SEC = 1
    settings.KRIY_RATE_LIMIT_BURST = 6
    reset_limiter()
    api = tenant_a.api(tenant_a.ingest_key)
    assert post_spans(api, trace(n_children=2)).status_code == 200  # 3 of 6 tokens
    stop()
    with caplog.at_level(logging.WARNING, logger="apps.ingest.ratelimit"):
        for _ in range(3):  # 9 more spans: over the burst, but Redis is gone: fail open
            assert post_spans(api, trace(n_children=2)).status_code == 200
    assert "fail open" in caplog.text
    start()  # a fresh, empty Redis: the bucket starts full again
    assert post_spans(api, trace(n_children=4)).status_code == 200  # 5 of 6
    resp = post_spans(api, trace(n_children=4))
    assert resp.status_code == 429 and int(resp["Retry-After"]) >= 1


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_tasks_resume_when_the_redis_broker_returns(own_redis) -> None:
    """The worker keeps running while its broker is gone and picks up work once it is back."""
    from celery.contrib.testing.worker import start_worker

    from apps.metrics.tasks import rollup_recent_task
    from kriyplatform.celery import app
    from tests.conftest import reset_celery_connections

    port, start, stop = own_redis
    url = f"redis://127.0.0.1:{port}/0"
    old = {k: app.conf.get(k) for k in ("broker_url", "result_backend", "task_always_eager")}

    app.conf.update(
        broker_url=url, result_backend=url, task_always_eager=False, broker_connection_retry=True
    )
    rollup_recent_task.ignore_result = False
    reset_celery_connections()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            assert "rows" in rollup_recent_task.delay().get(timeout=60)
            stop()  # the broker goes away under a running worker
            time.sleep(1.5)  # let the worker notice the lost connection (not synchronisation)
            start()  # …and comes back empty; publisher and consumer reconnect by themselves
            assert "rows" in rollup_recent_task.delay().get(timeout=90)
    finally:
        rollup_recent_task.ignore_result = True
        app.conf.update(old)
        reset_celery_connections()
