"""Reads of the improvement loop for the weekly API and the pages (from the rollups)."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any

from apps.issues.models import Issue, IssueEvent, IssueStatus
from apps.metrics.models import AgentRollup
from apps.metrics.services import monday


def rate(num: int, den: int) -> float | None:
    return num / den if den else None


def improvement(prev: float | None, this: float | None) -> float | None:
    """spans.md §4: (prev - this) / prev; undefined when either rate is, or prev is 0."""
    if prev is None or this is None or prev == 0:
        return None
    return (prev - this) / prev


def _week_row(week_start: date, r: AgentRollup | None) -> dict[str, Any]:
    traces = r.traces if r else 0
    failed = r.failed if r else 0
    defective = r.defective if r else 0
    return {
        "week_start": week_start.isoformat(),
        "traces": traces,
        "sessions": r.sessions if r else 0,
        "spans": r.spans if r else 0,
        "failed": failed,
        "defective": defective,
        "issue_rate": rate(failed + defective, traces),
        "silent_defect_rate": rate(defective, traces),
        "improvement": None,
        "findings": r.findings if r else 0,
        "findings_by_type": dict(r.findings_by_type) if r else {},
        "p50_ms": r.p50_ms if r else None,
        "p95_ms": r.p95_ms if r else None,
        "tokens_in": r.tokens_in if r else 0,
        "tokens_out": r.tokens_out if r else 0,
        "cost_usd": r.cost_usd if r else 0.0,
        "new_issues": 0,
        "resolved_issues": 0,
        "regressed_issues": 0,
    }


def week_starts(weeks: int, until: date | None = None) -> list[date]:
    """The last ``weeks`` ISO weeks ending with the one holding ``until`` (today), oldest first."""
    last = monday(until or datetime.now(UTC).date())
    return [last - timedelta(weeks=i) for i in range(weeks - 1, -1, -1)]


def agents_weeks(
    *, project_id: int, weeks: int = 12, until: date | None = None, agent: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per agent, the last ``weeks`` ISO weeks oldest first, with week-over-week improvement."""
    starts = week_starts(weeks + 1, until)  # one more week for the first improvement
    qs = AgentRollup.objects.filter(
        project_id=project_id,
        period=AgentRollup.Period.WEEK,
        start__gte=starts[0],
        start__lte=starts[-1],
    )
    if agent is not None:
        qs = qs.filter(agent=agent)
    by_agent: dict[str, dict[date, AgentRollup]] = defaultdict(dict)
    for r in qs:
        by_agent[r.agent][r.start] = r
    if agent is not None:
        by_agent.setdefault(agent, {})
    events = _issue_events_by_week(project_id=project_id, since=starts[0], agent=agent)
    out: dict[str, list[dict[str, Any]]] = {}
    for name in sorted(by_agent):
        rows = [_week_row(s, by_agent[name].get(s)) for s in starts]
        for prev, this in pairwise(rows):
            this["improvement"] = improvement(prev["issue_rate"], this["issue_rate"])
        for row in rows:
            for kind, n in events.get((name, row["week_start"]), {}).items():
                row[f"{kind}_issues"] = n
        out[name] = rows[1:]
    return out


def agent_weeks(
    *, project_id: int, agent: str, weeks: int = 12, until: date | None = None
) -> list[dict[str, Any]]:
    return agents_weeks(project_id=project_id, weeks=weeks, until=until, agent=agent)[agent]


def _issue_events_by_week(
    *, project_id: int, since: date, agent: str | None
) -> dict[tuple[str, str], Counter]:
    qs = IssueEvent.objects.filter(
        project_id=project_id,
        kind__in=["new", "resolved", "regressed"],
        at__gte=datetime.combine(since, datetime.min.time(), tzinfo=UTC),
    ).select_related("issue")
    if agent is not None:
        qs = qs.filter(issue__agent=agent)
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for e in qs:
        out[(e.issue.agent, monday(e.at.date()).isoformat())][e.kind] += 1
    return out


def project_agents(*, project_id: int) -> list[str]:
    return list(
        AgentRollup.objects.filter(project_id=project_id)
        .values_list("agent", flat=True)
        .distinct()
        .order_by("agent")
    )


def open_issue_counts(*, project_id: int) -> dict[str, int]:
    rows = Issue.objects.filter(
        project_id=project_id, status__in=[IssueStatus.OPEN, IssueStatus.REGRESSED]
    ).values_list("agent", flat=True)
    return dict(Counter(rows))


def project_summary(
    *, project_id: int, weeks: int = 12, until: date | None = None
) -> list[dict[str, Any]]:
    """One entry per agent for the overview: this and last week, the trend, open issues."""
    per_agent = agents_weeks(project_id=project_id, weeks=weeks, until=until)
    open_counts = open_issue_counts(project_id=project_id)
    out = []
    for agent, rows in per_agent.items():
        out.append(
            {
                "agent": agent,
                "this_week": rows[-1],
                "last_week": rows[-2] if len(rows) > 1 else None,
                "weeks": rows,
                "open_issues": open_counts.get(agent, 0),
            }
        )
    return out


def weekly_report(*, project_id: int, week_start: date) -> dict[str, Any]:
    """The improvement report of one ISO week: headline figures, per-agent rows, issue changes."""
    week_start = monday(week_start)
    per_agent = agents_weeks(project_id=project_id, weeks=1, until=week_start)
    prev_per_agent = agents_weeks(
        project_id=project_id, weeks=1, until=week_start - timedelta(weeks=1)
    )
    agents = [
        {"agent": a, **rows[-1]}
        for a, rows in per_agent.items()
        if rows[-1]["traces"] or prev_per_agent.get(a, [{}])[-1].get("traces")
    ]
    tot = Counter()
    prev_tot = Counter()
    for a in agents:
        for k in ("traces", "sessions", "spans", "failed", "defective", "findings"):
            tot[k] += a[k]
    for rows in prev_per_agent.values():
        for k in ("traces", "failed", "defective"):
            prev_tot[k] += rows[-1][k]
    this_rate = rate(tot["failed"] + tot["defective"], tot["traces"])
    prev_rate = rate(prev_tot["failed"] + prev_tot["defective"], prev_tot["traces"])
    end = week_start + timedelta(weeks=1)
    start_dt = datetime.combine(week_start, datetime.min.time(), tzinfo=UTC)
    end_dt = datetime.combine(end, datetime.min.time(), tzinfo=UTC)
    events = IssueEvent.objects.filter(
        project_id=project_id, at__gte=start_dt, at__lt=end_dt
    ).select_related("issue")
    changes: dict[str, list[Issue]] = {"new": [], "regressed": [], "resolved": []}
    seen: set[tuple[str, int]] = set()
    for e in events.order_by("at"):
        if e.kind in changes and (e.kind, e.issue_id) not in seen:
            seen.add((e.kind, e.issue_id))
            changes[e.kind].append(e.issue)
    return {
        "week_start": week_start.isoformat(),
        "week_end": (end - timedelta(days=1)).isoformat(),
        "headline": {
            "sessions": tot["sessions"],
            "traces": tot["traces"],
            "spans": tot["spans"],
            "findings": tot["findings"],
            "issue_rate": this_rate,
            "silent_defect_rate": rate(tot["defective"], tot["traces"]),
            "previous_issue_rate": prev_rate,
            "improvement": improvement(prev_rate, this_rate),
        },
        "agents": agents,
        "new_issues": changes["new"],
        "regressed_issues": changes["regressed"],
        "resolved_issues": changes["resolved"],
    }
