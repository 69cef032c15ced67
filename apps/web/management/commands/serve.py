from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Migrate and serve the platform (embedded default: web + Celery worker + beat in one process)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
        parser.add_argument(
            "--threads", type=int, default=int(os.environ.get("KRIY_WEB_THREADS") or 8)
        )
        parser.add_argument(
            "--no-migrate",
            action="store_true",
            help="skip migrations at start (run migrate and migrate_clickhouse once, in a deploy job)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        from kriyplatform.embedded import serve

        def out(msg: str) -> None:
            self.stdout.write(msg)
            self.stdout.flush()

        serve(
            host=opts["host"],
            port=opts["port"],
            threads=opts["threads"],
            out=out,
            migrate=not opts["no_migrate"],
        )
