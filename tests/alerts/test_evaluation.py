"""Rule evaluation on PostgreSQL + chDB: every metric, the state machine, muted rules and the
minimum number of traces."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.alerts import services
from apps.alerts.models import AlertEvent, AlertRule, AlertState, Delivery, NotificationChannel
from apps.issues.models import Issue, IssueEvent
from tests.alerts.conftest import ingest, recent_trace, traffic

pytestmark = pytest.mark.django_db


def make_rule(tenant, **over) -> AlertRule:
    data = {
        "name": "rule",
        "metric": "issue_rate",
        "comparison": ">",
        "threshold": 0.5,
        "window_seconds": 3600,
        "min_traces": 1,
        **over,
    }
    return services.rule_create(project=tenant.project, actor=tenant.user, data=data)


def measure(rule: AlertRule):
    return services.rule_measure(rule=rule, now=timezone.now())


@pytest.fixture
def mixed_traffic(tenant_a):
    """support: 2 failed, 1 defective, 2 clean in the last hour, 1 failed two hours ago;
    planner: 1 failed in the last hour."""
    spans = []
    for outcome in ("failed", "failed", "defective", "clean", "clean"):
        spans += recent_trace("support", outcome, ago_s=120)
    spans += recent_trace("support", "failed", ago_s=7200)
    spans += recent_trace("planner", "failed", ago_s=300)
    ingest(tenant_a, spans)
    return tenant_a


def test_rates_count_the_traces_whose_root_started_in_the_window(mixed_traffic) -> None:
    t = mixed_traffic
    issue = measure(make_rule(t, agent="support"))
    assert (issue.value, issue.traces) == (pytest.approx(3 / 5), 5)
    assert measure(make_rule(t, agent="support", metric="silent_defect_rate")).value == (
        pytest.approx(1 / 5)
    )
    assert measure(make_rule(t, agent="support", metric="failed_rate")).value == pytest.approx(
        2 / 5
    )
    everyone = measure(make_rule(t, metric="issue_rate"))
    assert (everyone.value, everyone.traces) == (pytest.approx(4 / 6), 6)
    day = measure(make_rule(t, agent="support", window_seconds=86400))
    assert (day.value, day.traces) == (pytest.approx(4 / 6), 6)


def test_p95_duration_is_measured_in_milliseconds_over_the_roots(tenant_a) -> None:
    spans = []
    for ms in (100, 200, 300, 400, 5000):
        spans += recent_trace("support", "clean", duration_ms=ms)
    ingest(tenant_a, spans)
    m = measure(make_rule(tenant_a, metric="p95_duration_ms", threshold=1000, agent="support"))
    assert m.traces == 5
    assert m.value == pytest.approx(5000)


def test_finding_count_counts_findings_of_one_type(mixed_traffic) -> None:
    rule = make_rule(
        mixed_traffic, metric="finding_count", finding_type="partial_result_used", threshold=0
    )
    assert measure(rule).value == 1
    other = make_rule(mixed_traffic, metric="finding_count", finding_type="tool_loop", threshold=0)
    assert measure(other).value == 0
    by_agent = make_rule(
        mixed_traffic,
        metric="finding_count",
        finding_type="partial_result_used",
        agent="planner",
        threshold=0,
    )
    assert measure(by_agent).value == 0


def test_issue_metrics_count_issue_events_in_the_window(mixed_traffic) -> None:
    t = mixed_traffic
    new = make_rule(t, metric="new_issue", threshold=0, comparison=">", window_seconds=900)
    assert measure(new).value == 1  # partial_result_used on crm.lookup (support), just recorded
    assert measure(make_rule(t, metric="new_issue", agent="planner", threshold=0)).value == 0
    issue = Issue.objects.get(project=t.project)
    IssueEvent.objects.create(issue=issue, project=t.project, kind="regressed")
    two_hours_ago = timezone.now() - timedelta(hours=2)
    IssueEvent.objects.create(
        issue=issue,
        project=t.project,
        kind="regressed",
        at=two_hours_ago,
        recorded_at=two_hours_ago,
    )
    regressed = make_rule(t, metric="regressed_issue", threshold=0, window_seconds=3600)
    assert measure(regressed).value == 1


def test_rule_fires_once_stays_firing_then_resolves_and_can_fire_again(tenant_a) -> None:
    t = tenant_a
    issue = Issue.objects.create(
        project=t.project,
        agent="support",
        type="tool_loop",
        span_name="search",
        first_seen=timezone.now(),
        last_seen=timezone.now(),
    )
    rule = make_rule(t, metric="new_issue", comparison=">=", threshold=1, window_seconds=900)
    t0 = timezone.now()
    IssueEvent.objects.create(issue=issue, project=t.project, kind="new", at=t0, recorded_at=t0)

    first = services.rule_evaluate(rule_id=rule.pk, now=t0 + timedelta(minutes=1))
    assert first.transition == "firing"
    again = services.rule_evaluate(rule_id=rule.pk, now=t0 + timedelta(minutes=2))
    assert again.transition is None and again.value == 1
    resolved = services.rule_evaluate(rule_id=rule.pk, now=t0 + timedelta(minutes=20))
    assert resolved.transition == "resolved"
    quiet = services.rule_evaluate(rule_id=rule.pk, now=t0 + timedelta(minutes=21))
    assert quiet.transition is None
    later = t0 + timedelta(minutes=21)
    IssueEvent.objects.create(
        issue=issue, project=t.project, kind="new", at=later, recorded_at=later
    )
    refire = services.rule_evaluate(rule_id=rule.pk, now=t0 + timedelta(minutes=22))
    assert refire.transition == "firing"

    events = list(AlertEvent.objects.filter(rule=rule).order_by("sequence"))
    assert [(e.sequence, e.kind, e.value) for e in events] == [
        (1, "firing", 1.0),
        (2, "resolved", 0.0),
        (3, "firing", 1.0),
    ]
    rule.refresh_from_db()
    assert (rule.state, rule.sequence) == (AlertState.FIRING, 3)
    assert rule.last_evaluated_at == t0 + timedelta(minutes=22)


def test_an_older_evaluation_that_arrives_late_changes_nothing(tenant_a) -> None:
    rule = make_rule(tenant_a, metric="new_issue", threshold=0, comparison=">=")
    now = timezone.now()
    assert services.rule_evaluate(rule_id=rule.pk, now=now).transition == "firing"
    late = services.rule_evaluate(rule_id=rule.pk, now=now - timedelta(seconds=30))
    assert late.skipped and late.transition is None
    assert AlertEvent.objects.filter(rule=rule).count() == 1


def test_comparisons_below_and_at_or_below(tenant_a) -> None:
    below = make_rule(tenant_a, metric="new_issue", comparison="<", threshold=1)
    at_or_below = make_rule(tenant_a, metric="new_issue", comparison="<=", threshold=0)
    not_below = make_rule(tenant_a, metric="new_issue", comparison="<", threshold=0)
    assert services.rule_evaluate(rule_id=below.pk).transition == "firing"
    assert services.rule_evaluate(rule_id=at_or_below.pk).transition == "firing"
    assert services.rule_evaluate(rule_id=not_below.pk).transition is None


def test_too_few_traces_neither_fire_nor_resolve(tenant_a) -> None:
    traffic(tenant_a, failed=3)
    rule = make_rule(tenant_a, agent="support", threshold=0.2, min_traces=5)
    ev = services.rule_evaluate(rule_id=rule.pk)
    assert ev.transition is None and ev.value == pytest.approx(1.0)
    rule.refresh_from_db()
    assert rule.state == "ok"
    assert rule.last_note == "3 of at least 5 traces: not enough to decide"
    traffic(tenant_a, failed=2)
    assert services.rule_evaluate(rule_id=rule.pk).transition == "firing"
    # a firing rule is not resolved by a lack of data either
    AlertRule.objects.filter(pk=rule.pk).update(min_traces=50)
    assert services.rule_evaluate(rule_id=rule.pk).transition is None
    assert AlertRule.objects.get(pk=rule.pk).state == "firing"


def test_no_traces_in_the_window_is_no_data_not_zero(tenant_a) -> None:
    rule = make_rule(tenant_a, agent="nobody", comparison="<", threshold=0.5)
    ev = services.rule_evaluate(rule_id=rule.pk)
    assert ev.transition is None and ev.value is None
    assert AlertRule.objects.get(pk=rule.pk).last_note == "no traces in the window"


def test_muted_rule_records_transitions_but_creates_no_deliveries(tenant_a) -> None:
    channel, _ = services.channel_create(
        project=tenant_a.project,
        actor=tenant_a.user,
        data={"name": "ops", "kind": "email", "emails": ["ops@acme.example"]},
    )
    rule = make_rule(
        tenant_a,
        metric="new_issue",
        comparison=">=",
        threshold=0,
        muted=True,
        channels=[channel.pk],
    )
    ev = services.rule_evaluate(rule_id=rule.pk)
    assert ev.transition == "firing" and ev.deliveries == ()
    event = AlertEvent.objects.get(rule=rule)
    assert event.muted is True
    assert Delivery.objects.count() == 0


def test_each_transition_creates_one_delivery_per_channel(tenant_a) -> None:
    chans = [
        services.channel_create(
            project=tenant_a.project,
            actor=tenant_a.user,
            data={"name": f"c{i}", "kind": "email", "emails": [f"c{i}@acme.example"]},
        )[0]
        for i in range(2)
    ]
    rule = make_rule(
        tenant_a, metric="new_issue", comparison=">=", threshold=0, channels=[c.pk for c in chans]
    )
    ev = services.rule_evaluate(rule_id=rule.pk)
    assert len(ev.deliveries) == 2
    assert sorted(Delivery.objects.values_list("channel_id", flat=True)) == sorted(
        c.pk for c in chans
    )
    assert set(NotificationChannel.objects.values_list("project_id", flat=True)) == {
        tenant_a.project.pk
    }


def test_a_deleted_rule_is_skipped(tenant_a) -> None:
    rule = make_rule(tenant_a, metric="new_issue", threshold=0)
    pk = rule.pk
    rule.delete()
    assert services.rule_evaluate(rule_id=pk).skipped == "the rule no longer exists"


def test_editing_a_rule_from_a_stale_copy_keeps_the_state_of_the_evaluation(tenant_a) -> None:
    rule = make_rule(tenant_a, metric="new_issue", comparison=">=", threshold=0)
    stale = AlertRule.objects.get(pk=rule.pk)  # an admin opened the edit form
    assert services.rule_evaluate(rule_id=rule.pk).transition == "firing"
    services.rule_update(rule=stale, actor=tenant_a.user, data={"name": "renamed"})
    fresh = AlertRule.objects.get(pk=rule.pk)
    assert (fresh.name, fresh.state, fresh.sequence) == ("renamed", "firing", 1)
    # and the next transition gets the next sequence number
    AlertRule.objects.filter(pk=rule.pk).update(comparison="<")
    assert services.rule_evaluate(rule_id=rule.pk).transition == "resolved"
    assert list(AlertEvent.objects.filter(rule=rule).values_list("sequence", flat=True)) == [2, 1]


def test_an_issue_first_seen_now_is_new_even_when_its_trace_is_old(tenant_a) -> None:
    """A late (or backfilled) trace whose root started hours ago still makes a *new* issue now."""
    ingest(tenant_a, recent_trace("support", "defective", ago_s=3 * 3600))
    event = IssueEvent.objects.get(project=tenant_a.project, kind="new")
    assert timezone.now() - event.at > timedelta(hours=2)  # placed in time by its finding
    rule = make_rule(tenant_a, metric="new_issue", threshold=0, comparison=">", window_seconds=900)
    assert measure(rule).value == 1  # but noticed now
