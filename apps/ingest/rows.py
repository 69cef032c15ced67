"""Span rows on the wire to the span store: one JSONCompactColumns block per request.

Both ingest paths end here: the row dicts of ``native.validate_spans`` (slow path, OTLP, the
offline tools) through ``rows_to_columns``, and the fast paths, which build the columns
directly. One block is a JSON array of columns in ``COLUMNS`` order, built by a single
``orjson.dumps`` call; the group-commit batcher concatenates blocks of several requests into
one insert.

How values travel:
- ``input``/``output``/``attributes``/``events`` are String columns holding JSON text. An object
  or array is sent as itself and the store keeps its text byte for byte
  (``input_format_json_read_objects_as_strings``/``…arrays_as_strings``, set on the insert), so
  that text is never escaped and unescaped again. Any other JSON value is sent as its JSON text
  in a string (``"hello"`` is stored with its quotes, like the text the slow path produces).
- times are DateTime64(9) sent as exact decimal numbers ``<ns>e-9``.

Where the compiled encoder is built (``apps/ingest/_nativeblock.pyx``, by ``pip install -e .``),
the same columns travel in ClickHouse's ``Native`` format instead: lengths and raw numbers that
the engine does not parse, ~25 % less engine CPU per insert. ``FORMAT`` says which one this
process uses; the stored rows are the same (``tests/ingest/test_rows.py``). Either way a cell of
a JSON-text column is ``""``/a ``str`` (stored as is), ``bytes`` (the JSON text of an object or
array, stored as is) or a dict/list (encoded by orjson).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

# Insert order. Every column of apps.spans.sql.SPAN_COLUMNS (tests/ingest/test_rows.py checks).
COLUMNS = (
    "project_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "agent",
    "name",
    "kind",
    "start_time",
    "end_time",
    "duration_ns",
    "status",
    "status_message",
    "input",
    "output",
    "attributes",
    "events",
    "result_partial",
    "retry_attempt",
    "retry_reason",
    "constraints",
    "context_required",
    "context_present",
    "state_key",
    "state_version",
    "state_op",
    "invoke_agent",
    "model",
    "provider",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "retention_days",
    "ingested_at",
    "version",
)
try:
    from apps.ingest import _nativeblock
except ImportError:  # pragma: no cover - built without a C compiler
    _nativeblock = None

JSON_FORMAT = "JSONCompactColumns"
FORMAT = "Native" if _nativeblock is not None else JSON_FORMAT
# ``ch_insert`` target of each encoding, with the input settings it relies on (spelled out, so a
# server with other defaults reads the same text).
# ``optimize_on_insert = 0``: the engine does not collapse repeated keys inside each inserted
# block (~10 % of an insert's CPU); every read of spans uses FINAL or counts distinct ids, so a
# span sent twice in one group commit is still read once, and merges drop the older copy.
# JSON columns are positional, so that target lists them; a Native block names its columns and
# the engine matches them by name (a column added later gets its default), and leaving the list
# out saves planning it on every insert (~1 ms of the ~12 ms a group commit costs on chDB).
_NO_MERGE_ON_INSERT = "optimize_on_insert = 0"


def insert_target(fmt: str) -> str:
    """The ``ch_insert`` target for rows encoded in ``fmt``."""
    if fmt == "Native":
        return f"spans SETTINGS {_NO_MERGE_ON_INSERT}"
    return (
        "spans (" + ", ".join(COLUMNS) + ") SETTINGS input_format_json_read_objects_as_strings"
        f" = 1, input_format_json_read_arrays_as_strings = 1, {_NO_MERGE_ON_INSERT}"
    )


INSERT_TARGET = insert_target(FORMAT)

_Fragment = orjson.Fragment
_dumps = orjson.dumps


def ns_column(values: Sequence[int]) -> orjson.Fragment:
    """DateTime64(9) column from Unix nanoseconds: ``[1795629938141494811e-9,…]`` (exact)."""
    text = _dumps(values)
    return _Fragment(text.replace(b",", b"e-9,")[:-1] + b"e-9]")


def json_text_value(text: str) -> Any:
    """A stored JSON text (``""`` when absent) as a column value that stores exactly it."""
    if text[:1] in ("{", "["):
        return text.encode()
    return text


def _bytes_as_json(value: Any) -> orjson.Fragment:
    """JSON encoding: a ``bytes`` cell is the JSON text of an object or array, sent as itself."""
    if type(value) is bytes:
        return _Fragment(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_columns(
    cols: dict[str, Any],
    n: int,
    *,
    project_id: int,
    retention_days: int,
    version: int,
    now: int | None = None,
    fmt: str | None = None,
) -> bytes:
    """One block of ``n`` rows in ``fmt`` (default ``FORMAT``). ``cols`` maps every column but
    the per-request ones (``project_id``, ``retention_days``, ``ingested_at``, ``version``) to a
    sequence of ``n`` values; times come as ``start_ns``/``end_ns`` (Unix nanoseconds) and
    ``duration_ns`` is computed when absent."""
    if now is None:
        now = int(time.time())
    starts, ends = cols["start_ns"], cols["end_ns"]
    duration = cols.get("duration_ns")
    if duration is None:
        duration = [e - s for s, e in zip(starts, ends, strict=True)]
    per_request = {
        "project_id": project_id,
        "retention_days": retention_days,
        "ingested_at": now,
        "version": version,
    }
    times = {"start_time": starts, "end_time": ends, "duration_ns": duration}
    values = [
        per_request[c] if c in per_request else times[c] if c in times else cols[c] for c in COLUMNS
    ]
    if (fmt or FORMAT) == "Native":
        return _nativeblock.encode(
            [(*spec, v) for spec, v in zip(_NATIVE_COLUMNS, values, strict=True)], n
        )
    block = [
        [v] * n if c in per_request else ns_column(v) if c in _TIME_COLUMNS else v
        for c, v in zip(COLUMNS, values, strict=True)
    ]
    return _dumps(block, default=_bytes_as_json) + b"\n"


_TIME_COLUMNS = frozenset(("start_time", "end_time"))


def _native_columns() -> tuple[tuple[str, str, int], ...]:
    """(name, Native type, encoder kind) in ``COLUMNS`` order. LowCardinality columns are sent
    as String (the engine converts); DateTime64 travels as its raw nanosecond ticks."""
    if _nativeblock is None:
        return ()
    k = _nativeblock
    dt64 = ("DateTime64(9, 'UTC')", k.K_I64)
    arr = ("Array(String)", k.K_ARRAY_STR)
    types: dict[str, tuple[str, int]] = {
        "project_id": ("UInt64", k.K_CONST_U64),
        "start_time": dt64,
        "end_time": dt64,
        "duration_ns": ("Int64", k.K_I64),
        "input": ("String", k.K_JSON),
        "output": ("String", k.K_JSON),
        "attributes": ("String", k.K_JSON),
        "events": ("String", k.K_JSON),
        "result_partial": ("UInt8", k.K_U8),
        "retry_attempt": ("Int64", k.K_I64),
        "constraints": arr,
        "context_required": arr,
        "context_present": arr,
        "state_version": ("Nullable(Int64)", k.K_NULLABLE_I64),
        "invoke_agent": ("UInt8", k.K_U8),
        "tokens_in": ("Nullable(Int64)", k.K_NULLABLE_I64),
        "tokens_out": ("Nullable(Int64)", k.K_NULLABLE_I64),
        "cost_usd": ("Nullable(Float64)", k.K_NULLABLE_F64),
        "retention_days": ("UInt16", k.K_CONST_U16),
        "ingested_at": ("DateTime", k.K_CONST_U32),
        "version": ("UInt64", k.K_CONST_U64),
    }
    return tuple((c, *types.get(c, ("String", k.K_STR))) for c in COLUMNS)


_NATIVE_COLUMNS = _native_columns()


def rows_to_columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The columns of ``validate_spans`` rows (the encoding of the slow path)."""
    cols: dict[str, Any] = {}
    for key in (
        "trace_id",
        "span_id",
        "parent_span_id",
        "session_id",
        "agent",
        "name",
        "kind",
        "status",
        "status_message",
        "result_partial",
        "retry_attempt",
        "retry_reason",
        "constraints",
        "context_required",
        "context_present",
        "state_key",
        "state_version",
        "state_op",
        "invoke_agent",
        "model",
        "provider",
        "tokens_in",
        "tokens_out",
        "cost_usd",
    ):
        cols[key] = [r[key] for r in rows]
    cols["start_ns"] = [r["start_ns"] for r in rows]
    cols["end_ns"] = [r["end_ns"] for r in rows]
    cols["input"] = [json_text_value(r["input"]) for r in rows]
    cols["output"] = [json_text_value(r["output"]) for r in rows]
    cols["attributes"] = [r["attributes"] or {} for r in rows]
    cols["events"] = [r["events"] or [] for r in rows]
    return cols
