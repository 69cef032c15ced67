"""A Celery worker process killed mid-task: the task runs again, and the notification it was
sending reaches the receiver exactly once (Celery's acks_late + reject_on_worker_lost, and the
delivery's lease). A real prefork worker on the Redis of these machines; a real HTTP receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from django.db import connection

from apps.alerts import services
from apps.alerts.models import Delivery
from kriyplatform.celery import app
from tests.conftest import reset_celery_connections

ROOT = Path(__file__).resolve().parents[2]
BROKER = "redis://127.0.0.1:6379/12"


class BlockingReceiver:
    """Holds the first request open until told to let go; answers 200 to the next ones."""

    def __init__(self) -> None:
        self.first_seen = threading.Event()
        self.release = threading.Event()
        self.delivered = threading.Event()
        self.requests: list[dict] = []
        self.answered_2xx = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append(dict(self.headers.items()))
                if len(receiver.requests) == 1:
                    receiver.first_seen.set()
                    receiver.release.wait(60)
                    self.close_connection = True  # never answered: its sender died meanwhile
                    return
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                receiver.answered_2xx += 1
                receiver.delivered.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # field 4 of /proc/<pid>/stat: the parent pid
            out.append(int(stat.parent.name))
    return out


@pytest.fixture
def prefork_worker(settings):
    redis.Redis.from_url(BROKER).flushdb()
    log = tempfile.NamedTemporaryFile(prefix="kriy-worker-", suffix=".log", delete=False)  # noqa: SIM115
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
        "CELERY_BROKER_URL": BROKER,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "KRIY_DATA_DIR": tempfile.mkdtemp(prefix="kriy-worker-data-"),
        "KRIY_DEMO": "0",
        "KRIY_ALERT_HTTP_TIMEOUT": "2",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "kriyplatform",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    settings.KRIY_ALERT_HTTP_TIMEOUT = 2
    old = {k: app.conf.get(k) for k in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=BROKER, task_always_eager=False)
    reset_celery_connections()
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):  # the worker answers once it consumes
            assert proc.poll() is None, Path(log.name).read_text()[-2000:]
            assert time.monotonic() < deadline, "worker did not start"
        yield proc, log.name
    finally:
        app.conf.update(old)
        reset_celery_connections()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_delivery_reruns_the_task_and_notifies_once(
    tenant_a, prefork_worker
) -> None:
    proc, log_path = prefork_worker
    receiver = BlockingReceiver()
    try:
        channel, _secret = services.channel_create(
            project=tenant_a.project,
            actor=tenant_a.user,
            data={"name": "hook", "kind": "webhook", "url": receiver.url},
        )
        rule = services.rule_create(
            project=tenant_a.project,
            actor=tenant_a.user,
            data={
                "name": "any new issue",
                "metric": "new_issue",
                "comparison": ">=",
                "threshold": 0,
                "window_seconds": 900,
                "channels": [channel.pk],
            },
        )
        evaluation = services.rule_evaluate(
            rule_id=rule.pk
        )  # fires; the delivery task goes to Redis on commit
        (delivery_id,) = evaluation.deliveries

        assert receiver.first_seen.wait(60), Path(log_path).read_text()[-3000:]
        children = _children(proc.pid)
        assert len(children) == 1
        os.kill(children[0], signal.SIGKILL)  # the pool child dies mid-request
        receiver.release.set()

        assert receiver.delivered.wait(90), Path(log_path).read_text()[-3000:]
        deadline = time.monotonic() + 30
        while Delivery.objects.get(pk=delivery_id).status != "delivered":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        d = Delivery.objects.get(pk=delivery_id)
        assert (d.status, d.attempts) == ("delivered", 2)
        assert receiver.answered_2xx == 1  # one notification, though the task ran twice
        ids = {r.get("X-Kriy-Delivery") for r in receiver.requests}
        assert len(receiver.requests) == 2 and len(ids) == 1  # the same idempotency key both times
        assert "WorkerLostError" in Path(log_path).read_text()
    finally:
        receiver.close()
