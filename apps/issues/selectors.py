from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.issues.models import Issue
from kriyplatform.clickhouse.client import ch_select


def issues_query(
    qs: QuerySet[Issue],
    *,
    agent: str | None = None,
    status: str | None = None,
    type: str | None = None,
) -> QuerySet[Issue]:
    if agent:
        qs = qs.filter(agent=agent)
    if status:
        qs = qs.filter(status=status)
    if type:
        qs = qs.filter(type=type)
    return qs.order_by("-last_seen", "id")


def issue_out(i: Issue) -> dict[str, Any]:
    return {
        "id": i.pk,
        "type": i.type,
        "agent": i.agent,
        "span_name": i.span_name,
        "status": i.status,
        "first_seen": i.first_seen.isoformat().replace("+00:00", "Z"),
        "last_seen": i.last_seen.isoformat().replace("+00:00", "Z"),
        "count": i.count,
    }


def issue_occurrences(*, project_id: int, issue: Issue, limit: int = 50) -> list[dict[str, Any]]:
    """The most recent traces where this issue's finding occurred, with the finding's message."""
    return ch_select(
        """SELECT trace_id, session_id, toUnixTimestamp64Nano(start_time) AS start_ns, outcome, sid AS span_id, msg AS message
        FROM {db}.trace_judgements FINAL
        ARRAY JOIN finding_agents AS a, finding_types AS t, finding_span_names AS n, finding_span_ids AS sid, finding_messages AS msg
        WHERE project_id = {project_id:UInt64} AND a = {agent:String} AND t = {type:String} AND n = {name:String}
        ORDER BY start_time DESC LIMIT {limit:UInt32}""",
        project_id=project_id,
        params={"agent": issue.agent, "type": issue.type, "name": issue.span_name, "limit": limit},
    )


def issue_daily_counts(*, project_id: int, issue: Issue, days: int = 56) -> list[dict[str, Any]]:
    return ch_select(
        """SELECT toDate(start_time) AS day, count() AS n
        FROM {db}.trace_judgements FINAL
        ARRAY JOIN finding_agents AS a, finding_types AS t, finding_span_names AS nm
        WHERE project_id = {project_id:UInt64} AND a = {agent:String} AND t = {type:String} AND nm = {name:String}
          AND start_time >= now() - toIntervalDay({days:UInt32})
        GROUP BY day ORDER BY day""",
        project_id=project_id,
        params={"agent": issue.agent, "type": issue.type, "name": issue.span_name, "days": days},
    )
