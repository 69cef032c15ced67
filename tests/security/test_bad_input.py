"""Bad input never answers 5xx and never half-stores: property-based bodies against both ingest
endpoints, the hostile classics, and every list's limits."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kriyplatform.clickhouse.client import ch_select
from tests.factories import BASE_NS, post_spans, span, trace

pytestmark = pytest.mark.django_db

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values,
    st.sampled_from(
        [
            "",
            "0" * 32,
            "0" * 16,
            "z" * 32,
            "2026-13-45T99:00:00Z",
            "2026-01-01T10:00:00Z",
            -1,
            2**64,
            1.5,
        ]
    ),
)
FIELDS = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "agent",
    "name",
    "kind",
    "start_time",
    "end_time",
    "status",
    "status_message",
    "input",
    "output",
    "attributes",
    "events",
]


def stored(project_id: int) -> int:
    return ch_select(
        "SELECT count() AS n FROM {db}.spans FINAL WHERE project_id = {project_id:UInt64}",
        project_id=project_id,
    )[0]["n"]


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(st.tuples(st.sampled_from(FIELDS), field_values), max_size=4),
    n_valid=st.integers(0, 3),
)
def test_mutated_spans_never_5xx_and_only_valid_ones_are_stored(
    tenant_a, mutations, n_valid
) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    bad = span()
    for field, value in mutations:
        bad[field] = value
    before = stored(tenant_a.project.pk)
    good = [span() for _ in range(n_valid)]
    payload = json.dumps({"spans": [*good, bad]}).encode()  # stdlib: big ints and floats as sent
    resp = api.post("/api/v1/spans", data=payload, content_type="application/json")
    assert resp.status_code in (200, 400, 413, 429), resp.content
    body = resp.json()
    if "error" in body:  # the whole body was refused (e.g. an integer beyond 64 bits)
        assert stored(tenant_a.project.pk) == before
        return
    assert body["accepted"] + len(body["rejected"]) == n_valid + 1
    for r in body["rejected"]:
        assert all(":" in e for e in r["errors"])  # every error names its field
    assert stored(tenant_a.project.pk) == before + body["accepted"]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_arbitrary_bodies_never_5xx(tenant_a, body) -> None:
    api = tenant_a.api(tenant_a.ingest_key)
    for path, ctype in (
        ("/api/v1/spans", "application/json"),
        ("/v1/traces", "application/json"),
        ("/v1/traces", "application/x-protobuf"),
    ):
        resp = api.post(path, data=body, content_type=ctype)
        assert resp.status_code < 500, (path, ctype, resp.status_code, resp.content[:200])


@pytest.mark.parametrize(
    "body",
    [
        b'{"spans": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",  # deep nesting
        b'{"spans": [{"trace_id": "\xff\xfe"}]}',  # invalid UTF-8
        orjson.dumps({"spans": [span(name="a\x00b"), span(agent="\x00")]}),  # NUL bytes in names
        orjson.dumps(
            {"spans": [span(attributes={f"k{i}": i for i in range(5000)})]}
        ),  # thousands of attributes
        orjson.dumps({"spans": [span(input="x" * 3_000_000)]}),  # a huge string
        json.dumps(
            {
                "spans": [
                    span(start_time=-(10**15)),
                    span(start_time=2**63, end_time=2**63),
                    span(start_time="0001-01-01T00:00:00Z"),
                    span(start_time="9999-12-31T23:59:59Z"),
                ]
            }
        ).encode(),
        orjson.dumps(
            {"spans": [span(trace_id="A" * 32), span(span_id="abc"), span(parent_span_id="xyz")]}
        ),
    ],
)
def test_hostile_bodies_are_4xx_with_reasons(tenant_a, body) -> None:
    resp = tenant_a.api(tenant_a.ingest_key).post(
        "/api/v1/spans", data=body, content_type="application/json"
    )
    assert 400 <= resp.status_code < 500
    assert resp.json().get("error") or resp.json().get("rejected")


def test_unicode_round_trips(tenant_a) -> None:
    s = span(
        name="résumé ✓",
        status_message="tab\there",
        input={"q": "naïve \u2028 line"},
        attributes={"emoji": "🚀"},
    )
    assert post_spans(tenant_a.api(), [s]).status_code == 200
    got = tenant_a.api().get(f"/api/v1/traces/{s['trace_id']}").json()["spans"][0]
    assert (got["name"], got["status_message"], got["input"], got["attributes"]["emoji"]) == (
        "résumé ✓",
        "tab\there",
        {"q": "naïve \u2028 line"},
        "🚀",
    )


def test_gzip_garbage_is_400(tenant_a) -> None:
    resp = tenant_a.api().post(
        "/api/v1/spans",
        data=b"\x1f\x8b\x08not really",
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert resp.status_code == 400


def test_truncated_gzip_is_400(tenant_a) -> None:
    body = gzip.compress(orjson.dumps({"spans": trace()}))[:-10]
    resp = tenant_a.api().post(
        "/api/v1/spans", data=body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert resp.status_code == 400


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/traces", {"limit": "0"}),
        ("/api/v1/traces", {"limit": "100000"}),
        ("/api/v1/traces", {"limit": "abc"}),
        ("/api/v1/traces", {"outcome": "weird"}),
        ("/api/v1/traces", {"since": "yesterday"}),
        ("/api/v1/traces", {"cursor": "!!!"}),
        ("/api/v1/traces", {"cursor": "WzEsMl0"}),
        ("/api/v1/traces", {"agent": "x" * 1000}),
        ("/api/v1/issues", {"limit": "5000"}),
        ("/api/v1/issues", {"status": "nope"}),
        ("/api/v1/agents/support/weekly", {"weeks": "1000"}),
    ],
)
def test_list_limits_and_filters_are_checked(tenant_a, path, params) -> None:
    resp = tenant_a.api().get(path, params)
    assert resp.status_code == 400
    name = next(iter(params))
    assert name in resp.json()["error"]


def test_ids_of_the_wrong_shape_are_404_not_500(tenant_a) -> None:
    api = tenant_a.api()
    for path in (
        "/api/v1/traces/not-a-trace",
        "/api/v1/traces/" + "f" * 32,
        "/api/v1/sessions/" + "s" * 300,
        "/api/v1/issues/999999999",
    ):
        assert api.get(path).status_code == 404, path
    assert BASE_NS  # the factory's epoch is in range
