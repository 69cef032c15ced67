from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.demo.simulate import Sender, backfill, live


def _rate(value: str) -> float:
    v = value.removesuffix("/s")
    try:
        rate = float(v)
    except ValueError as exc:
        raise CommandError(
            f"--rate: expected spans per second like 500 or 500/s, got {value!r}"
        ) from exc
    if rate <= 0:
        raise CommandError("--rate: must be positive")
    return rate


class Command(BaseCommand):
    help = (
        "Send realistic agent traffic (support, planning, multi-agent handoffs, stateful sessions, with "
        "injected defects) to a running platform: live at --rate for --duration, or --weeks of history."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", required=True, help="platform base URL, e.g. http://127.0.0.1:8000"
        )
        parser.add_argument("--key", required=True, help="an API key with the ingest scope")
        parser.add_argument(
            "--rate", default=None, help="spans per second (default: as fast as accepted)"
        )
        parser.add_argument(
            "--duration", type=float, default=60.0, help="seconds of live traffic (default 60)"
        )
        parser.add_argument(
            "--weeks",
            type=int,
            default=0,
            help="backfill this many weeks of history instead of live traffic",
        )
        parser.add_argument("--traces-per-week", type=int, default=800)
        parser.add_argument("--format", choices=["native", "otlp"], default="native")
        parser.add_argument(
            "--defect-scale", type=float, default=1.0, help="multiply every injected defect rate"
        )
        parser.add_argument("--batch", type=int, default=300, help="spans per request")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **o: Any) -> None:
        try:
            sender = Sender(o["url"], o["key"], fmt=o["format"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        rate = _rate(o["rate"]) if o["rate"] else None

        def progress(line: str) -> None:
            self.stdout.write(f"\r{line}   ", ending="")
            self.stdout.flush()

        if o["weeks"] > 0:
            stats = backfill(
                sender,
                weeks=o["weeks"],
                traces_per_week=o["traces_per_week"],
                seed=o["seed"],
                defect_scale=o["defect_scale"],
                batch=o["batch"],
                rate=rate,
                progress=progress,
            )
        else:
            stats = live(
                sender,
                rate=rate or 500.0,
                duration=o["duration"],
                seed=o["seed"],
                defect_scale=o["defect_scale"],
                batch=o["batch"],
                progress=progress,
            )
        self.stdout.write("")
        self.stdout.write(f"done: {stats.line()}")
        for e in stats.errors[:5]:
            self.stderr.write(f"error: {e}")
        if stats.failures:
            sys.exit(1)
