"""Issues: findings grouped by (project, agent, type, span name), kept in step with the judge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.issues.models import Issue, IssueEvent, IssueStatus
from kriyplatform.clickhouse.client import ch_select
from kriyplatform.errors import AppError


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def finding_groups(*, project_id: int) -> list[dict[str, Any]]:
    """Current findings of the project grouped as issues, from the judgements (deduplicated)."""
    return ch_select(
        """SELECT agent_ AS agent, type_ AS type, name_ AS span_name, count() AS n,
               toUnixTimestamp64Nano(min(start_time)) AS first_ns, toUnixTimestamp64Nano(max(start_time)) AS last_ns
        FROM {db}.trace_judgements FINAL
        ARRAY JOIN finding_agents AS agent_, finding_types AS type_, finding_span_names AS name_
        WHERE project_id = {project_id:UInt64}
        GROUP BY agent_, type_, name_""",
        project_id=project_id,
    )


def issues_refresh(*, project_id: int) -> dict[str, int]:
    """Bring the project's issues in line with its findings: create new ones, update counts and
    times, and regress a resolved issue that has a finding newer than its resolution."""
    groups = finding_groups(project_id=project_id)
    existing = {
        (i.agent, i.type, i.span_name): i for i in Issue.objects.filter(project_id=project_id)
    }
    seen = set()
    created = regressed = 0
    now = timezone.now()
    with transaction.atomic():
        for g in groups:
            key = (g["agent"], g["type"], g["span_name"])
            seen.add(key)
            first, last = _dt(g["first_ns"]), _dt(g["last_ns"])
            issue = existing.get(key)
            if issue is None:
                issue, made = Issue.objects.get_or_create(
                    project_id=project_id,
                    agent=key[0][:128],
                    type=key[1],
                    span_name=key[2][:256],
                    defaults={"count": g["n"], "first_seen": first, "last_seen": last},
                )
                if made:
                    # an issue is new in the week its first finding happened (backfills too)
                    IssueEvent.objects.create(
                        at=first,
                        issue=issue,
                        project_id=project_id,
                        kind=IssueEvent.Kind.NEW,
                        actor="judge",
                    )
                    created += 1
                    continue
            fields = {"count": g["n"], "first_seen": first, "last_seen": last}
            if (
                issue.status == IssueStatus.RESOLVED
                and issue.resolved_at
                and last > issue.resolved_at
            ):
                fields["status"] = IssueStatus.REGRESSED
                IssueEvent.objects.create(
                    at=last,
                    issue=issue,
                    project_id=project_id,
                    kind=IssueEvent.Kind.REGRESSED,
                    actor="judge",
                )
                regressed += 1
            if any(getattr(issue, k) != v for k, v in fields.items()):
                Issue.objects.filter(pk=issue.pk).update(**fields, updated_at=now)
        gone = [i.pk for k, i in existing.items() if k not in seen and i.count]
        if gone:  # findings re-judged away (e.g. a contract changed): nothing left to count
            Issue.objects.filter(pk__in=gone).update(count=0, updated_at=now)
    return {"groups": len(groups), "created": created, "regressed": regressed}


TRANSITIONS = {
    "resolve": (IssueStatus.RESOLVED, IssueEvent.Kind.RESOLVED),
    "ignore": (IssueStatus.IGNORED, IssueEvent.Kind.IGNORED),
    "reopen": (IssueStatus.OPEN, IssueEvent.Kind.REOPENED),
}


def issue_set_status(*, issue: Issue, action: str, actor: Any = None) -> Issue:
    if action not in TRANSITIONS:
        raise AppError("action: must be resolve, ignore or reopen", field="action")
    status, kind = TRANSITIONS[action]
    now = timezone.now()
    issue.status = status
    issue.resolved_at = now if status == IssueStatus.RESOLVED else None
    issue.updated_at = now
    issue.save(update_fields=["status", "resolved_at", "updated_at"])
    IssueEvent.objects.create(
        issue=issue,
        project_id=issue.project_id,
        kind=kind,
        actor=getattr(actor, "email", "") or str(actor or ""),
    )
    return issue
