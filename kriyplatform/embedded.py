"""The embedded default: one process with the web server, a Celery worker and beat.

``make run`` → ``manage.py serve``: applies the Django and ClickHouse migrations, starts a Celery
worker and beat as threads on the in-memory broker (when no ``CELERY_BROKER_URL`` is set), serves
the WSGI app with waitress (a production server, not runserver) and stops cleanly on SIGTERM or
Ctrl-C. chDB is opened in this process only, on first use.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management import call_command

log = logging.getLogger("kriyplatform.serve")


class EmbeddedWorkers:
    """A Celery worker (solo pool) and beat running as threads of this process."""

    def __init__(self) -> None:
        from kriyplatform.celery import app

        self.app = app
        self.worker: Any = None
        self.thread: threading.Thread | None = None
        self.beat: Any = None

    def start(self) -> None:
        from celery.beat import EmbeddedService

        self.app.finalize()
        self.worker = self.app.WorkController(
            pool="solo",
            concurrency=1,
            loglevel="WARNING",
            hostname="embedded@kriyplatform",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self.thread = threading.Thread(target=self.worker.start, name="celery-worker", daemon=True)
        self.thread.start()
        # In-memory schedule: one process, nothing to share with another beat.
        self.beat = EmbeddedService(self.app, thread=True, scheduler_cls="celery.beat:Scheduler")
        self.beat.start()

    def stop(self, timeout: float = 10) -> None:
        from celery.worker import state

        if self.beat is not None:
            self.beat.stop()
        if self.thread is not None:
            state.should_terminate = 0  # the worker's loop exits after the task in hand
            self.thread.join(timeout)
            state.should_terminate = None


def _proxy_options() -> dict[str, Any]:
    """Trust X-Forwarded-Proto/For/Host from the configured proxy only (KRIY_TRUSTED_PROXY)."""
    if not settings.KRIY_TRUSTED_PROXY:
        return {}
    return {
        "trusted_proxy": settings.KRIY_TRUSTED_PROXY,
        "trusted_proxy_count": 1,
        "trusted_proxy_headers": {"x-forwarded-proto", "x-forwarded-for", "x-forwarded-host"},
    }


def prepare(out: Callable[[str], None] = print) -> None:
    settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    out("Applying database migrations…")
    call_command("migrate", interactive=False, verbosity=0)
    out("Applying ClickHouse migrations…")
    call_command("migrate_clickhouse")


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 8,
    out: Callable[[str], None] = print,
    migrate: bool = True,
) -> None:
    from waitress.server import create_server

    from kriyplatform.wsgi import application

    if migrate:
        prepare(out)
    else:
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
    from apps.ingest.runtime import tune_once

    tune_once()  # freeze what start-up loaded; fewer collections while serving
    workers = None
    if settings.CELERY_EMBEDDED:
        workers = EmbeddedWorkers()
        workers.start()
        out("Celery worker and beat started in-process (in-memory broker).")
    else:
        out(
            f"Celery broker {settings.CELERY_BROKER_URL.split('@')[-1]}: run `celery -A kriyplatform worker` and `beat` separately."
        )

    server = create_server(
        application,
        host=host,
        port=port,
        threads=threads,
        connection_limit=200,
        # ingest bodies are hundreds of KB: read them in large chunks and keep them in memory
        # (waitress' defaults read 8 KB at a time and spill bodies over 512 KB to temp files)
        recv_bytes=262_144,
        inbuf_overflow=4 * 1024 * 1024,
        channel_timeout=120,
        max_request_body_size=settings.KRIY_INGEST["MAX_BODY_BYTES"] + 1024,
        ident="kriyplatform",
        clear_untrusted_proxy_headers=True,
        **_proxy_options(),
    )
    stopping = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            return
        stopping.set()
        out(f"Received {signal.Signals(signum).name}: stopping…")
        server.close()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    out(f"kriyplatform is serving on http://{host}:{port}  (data in {settings.DATA_DIR})")
    if settings.KRIY_DEMO:
        from apps.demo.seed import seed_in_background

        seed_in_background(f"http://{host}:{port}", out=out)
    started = time.monotonic()
    try:
        server.run()
    except (OSError, ValueError):
        # waitress' loop raises when its sockets are closed under it by the signal handler.
        if not stopping.is_set():
            raise
    finally:
        from apps.ingest.batcher import shutdown_batcher

        shutdown_batcher()
        if workers is not None:
            workers.stop()
        out(f"Stopped after {time.monotonic() - started:.0f}s.")
