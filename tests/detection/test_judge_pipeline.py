"""Ingest → judge → read API and issues, on PostgreSQL and chDB."""

from __future__ import annotations

import pytest

from apps.detection.services import judge_pending
from apps.issues.models import Issue, IssueEvent
from tests.factories import post_spans, span, trace_id

pytestmark = pytest.mark.django_db


def judge() -> None:
    judge_pending(settle_seconds=0)


def partial_trace(tid: str | None = None, session_id: str | None = None, agent: str = "support"):
    tid = tid or trace_id()
    root = span(
        trace_id=tid,
        agent=agent,
        name="handle_ticket",
        session_id=session_id,
        start_time=0,
        end_time=1000,
    )
    lookup = span(
        trace_id=tid,
        agent=agent,
        parent_span_id=root["span_id"],
        name="crm.lookup",
        kind="tool",
        start_time=10,
        end_time=20,
        attributes={"kriy.result.partial": True},
    )
    draft = span(
        trace_id=tid,
        agent=agent,
        parent_span_id=root["span_id"],
        name="draft",
        kind="llm",
        start_time=30,
        end_time=40,
    )
    return [root, lookup, draft]


def test_judged_trace_has_outcome_findings_with_messages_and_an_issue(tenant_a) -> None:
    spans = partial_trace()
    api = tenant_a.api()
    assert post_spans(api, spans).status_code == 200
    before = api.get(f"/api/v1/traces/{spans[0]['trace_id']}").json()
    assert before["outcome"] is None and before["findings"] == []
    judge()
    detail = api.get(f"/api/v1/traces/{spans[0]['trace_id']}").json()
    assert detail["outcome"] == "defective"
    assert detail["findings"] == [
        {
            "span_id": spans[1]["span_id"],
            "type": "partial_result_used",
            "message": "`crm.lookup` returned a partial result and 1 later step(s) used it",
        }
    ]
    listed = api.get("/api/v1/traces?outcome=defective").json()["traces"]
    assert [t["trace_id"] for t in listed] == [spans[0]["trace_id"]]
    assert listed[0]["finding_count"] == 1
    issues = api.get("/api/v1/issues").json()["issues"]
    assert [(i["agent"], i["type"], i["span_name"], i["count"], i["status"]) for i in issues] == [
        ("support", "partial_result_used", "crm.lookup", 1, "open")
    ]


def test_judging_twice_changes_nothing(tenant_a) -> None:
    api = tenant_a.api()
    post_spans(api, partial_trace() + partial_trace())
    judge()
    first = (api.get("/api/v1/traces").json(), api.get("/api/v1/issues").json())
    from apps.detection.models import JudgeWatermark

    JudgeWatermark.objects.update(version=0)  # force a full re-judge
    judge()
    assert (api.get("/api/v1/traces").json(), api.get("/api/v1/issues").json()) == first
    assert IssueEvent.objects.filter(kind="new").count() == 1


def test_trace_without_root_is_not_judged_until_the_root_arrives(tenant_a) -> None:
    spans = partial_trace()
    api = tenant_a.api()
    post_spans(api, spans[1:])
    judge()
    assert api.get("/api/v1/traces").json()["traces"] == []
    post_spans(api, spans[:1])
    judge()
    assert api.get(f"/api/v1/traces/{spans[0]['trace_id']}").json()["outcome"] == "defective"


def test_late_complete_refetch_clears_the_finding_and_zeroes_the_issue(tenant_a) -> None:
    spans = partial_trace()
    api = tenant_a.api()
    post_spans(api, spans)
    judge()
    refetch = span(
        trace_id=spans[0]["trace_id"],
        agent="support",
        parent_span_id=spans[0]["span_id"],
        name="crm.lookup",
        kind="tool",
        start_time=25,
        end_time=28,
    )
    post_spans(api, [refetch])
    judge()
    assert api.get(f"/api/v1/traces/{spans[0]['trace_id']}").json()["outcome"] == "clean"
    assert Issue.objects.get(project=tenant_a.project).count == 0


def test_late_write_in_another_trace_makes_a_session_read_stale(tenant_a) -> None:
    api = tenant_a.api()
    reader = trace_id()
    r_root = span(trace_id=reader, session_id="s-1", start_time=100, end_time=200)
    read = span(
        trace_id=reader,
        parent_span_id=r_root["span_id"],
        name="account.read",
        kind="tool",
        start_time=110,
        end_time=120,
        attributes={
            "kriy.state.key": "account:42",
            "kriy.state.op": "read",
            "kriy.state.version": 1,
        },
    )
    post_spans(api, [r_root, read])
    judge()
    assert api.get(f"/api/v1/traces/{reader}").json()["outcome"] == "clean"
    writer = trace_id()
    w_root = span(trace_id=writer, session_id="s-1", start_time=0, end_time=50)
    write = span(
        trace_id=writer,
        parent_span_id=w_root["span_id"],
        name="account.update",
        kind="tool",
        start_time=10,
        end_time=20,
        attributes={
            "kriy.state.key": "account:42",
            "kriy.state.op": "write",
            "kriy.state.version": 2,
        },
    )
    post_spans(api, [w_root, write])
    judge()
    detail = api.get(f"/api/v1/traces/{reader}").json()
    assert detail["outcome"] == "defective"
    assert [(f["span_id"], f["type"]) for f in detail["findings"]] == [
        (read["span_id"], "stale_state")
    ]
    session = api.get("/api/v1/sessions/s-1").json()
    assert session["outcome"] == "defective"
    assert [t["trace_id"] for t in session["traces"]] == [writer, reader]


def test_resolved_issue_regresses_on_a_newer_finding(tenant_a) -> None:
    api = tenant_a.api()
    post_spans(api, partial_trace())
    judge()
    issue = Issue.objects.get(project=tenant_a.project)
    resp = api.post(
        f"/api/v1/issues/{issue.pk}/actions", {"action": "resolve"}, content_type="application/json"
    )
    assert resp.status_code == 200 and resp.json()["status"] == "resolved"
    later = partial_trace()
    for s in later:  # a day after the resolution
        s["start_time"] += 86_400 * 10**9 * 400
        s["end_time"] += 86_400 * 10**9 * 400
    post_spans(api, later)
    judge()
    issue.refresh_from_db()
    assert (issue.status, issue.count) == ("regressed", 2)
    assert list(issue.events.values_list("kind", flat=True).order_by("at", "id")) == [
        "new",
        "resolved",
        "regressed",
    ]


def test_contracts_put_replaces_and_rejudges_the_changed_agents(
    tenant_a, django_capture_on_commit_callbacks, settings
) -> None:
    # the factory's traces happened on 2026-01-01, long before the re-judge window, but they
    # arrived just now: a contract set after a backfill still applies to it
    settings.KRIY_CONTRACT_REJUDGE_DAYS = 14
    api = tenant_a.api()
    spans = partial_trace(agent="planner")
    post_spans(api, spans)
    judge()
    with django_capture_on_commit_callbacks(execute=True):
        resp = api.put(
            "/api/v1/contracts",
            {"planner": {"required_steps": ["verify"], "latency_slo_ms": 500}},
            content_type="application/json",
        )
    assert resp.status_code == 200
    assert api.get("/api/v1/contracts").json() == {
        "planner": {"required_steps": ["verify"], "latency_slo_ms": 500}
    }
    types = sorted(
        f["type"] for f in api.get(f"/api/v1/traces/{spans[0]['trace_id']}").json()["findings"]
    )
    assert types == ["latency_slo_breach", "partial_result_used", "required_step_skipped"]
    with django_capture_on_commit_callbacks(execute=True):
        api.put("/api/v1/contracts", {}, content_type="application/json")
    types = sorted(
        f["type"] for f in api.get(f"/api/v1/traces/{spans[0]['trace_id']}").json()["findings"]
    )
    assert types == ["partial_result_used"]


@pytest.mark.parametrize(
    "doc",
    [
        {"planner": {"required_steps": "verify"}},
        {"planner": {"latency_slo_ms": -1}},
        {"planner": {"slo": 5}},
        ["planner"],
    ],
)
def test_bad_contracts_are_400_naming_the_field(tenant_a, doc) -> None:
    resp = tenant_a.api().put("/api/v1/contracts", doc, content_type="application/json")
    assert resp.status_code == 400
    assert "contracts" in resp.json()["error"]


def test_contracts_need_the_admin_scope(tenant_a) -> None:
    assert tenant_a.api(tenant_a.read_key).get("/api/v1/contracts").status_code == 403
    assert tenant_a.api(tenant_a.admin_key).get("/api/v1/contracts").status_code == 200


def test_other_tenant_sees_no_judgements_issues_or_contracts(tenant_a, tenant_b) -> None:
    post_spans(tenant_a.api(), partial_trace(session_id="s-x"))
    judge()
    issue = Issue.objects.get(project=tenant_a.project)
    other = tenant_b.api()
    assert other.get("/api/v1/issues").json()["issues"] == []
    assert other.get(f"/api/v1/issues/{issue.pk}").status_code == 404
    assert (
        other.post(
            f"/api/v1/issues/{issue.pk}/actions",
            {"action": "resolve"},
            content_type="application/json",
        ).status_code
        == 404
    )
    assert other.get("/api/v1/traces?outcome=defective").json()["traces"] == []
    assert other.get("/api/v1/sessions/s-x").status_code == 404


def test_embedded_judge_yields_to_an_ingest_burst_for_a_bounded_time(tenant_a, settings) -> None:
    from apps.detection import tasks

    settings.KRIY_DETECT_SETTLE_SECONDS = 0
    settings.KRIY_JUDGE_DEFER_ABOVE = 0.1  # spans/s: any ingest counts as a burst here
    settings.KRIY_JUDGE_MAX_DEFER_SECONDS = 3600
    tasks._deferring_since = None
    spans = partial_trace()
    post_spans(tenant_a.api(), spans)
    result = tasks.judge_pending_task()
    assert "deferred" in result and "spans/s" in result["deferred"]
    assert tenant_a.api().get(f"/api/v1/traces/{spans[0]['trace_id']}").json()["outcome"] is None
    settings.KRIY_JUDGE_MAX_DEFER_SECONDS = 0  # the wait is over: judge the backlog
    result = tasks.judge_pending_task()
    assert result.get("traces", 0) >= 1
    assert (
        tenant_a.api().get(f"/api/v1/traces/{spans[0]['trace_id']}").json()["outcome"]
        == "defective"
    )
    settings.KRIY_JUDGE_DEFER_ABOVE = 0  # production: never defers
    tasks._deferring_since = None
    assert "deferred" not in tasks.judge_pending_task()


@pytest.mark.parametrize(
    "doc",
    [
        {"a\x00b": {"latency_slo_ms": 5}},
        {"planner": {"required_steps": ["ve\x00rify"]}},
        {"planner": {"required_steps": ["x" * 300]}},
        {"planner": {"latency_slo_ms": 2**40}},
        {"x" * 200: {}},
    ],
)
def test_contracts_the_database_cannot_hold_are_400_not_500(tenant_a, doc) -> None:
    resp = tenant_a.api().put("/api/v1/contracts", doc, content_type="application/json")
    assert resp.status_code == 400, resp.content
    assert "contracts" in resp.json()["error"]
