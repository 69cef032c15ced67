"""Every span-store query is scoped to one project, with values bound as parameters.

Tenant queries go through ``ch_select``/``ch_raw``, which refuse SQL without the project filter.
The few cross-tenant statements (DDL, migrations, the judge's and rollup's scans for new work,
the health check) go through ``ch_system`` and are listed here by call site.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from apps.detection.services import judge_pending
from apps.metrics.services import rollup_pending
from kriyplatform.clickhouse import client
from kriyplatform.clickhouse.client import TENANT_FILTER, ch_raw, ch_select
from tests.factories import post_spans, span, trace_id

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_SYSTEM_CALLERS = {
    ("kriyplatform/clickhouse/migrator.py", "_ensure_ledger"),
    ("kriyplatform/clickhouse/migrator.py", "applied"),
    ("kriyplatform/clickhouse/migrator.py", "migrate"),
    ("apps/detection/services.py", "judge_pending"),  # which projects have new spans
    ("apps/metrics/services.py", "rollup_pending"),  # which project-days were re-judged
    ("apps/web/views.py", "healthz"),  # SELECT 1
}


def _system_call_sites() -> set[tuple[str, str]]:
    sites = set()
    for path in [*ROOT.glob("apps/**/*.py"), *ROOT.glob("kriyplatform/**/*.py")]:
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ch_system":
                    sites.add((str(path.relative_to(ROOT)), func.name))
    return sites


def test_only_the_listed_call_sites_run_cross_tenant_statements() -> None:
    assert _system_call_sites() == ALLOWED_SYSTEM_CALLERS


def test_tenant_queries_without_the_project_filter_or_id_are_refused() -> None:
    with pytest.raises(ValueError, match="without the project filter"):
        ch_select("SELECT count() FROM {db}.spans", project_id=1)
    with pytest.raises(TypeError):
        ch_raw("SELECT 1 FROM {db}.spans WHERE " + TENANT_FILTER, project_id="1")  # type: ignore[arg-type]


def test_values_are_bound_as_parameters_not_formatted(db) -> None:
    evil = "x' OR 1=1 --"
    rows = ch_select(
        "SELECT count() AS n FROM {db}.spans WHERE project_id = {project_id:UInt64} AND trace_id = {t:String}",
        project_id=1,
        params={"t": evil},
    )
    assert rows == [{"n": 0}]


@pytest.mark.django_db
def test_every_query_of_a_full_flow_carries_the_tenant_filter(tenant_a, monkeypatch) -> None:
    seen: list[str] = []
    transport = client.transport()
    original = transport.query

    def recording(sql, params, fmt):  # observe, then run the real query
        seen.append(sql)
        return original(sql, params, fmt)

    monkeypatch.setattr(transport, "query", recording)
    tid = trace_id()
    root = span(trace_id=tid, session_id="s-1")
    post_spans(
        tenant_a.api(),
        [
            root,
            span(
                trace_id=tid,
                parent_span_id=root["span_id"],
                name="x",
                attributes={"kriy.result.partial": True},
            ),
        ],
    )
    judge_pending(settle_seconds=0)
    rollup_pending()
    api = tenant_a.api()
    for path in (
        "/api/v1/traces",
        f"/api/v1/traces/{tid}",
        "/api/v1/sessions/s-1",
        "/api/v1/usage",
        "/api/v1/issues",
        "/api/v1/summary",
        "/api/v1/agents/support/weekly",
    ):
        assert api.get(path).status_code == 200, path
    for path in (
        "/",
        "/traces/",
        f"/traces/{tid}/",
        "/issues/",
        "/sessions/",
        "/sessions/s-1/",
        "/report/",
        "/agents/support/",
    ):
        assert tenant_a.client.get(tenant_a.base + path).status_code in (200, 404), path
    assert seen
    system = [
        re.sub(r"\s+", " ", s)
        for s in seen
        if TENANT_FILTER.replace("{project_id:UInt64}", "") not in s
    ]
    cross_tenant_allowed = (
        "FROM kriy.spans WHERE version >",
        "FROM kriy.trace_judgements WHERE judged_version >",
        "SELECT 1 AS ok",
    )
    assert all(
        any(
            a.replace("kriy.", "") in s.replace(f"{client.db()}.", "") for a in cross_tenant_allowed
        )
        for s in system
    ), system


@pytest.mark.parametrize(
    "value",
    [
        "a\tb",
        "line\nbreak",
        "back\\slash",
        "quote'd",
        "nul\x00byte",
        "\\N",
        "✓ unicode",
        "\r\b\f",
        "[1,2]",
    ],
)
def test_any_string_round_trips_as_a_bound_parameter(value: str) -> None:
    rows = ch_select(
        "SELECT {s:String} AS s, {a:Array(String)} AS a FROM (SELECT 1 AS project_id) WHERE project_id = {project_id:UInt64}",
        project_id=1,
        params={"s": value, "a": [value, "x"]},
    )
    assert rows == [{"s": value, "a": [value, "x"]}]
