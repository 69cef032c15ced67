"""POST /api/v1/spans: every rule of api.md's ingest table and spans.md §1."""

from __future__ import annotations

import gzip
import zlib

import orjson
import pytest
from django.test import Client

from apps.ingest.batcher import get_batcher
from kriyplatform.clickhouse.client import ch_select, set_outage
from tests.factories import BASE_NS, post_spans, span, trace

pytestmark = pytest.mark.django_db


def stored(project_id: int) -> int:
    return ch_select(
        "SELECT count() AS n FROM {db}.spans FINAL WHERE project_id = {project_id:UInt64}",
        project_id=project_id,
    )[0]["n"]


def usage(t) -> dict:
    return t.api(t.read_key).get("/api/v1/usage").json()


def test_valid_spans_are_stored_and_acknowledged(tenant_a) -> None:
    spans = trace(n_children=3)
    resp = post_spans(tenant_a.api(tenant_a.ingest_key), spans)
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 4, "rejected": []}
    assert stored(tenant_a.project.pk) == 4  # acknowledged means stored: no wait needed


def test_gzip_and_deflate_bodies_are_accepted(tenant_a) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    assert post_spans(api, trace(), gzip_body=True).json()["accepted"] == 3
    body = zlib.compress(orjson.dumps({"spans": trace()}))
    resp = api.post(
        "/api/v1/spans", data=body, content_type="application/json", HTTP_CONTENT_ENCODING="deflate"
    )
    assert resp.status_code == 200 and resp.json()["accepted"] == 3


def test_resent_spans_replace_and_are_never_counted_twice(tenant_a) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    spans = trace(n_children=2)
    for _ in range(3):
        assert post_spans(api, spans).status_code == 200
    spans[1]["status"] = "error"
    assert post_spans(api, spans).status_code == 200
    u = usage(tenant_a)
    assert (u["spans"], u["traces"]) == (3, 1)
    detail = tenant_a.api(tenant_a.read_key).get(f"/api/v1/traces/{spans[0]['trace_id']}").json()
    assert {s["span_id"]: s["status"] for s in detail["spans"]}[spans[1]["span_id"]] == "error"
    assert u["month"]["ingested_spans"] == 3  # distinct spans that arrived this month


def test_a_span_sent_twice_in_one_group_commit_is_read_once_with_its_later_copy(tenant_a) -> None:
    """Two requests re-sending the same spans can share one insert (the batcher joins their
    blocks); the engine keeps both copies until a merge, and every read still sees one."""
    from apps.ingest.native import Limits, validate_spans
    from apps.ingest.rows import FORMAT, INSERT_TARGET, encode_columns, rows_to_columns
    from kriyplatform.clickhouse.client import ch_insert

    spans = trace(n_children=2)
    later = [dict(s) for s in spans]
    later[1]["status"] = "error"
    blocks = []
    for version, batch in ((1, spans), (2, later)):
        rows, rejected = validate_spans(batch, Limits())
        assert not rejected
        blocks.append(
            encode_columns(
                rows_to_columns(rows),
                len(rows),
                project_id=tenant_a.project.pk,
                retention_days=30,
                version=version,
            )
        )
    ch_insert(INSERT_TARGET, b"".join(blocks), FORMAT)  # what one flush of two requests does

    u = usage(tenant_a)
    assert (u["spans"], u["traces"]) == (3, 1)
    assert stored(tenant_a.project.pk) == 3
    detail = tenant_a.api(tenant_a.read_key).get(f"/api/v1/traces/{spans[0]['trace_id']}").json()
    assert len(detail["spans"]) == 3
    assert {s["span_id"]: s["status"] for s in detail["spans"]}[spans[1]["span_id"]] == "error"


@pytest.mark.parametrize("fast", [True, False])
def test_token_counts_the_columns_cannot_hold_count_as_not_reported(
    tenant_a, fast, monkeypatch
) -> None:
    import json

    from apps.ingest import services

    if not fast:
        monkeypatch.setattr(services, "decode_native", lambda *a: None)
    spans = trace(n_children=1)
    spans[1]["attributes"] = {
        "gen_ai.usage.input_tokens": 1e300,
        "gen_ai.usage.output_tokens": 2**65,  # beyond Int64 (JSON parsers read it as a double)
    }
    body = json.dumps({"spans": spans})  # orjson refuses to write 2**65
    resp = tenant_a.api(tenant_a.ingest_key).post(
        "/api/v1/spans", data=body, content_type="application/json"
    )
    assert resp.status_code == 200 and resp.json()["accepted"] == 2
    detail = tenant_a.api(tenant_a.read_key).get(f"/api/v1/traces/{spans[0]['trace_id']}").json()
    child = next(s for s in detail["spans"] if s["span_id"] == spans[1]["span_id"])
    assert child["attributes"]["gen_ai.usage.input_tokens"] == 1e300  # kept as sent
    assert child["tokens_in"] is None and child["tokens_out"] is None


@pytest.mark.parametrize("fast", [True, False])
def test_kriy_integers_beyond_64_bits_are_refused_by_name(tenant_a, fast, monkeypatch) -> None:
    from apps.ingest import services

    if not fast:
        monkeypatch.setattr(services, "decode_native", lambda *a: None)
    spans = trace(n_children=2)
    spans[1]["attributes"] = {"kriy.retry.attempt": 2**63}  # JSON parsers keep it an integer
    spans[2]["attributes"] = {
        "kriy.state.key": "k",
        "kriy.state.op": "write",
        "kriy.state.version": 2**64 - 1,
    }
    resp = post_spans(tenant_a.api(tenant_a.ingest_key), spans)
    assert resp.status_code == 200
    body = resp.json()
    assert body["accepted"] == 1
    errors = {r["index"]: r["errors"] for r in body["rejected"]}
    assert errors[1] == [f"attributes.kriy.retry.attempt: must be at most {2**63 - 1}"]
    assert errors[2] == ["attributes.kriy.state.version: must be a 64-bit signed integer"]


def test_mixed_batch_stores_valid_spans_and_names_each_rejected_field(tenant_a) -> None:
    good = trace(n_children=1)
    bad = [
        span(trace_id="XYZ"),
        span(span_id="0000000000000000"),
        span(agent=""),
        span(kind="robot"),
        span(start_time="yesterday"),
        span(start_time=500, end_time=100),
        span(status="fine"),
        span(attributes={"nested": {"a": 1}}),
        span(attributes={"kriy.retry.attempt": "two"}),
        "not an object",
    ]
    resp = post_spans(tenant_a.api(tenant_a.ingest_key), good + bad)
    assert resp.status_code == 200
    body = resp.json()
    assert body["accepted"] == 2
    by_index = {r["index"]: r["errors"] for r in body["rejected"]}
    assert sorted(by_index) == list(range(2, 12))
    expected = [
        "trace_id:",
        "span_id:",
        "agent:",
        "kind:",
        "start_time:",
        "end_time:",
        "status:",
        "attributes.nested:",
        "attributes.kriy.retry.attempt:",
        "span:",
    ]
    for i, prefix in enumerate(expected, start=2):
        assert any(e.startswith(prefix) for e in by_index[i]), (prefix, by_index[i])
    assert stored(tenant_a.project.pk) == 2


def test_only_invalid_spans_answer_400_with_the_same_body_and_store_nothing(tenant_a) -> None:
    resp = post_spans(
        tenant_a.api(tenant_a.ingest_key), [span(name=""), span(end_time="2026-01-01T00:00:00")]
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["accepted"] == 0
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert "end_time: must be RFC 3339 with a UTC offset" in body["rejected"][1]["errors"][0]
    assert stored(tenant_a.project.pk) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1,2]", b'{"spanz": []}', b'{"spans": {"a": 1}}'])
def test_unparsable_or_misshapen_body_is_400_with_error(tenant_a, body: bytes) -> None:
    resp = tenant_a.api(tenant_a.ingest_key).post(
        "/api/v1/spans", data=body, content_type="application/json"
    )
    assert resp.status_code == 400
    assert "error" in resp.json()


def test_rfc3339_offsets_and_integer_nanoseconds_agree(tenant_a) -> None:
    a = span(start_time="2026-01-01T11:00:00.000000001+01:00", end_time=BASE_NS + 5)
    resp = post_spans(tenant_a.api(tenant_a.ingest_key), [a])
    assert resp.status_code == 200
    got = tenant_a.api(tenant_a.read_key).get(f"/api/v1/traces/{a['trace_id']}").json()["spans"][0]
    assert got["start_time"] == "2026-01-01T10:00:00.000000001Z"
    assert got["end_time"] == "2026-01-01T10:00:00.000000005Z"


def test_wrong_content_type_or_encoding_is_415(tenant_a) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    assert (
        api.post(
            "/api/v1/spans", data="spans=1", content_type="application/x-www-form-urlencoded"
        ).status_code
        == 415
    )
    resp = api.post(
        "/api/v1/spans", data=b"{}", content_type="application/json", HTTP_CONTENT_ENCODING="br"
    )
    assert resp.status_code == 415
    assert "Content-Encoding" in resp.json()["error"]


def test_body_over_the_size_limit_is_413(tenant_a, settings) -> None:
    settings.KRIY_INGEST = {**settings.KRIY_INGEST, "MAX_BODY_BYTES": 1000}
    resp = post_spans(tenant_a.api(tenant_a.ingest_key), trace(n_children=20))
    assert resp.status_code == 413


def test_gzip_bomb_is_refused_without_inflating_past_the_limit(tenant_a, settings) -> None:
    settings.KRIY_INGEST = {**settings.KRIY_INGEST, "MAX_DECOMPRESSED_BYTES": 1_000_000}
    bomb = gzip.compress(b'{"spans": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    resp = tenant_a.api(tenant_a.ingest_key).post(
        "/api/v1/spans", data=bomb, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert resp.status_code == 413
    assert "decompressed" in resp.json()["error"]


def test_too_many_spans_in_one_request_is_413(tenant_a, settings) -> None:
    settings.KRIY_INGEST = {**settings.KRIY_INGEST, "MAX_SPANS_PER_REQUEST": 5}
    resp = post_spans(tenant_a.api(tenant_a.ingest_key), [span() for _ in range(6)])
    assert resp.status_code == 413
    assert stored(tenant_a.project.pk) == 0


def test_attribute_limits_reject_the_span(tenant_a, settings) -> None:
    settings.KRIY_INGEST = {
        **settings.KRIY_INGEST,
        "MAX_ATTRIBUTES_PER_SPAN": 3,
        "MAX_ATTRIBUTE_BYTES": 10,
        "MAX_IO_BYTES": 20,
    }
    spans = [
        span(attributes={f"k{i}": i for i in range(4)}),
        span(attributes={"big": "x" * 11}),
        span(input={"q": "y" * 30}),
        span(),
    ]
    body = post_spans(tenant_a.api(tenant_a.ingest_key), spans).json()
    assert body["accepted"] == 1
    errors = {r["index"]: r["errors"][0] for r in body["rejected"]}
    assert "at most 3 attributes" in errors[0]
    assert "attributes.big: value over 10 bytes" in errors[1]
    assert "input: over 20 bytes" in errors[2]


def test_rate_limit_answers_429_with_retry_after(tenant_a, settings) -> None:
    settings.KRIY_RATE_LIMIT_SPANS_PER_SEC = 1
    settings.KRIY_RATE_LIMIT_BURST = 5
    from apps.ingest.ratelimit import reset_limiter

    reset_limiter()
    api = tenant_a.api(tenant_a.ingest_key)
    assert post_spans(api, [span() for _ in range(5)]).status_code == 200
    resp = post_spans(api, [span() for _ in range(3)])
    assert resp.status_code == 429
    assert int(resp["Retry-After"]) >= 1
    assert stored(tenant_a.project.pk) == 5


def test_monthly_quota_answers_429_until_the_month_renews(tenant_a) -> None:
    tenant_a.org.monthly_span_quota = 4
    tenant_a.org.save()
    api = tenant_a.api(tenant_a.ingest_key)
    assert post_spans(api, trace(n_children=2)).status_code == 200
    resp = post_spans(api, trace(n_children=2))
    assert resp.status_code == 429
    assert "quota" in resp.json()["error"] and int(resp["Retry-After"]) > 0


def test_span_store_outage_is_503_with_retry_after_and_nothing_stored_then_recovers(
    tenant_a,
) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    spans = trace()
    set_outage("chDB down for the test")
    try:
        resp = post_spans(api, spans)
    finally:
        set_outage(None)
    assert resp.status_code == 503
    assert resp["Retry-After"]
    assert stored(tenant_a.project.pk) == 0
    assert post_spans(api, spans).status_code == 200  # recovery without a restart
    assert stored(tenant_a.project.pk) == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_are_batched_and_each_acknowledged_after_its_flush(tenant_a) -> None:
    import threading

    from django.db import connection

    api_key = tenant_a.ingest_key
    batcher = get_batcher()
    before = batcher.flushes
    results: list[int] = []

    def send() -> None:
        c = Client(HTTP_AUTHORIZATION=f"Bearer {api_key}")
        for _ in range(5):
            results.append(post_spans(c, trace(n_children=9)).status_code)
        connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 20
    assert stored(tenant_a.project.pk) == 200
    assert batcher.flushes - before <= 20


def test_another_organizations_key_reads_nothing_of_ours(tenant_a, tenant_b) -> None:
    spans = trace(session_id="sess-1")
    assert post_spans(tenant_a.api(tenant_a.ingest_key), spans).status_code == 200
    other = tenant_b.api(tenant_b.read_key)
    assert other.get(f"/api/v1/traces/{spans[0]['trace_id']}").status_code == 404
    assert other.get("/api/v1/sessions/sess-1").status_code == 404
    assert other.get("/api/v1/traces").json()["traces"] == []
    assert other.get("/api/v1/usage").json()["spans"] == 0


def test_a_span_repeated_within_one_request_is_replaced_by_its_later_copy(tenant_a) -> None:
    first = span(name="draft")
    again = {**first, "name": "draft v2", "status": "error"}
    resp = post_spans(tenant_a.api(), [first, span(), again])
    assert resp.status_code == 200
    assert resp.json() == {"accepted": 3, "rejected": []}
    assert stored(tenant_a.project.pk) == 2
    got = tenant_a.api().get(f"/api/v1/traces/{first['trace_id']}").json()["spans"][0]
    assert (got["name"], got["status"]) == ("draft v2", "error")
