from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from django.core.management.base import BaseCommand, CommandParser

from apps.detection.offline import InputError, detect_file


class Command(BaseCommand):
    help = (
        "Run the detectors of spans.md offline on JSON-lines native spans (or an OTLP JSON export) "
        "and print the findings as JSON lines sorted by trace_id, span_id, type. Exit 2 on unreadable input."
    )
    requires_system_checks: list = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "file",
            type=Path,
            help="native spans, one JSON object per line; or an OTLP JSON ExportTraceServiceRequest (.json)",
        )
        parser.add_argument(
            "--contracts",
            type=Path,
            default=None,
            help='JSON {agent: {"required_steps": [...], "latency_slo_ms": n}}',
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            findings = detect_file(opts["file"], opts["contracts"])
        except InputError as exc:
            self.stderr.write(f"detect: {exc}")
            sys.exit(2)
        out = sys.stdout.buffer
        for f in findings:
            out.write(
                orjson.dumps(
                    {
                        "trace_id": f.trace_id,
                        "span_id": f.span_id,
                        "type": f.type,
                        "message": f.message,
                    }
                )
            )
            out.write(b"\n")
        out.flush()
