"""The ingest insert format (apps.ingest.rows): every column, exact times, and stored rows that are
the same whichever path built them — fast, detailed, or the row-per-line JSONEachRow encoding
ingest used before."""

from __future__ import annotations

import orjson
import pytest

from apps.ingest import services
from apps.ingest.native import Limits, validate_spans
from apps.ingest.rows import (
    COLUMNS,
    FORMAT,
    INSERT_TARGET,
    encode_columns,
    insert_target,
    rows_to_columns,
)
from apps.spans.sql import SPAN_COLUMNS
from kriyplatform.clickhouse.client import ch_insert, ch_raw
from tests.factories import BASE_NS, post_spans, span, trace

pytestmark = pytest.mark.django_db


def test_the_insert_names_every_column_of_the_spans_table_in_order() -> None:
    schema = [line.split()[0] for line in SPAN_COLUMNS.strip().splitlines()]
    assert list(COLUMNS) == schema


def _stored(project_id: int) -> list[list]:
    cols = ", ".join(c for c in COLUMNS if c not in ("project_id", "ingested_at", "version"))
    raw = ch_raw(
        f"SELECT {cols}, toUnixTimestamp64Nano(start_time) AS s, toUnixTimestamp64Nano(end_time) AS e "
        "FROM {db}.spans WHERE project_id = {project_id:UInt64} ORDER BY trace_id, span_id",
        project_id=project_id,
        fmt="JSONCompact",
    )
    return orjson.loads(raw)["data"]


def _varied_spans() -> list[dict]:
    tid = "ef" * 16
    spans = [
        span(
            trace_id=tid,
            span_id="1" * 16,
            session_id="sess ü",
            input={"q": 'é 😀 "quoted" \\ \n \u2028', "n": [1, 2.5, -0.0, 1e300, None, True]},
            output="plain string",
            attributes={
                "kriy.constraints": ["budget<=500"],
                "kriy.state.key": "k",
                "kriy.state.version": 3,
                "kriy.state.op": "read",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 10,
                "llm.cost.total": 0.25,
                "f": 1.5,
                "l": ["a", 1, True, 2.5],
            },
            events=[
                {"name": "ev", "time": "2026-01-01T10:00:00.000000001Z", "attributes": {"a": "b"}}
            ],
        ),
        span(trace_id=tid, span_id="2" * 16, parent_span_id="1" * 16, input=5, output=False),
        span(
            trace_id=tid,
            span_id="3" * 16,
            parent_span_id="1" * 16,
            agent="other",
            kind="agent",
            _invoke_agent=True,
            input=[[], {}],
            attributes={
                "kriy.result.partial": True,
                "kriy.retry.attempt": 1,
                "kriy.retry.reason": "r",
            },
        ),
        span(start_time=0, end_time=0, status="error", status_message="boom"),
        span(start_time="2026-01-01T10:00:00.000000001+02:00", end_time=2**63 - 1),
        *trace(n_children=3, session_id="s-2"),
    ]
    return spans


def test_fast_detailed_and_legacy_encodings_store_the_same_rows(
    tenant_a, tenant_b, monkeypatch
) -> None:
    spans = _varied_spans()
    body = orjson.dumps({"spans": spans})
    # fast path, through the endpoint
    assert services.decode_native(body, Limits.from_settings(), 10_000) is not None
    assert post_spans(tenant_a.api(tenant_a.ingest_key), spans).json()["accepted"] == len(spans)
    # detailed path, through the endpoint
    monkeypatch.setattr(services, "decode_native", lambda *a: None)
    assert post_spans(tenant_b.api(tenant_b.ingest_key), spans).json()["accepted"] == len(spans)
    # the same rows stored directly (the seeding tools' path: no endpoint, no batcher)
    rows, rejected = validate_spans(spans, Limits.from_settings())
    assert not rejected
    legacy_project = tenant_b.project.pk + 10_000
    services.rows_insert(rows, project_id=legacy_project, retention_days=30)
    fast, slow, legacy = (
        _stored(tenant_a.project.pk),
        _stored(tenant_b.project.pk),
        _stored(legacy_project),
    )
    assert len(fast) == len(spans)
    assert fast == slow
    assert [r[:-3] + r[-2:] for r in fast] == [r[:-3] + r[-2:] for r in legacy]  # all but retention
    by_id = {r[1]: r for r in fast}
    assert by_id["1" * 16][12] == orjson.dumps(spans[0]["input"]).decode()
    assert by_id["1" * 16][13] == '"plain string"'
    assert by_id["2" * 16][12:14] == ["5", "false"]
    assert by_id["3" * 16][6] == "handoff"


def test_times_travel_exactly_at_both_ends_of_the_range(tenant_a) -> None:
    values = [0, 1, 999_999_999, 1_000_000_000, BASE_NS + 123_456_789, 2**63 - 1]
    spans = [span() for _ in values]
    for s, v in zip(spans, values, strict=True):
        s["start_time"] = s["end_time"] = v
    rows, _ = validate_spans(spans, Limits.from_settings())
    data = encode_columns(
        rows_to_columns(rows),
        len(rows),
        project_id=tenant_a.project.pk,
        retention_days=30,
        version=1,
    )
    ch_insert(INSERT_TARGET, data, FORMAT)
    stored = _stored(tenant_a.project.pk)
    assert sorted(int(r[-2]) for r in stored) == sorted(int(r[-1]) for r in stored) == values


def test_deeply_nested_input_is_stored_byte_for_byte(tenant_a) -> None:
    value: object = "leaf"
    for i in range(250):
        value = [value] if i % 2 else {"k": value}
    spans = [span(input=value)]
    assert post_spans(tenant_a.api(tenant_a.ingest_key), spans).json()["accepted"] == 1
    assert _stored(tenant_a.project.pk)[0][12] == orjson.dumps(value).decode()


def test_native_and_json_encodings_store_the_same_rows() -> None:
    """The compiled Native encoder (the default where it is built) and the JSON fallback."""
    from apps.ingest import rows as rows_module
    from apps.ingest.fastnative import decode_native

    assert rows_module.FORMAT == "Native", "the compiled encoder is not built"
    spans = _varied_spans()
    deep: object = "leaf"
    for i in range(200):
        deep = [deep] if i % 2 else {"k": deep}
    spans.append(span(input=deep, output={"ok": [1, 2.5, None]}))
    rows, rejected = validate_spans(spans, Limits.from_settings())
    assert not rejected
    fast = decode_native(orjson.dumps({"spans": spans}), Limits.from_settings(), 10_000)
    assert fast is not None
    for k, (cols, n) in enumerate(((rows_to_columns(rows), len(rows)), fast)):
        projects = {"Native": 20_000 + k, rows_module.JSON_FORMAT: 30_000 + k}
        for fmt, project_id in projects.items():
            data = encode_columns(
                cols, n, project_id=project_id, retention_days=30, version=1, fmt=fmt
            )
            ch_insert(insert_target(fmt), data, fmt)
        native, json_rows = (_stored(p) for p in projects.values())
        assert len(native) == len(spans)
        assert native == json_rows
