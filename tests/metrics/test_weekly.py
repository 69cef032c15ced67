"""The improvement loop through ingest, the judge and the rollups (spans.md §4)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from apps.detection.services import judge_pending
from apps.metrics.services import rollup_pending
from tests.factories import post_spans, span, trace_id

pytestmark = pytest.mark.django_db
WEEK_NS = 7 * 86_400 * 10**9
MON = int(datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp() * 1e9)  # a Monday


def make(
    agent: str, week: int, outcome: str, session: str | None = None, n_children: int = 1
) -> list[dict]:
    tid = trace_id()
    t0 = MON + week * WEEK_NS
    root = span(
        trace_id=tid,
        agent=agent,
        session_id=session,
        start_time=t0,
        end_time=t0 + 10**9,
        status="error" if outcome == "failed" else "ok",
    )
    out = [root]
    for i in range(n_children):
        attrs = {"kriy.result.partial": True} if outcome == "defective" and i == 0 else {}
        out.append(
            span(
                trace_id=tid,
                agent=agent,
                parent_span_id=root["span_id"],
                name=f"s{i}",
                kind="tool",
                start_time=t0 + i * 1000 + 10,
                end_time=t0 + i * 1000 + 20,
                attributes=attrs,
            )
        )
    if outcome == "defective":
        out.append(
            span(
                trace_id=tid,
                agent=agent,
                parent_span_id=root["span_id"],
                name="after",
                start_time=t0 + 10**8,
                end_time=t0 + 2 * 10**8,
            )
        )
    return out


def test_weekly_api_matches_the_definitions(tenant_a) -> None:
    spans = []
    # week 0: 4 traces, 1 failed, 1 defective → issue rate 0.5
    spans += (
        make("support", 0, "failed", "a")
        + make("support", 0, "defective", "a")
        + make("support", 0, "clean", "b")
        + make("support", 0, "clean")
    )
    # week 1: 5 traces, 1 defective → 0.2; improvement (0.5-0.2)/0.5 = 0.6
    spans += make("support", 1, "defective", "c")
    for _ in range(4):
        spans += make("support", 1, "clean", "c")
    # week 2: nothing for support; planner has one clean trace
    spans += make("planner", 2, "clean", "p")
    api = tenant_a.api()
    assert post_spans(api, spans).status_code == 200
    judge_pending(settle_seconds=0)
    rollup_pending()
    weeks = api.get("/api/v1/agents/support/weekly", {"weeks": 3, "until": "2026-03-16"}).json()[
        "weeks"
    ]
    core = [
        {
            k: w[k]
            for k in (
                "week_start",
                "traces",
                "sessions",
                "failed",
                "defective",
                "issue_rate",
                "silent_defect_rate",
                "improvement",
            )
        }
        for w in weeks
    ]
    assert core == [
        {
            "week_start": "2026-03-02",
            "traces": 4,
            "sessions": 2,
            "failed": 1,
            "defective": 1,
            "issue_rate": 0.5,
            "silent_defect_rate": 0.25,
            "improvement": None,
        },
        {
            "week_start": "2026-03-09",
            "traces": 5,
            "sessions": 1,
            "failed": 0,
            "defective": 1,
            "issue_rate": 0.2,
            "silent_defect_rate": 0.2,
            "improvement": pytest.approx(0.6),
        },
        {
            "week_start": "2026-03-16",
            "traces": 0,
            "sessions": 0,
            "failed": 0,
            "defective": 0,
            "issue_rate": None,
            "silent_defect_rate": None,
            "improvement": None,
        },
    ]
    assert (
        weeks[0]["spans"] == 2 + 3 + 2 + 2
    )  # failed 2, defective 3 (root, partial, after), clean 2 + 2
    summary = api.get("/api/v1/summary", {"until": "2026-03-16", "weeks": 4}).json()["agents"]
    assert [a["agent"] for a in summary] == ["planner", "support"]


def test_rollups_are_idempotent_and_follow_rejudging(tenant_a) -> None:
    api = tenant_a.api()
    defective = make("support", 0, "defective")
    post_spans(api, defective + make("support", 0, "clean"))
    judge_pending(settle_seconds=0)
    rollup_pending()
    first = api.get("/api/v1/agents/support/weekly", {"weeks": 1, "until": "2026-03-02"}).json()
    from apps.metrics.models import RollupWatermark

    RollupWatermark.objects.update(version=0)
    rollup_pending()
    assert (
        api.get("/api/v1/agents/support/weekly", {"weeks": 1, "until": "2026-03-02"}).json()
        == first
    )
    assert first["weeks"][0]["defective"] == 1
    # a late complete re-fetch: the trace becomes clean, the week follows
    root = defective[0]
    post_spans(
        api,
        [
            span(
                trace_id=root["trace_id"],
                agent="support",
                parent_span_id=root["span_id"],
                name="s0",
                kind="tool",
                start_time=root["start_time"] + 50,
                end_time=root["start_time"] + 60,
            )
        ],
    )
    judge_pending(settle_seconds=0)
    rollup_pending()
    week = api.get("/api/v1/agents/support/weekly", {"weeks": 1, "until": "2026-03-02"}).json()[
        "weeks"
    ][0]
    assert (week["traces"], week["defective"], week["issue_rate"]) == (2, 0, 0.0)


def test_weekly_api_validates_parameters_and_scopes(tenant_a, tenant_b) -> None:
    api = tenant_a.api()
    assert api.get("/api/v1/agents/support/weekly", {"weeks": 0}).status_code == 400
    assert api.get("/api/v1/agents/support/weekly", {"until": "soon"}).status_code == 400
    post_spans(api, make("support", 0, "clean"))
    judge_pending(settle_seconds=0)
    rollup_pending()
    other = (
        tenant_b.api()
        .get("/api/v1/agents/support/weekly", {"weeks": 1, "until": "2026-03-02"})
        .json()
    )
    assert other["weeks"][0]["traces"] == 0
    assert date.fromisoformat(other["weeks"][0]["week_start"]).weekday() == 0
