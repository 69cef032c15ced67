"""Offline judging for ``manage.py detect``: the same validation, OTLP mapping and detectors as
the server, with no server, database or span store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from apps.detection.detectors import Finding, Span, detect, parse_contracts
from apps.ingest.native import Limits, validate_spans


class InputError(Exception):
    """The input cannot be judged; the message names the line or field."""


def row_to_span(r: dict[str, Any]) -> Span:
    return Span(
        trace_id=r["trace_id"],
        span_id=r["span_id"],
        parent_span_id=r["parent_span_id"],
        session_id=r["session_id"],
        agent=r["agent"],
        name=r["name"],
        kind=r["kind"],
        start_ns=r["start_ns"],
        end_ns=r["end_ns"],
        status=r["status"],
        input=r["input"],
        result_partial=bool(r["result_partial"]),
        retry_attempt=r["retry_attempt"],
        retry_reason=r["retry_reason"],
        constraints=tuple(r["constraints"]),
        context_required=tuple(r["context_required"]),
        context_present=tuple(r["context_present"]),
        state_key=r["state_key"],
        state_version=r["state_version"],
        state_op=r["state_op"],
        invoke_agent=bool(r["invoke_agent"]),
    )


def _otlp_natives(doc: bytes, where: str) -> list[dict[str, Any]]:
    from apps.ingest.otlp import OtlpDecodeError, decode_request, to_native

    try:
        req = decode_request(doc, "application/json")
    except OtlpDecodeError as exc:
        raise InputError(
            f"{where}: not a valid OTLP JSON ExportTraceServiceRequest: {exc}"
        ) from exc
    natives = []
    for i, (native, errors, span_id) in enumerate(to_native(req)):
        if native is None:
            raise InputError(f"{where}: span {i} ({span_id or 'no id'}): {'; '.join(errors)}")
        natives.append(native)
    return natives


def _records(path: Path) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(where, native spans) per record: a whole-file OTLP/JSON document, or one per line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    stripped = data.strip()
    if stripped.startswith(b"{") and b"\n{" not in stripped:
        # one JSON document: an OTLP export, {"spans": [...]}, or a single native span
        try:
            doc = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc})") from exc
        if isinstance(doc, dict) and ("resourceSpans" in doc or "resource_spans" in doc):
            yield str(path), _otlp_natives(stripped, str(path))
            return
        if isinstance(doc, dict) and isinstance(doc.get("spans"), list):
            yield str(path), doc["spans"]
            return
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{where}: not valid JSON ({exc})") from exc
        if isinstance(obj, dict) and ("resourceSpans" in obj or "resource_spans" in obj):
            yield where, _otlp_natives(line, where)
        else:
            yield where, [obj]


def read_spans(path: Path) -> list[Span]:
    """Every span of the file, validated exactly as ingest validates them."""
    limits = Limits.from_settings()  # the same limits as ingest
    natives: list[dict[str, Any]] = []
    wheres: list[str] = []
    for where, items in _records(path):
        natives.extend(items)
        wheres.extend([where] * len(items))
    rows, rejected = validate_spans(natives, limits)
    if rejected:
        r = rejected[0]
        raise InputError(
            f"{wheres[r.index]}: {'; '.join(r.errors)}"
            + (f" (and {len(rejected) - 1} more invalid spans)" if len(rejected) > 1 else "")
        )
    return [row_to_span(r) for r in rows]


def read_contracts(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from exc
    try:
        return parse_contracts(doc)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc


def detect_file(path: Path, contracts_path: Path | None = None) -> list[Finding]:
    return detect(read_spans(path), read_contracts(contracts_path))
