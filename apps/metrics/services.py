"""Rollups of the improvement loop (spans.md §4): per project, agent, day and ISO week.

Scheduled aggregation, not materialized views: the numbers depend on judgements that are
*replaced* when late spans re-judge a trace, and a view would add rather than replace. So the
rollup task recomputes whole days and weeks from the deduplicated judgements (FINAL) for every
day that a judge pass touched, and overwrites their rows: idempotent, and right under late spans.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date, timedelta
from typing import Any

from django.db import transaction

from apps.metrics.models import AgentRollup, RollupWatermark
from kriyplatform.clickhouse.client import ch_select, ch_system

log = logging.getLogger(__name__)

_AGG = """count() AS traces, uniqExactIf(session_id, session_id != '') AS sessions, sum(span_count) AS spans,
    countIf(outcome = 'failed') AS failed, countIf(outcome = 'defective') AS defective,
    sum(length(finding_types)) AS findings,
    quantileExact(0.5)(duration_ns) / 1e6 AS p50_ms, quantileExact(0.95)(duration_ns) / 1e6 AS p95_ms,
    sum(tokens_in) AS tokens_in, sum(tokens_out) AS tokens_out, sum(cost_usd) AS cost_usd"""


def monday(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _period_rows(
    project_id: int, bucket: str, starts: list[date]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    params = {"starts": [s.isoformat() for s in starts]}
    rows = ch_select(
        f"""SELECT agent, {bucket}(start_time) AS start, {_AGG}
        FROM {{db}}.trace_judgements FINAL
        WHERE project_id = {{project_id:UInt64}} AND {bucket}(start_time) IN {{starts:Array(Date)}}
        GROUP BY agent, start""",
        project_id=project_id,
        params=params,
    )
    by_type = ch_select(
        f"""SELECT agent, {bucket}(start_time) AS start, t AS type, count() AS n
        FROM {{db}}.trace_judgements FINAL ARRAY JOIN finding_types AS t
        WHERE project_id = {{project_id:UInt64}} AND {bucket}(start_time) IN {{starts:Array(Date)}}
        GROUP BY agent, start, type""",
        project_id=project_id,
        params=params,
    )
    return rows, by_type


def rollup_days(*, project_id: int, days: Iterable[date]) -> int:
    """Recompute the day rollups of these days and the week rollups of their ISO weeks."""
    days = sorted(set(days))
    if not days:
        return 0
    written = 0
    for period, bucket, starts in (
        (AgentRollup.Period.DAY, "toDate", days),
        (AgentRollup.Period.WEEK, "toMonday", sorted({monday(d) for d in days})),
    ):
        rows, by_type = _period_rows(project_id, bucket, starts)
        types: dict[tuple[str, str], dict[str, int]] = {}
        for r in by_type:
            types.setdefault((r["agent"], r["start"]), {})[r["type"]] = int(r["n"])
        with transaction.atomic():
            keep = set()
            for r in rows:
                start = date.fromisoformat(r["start"])
                keep.add((r["agent"], start))
                AgentRollup.objects.update_or_create(
                    project_id=project_id,
                    agent=r["agent"][:128],
                    period=period,
                    start=start,
                    defaults={
                        "traces": int(r["traces"]),
                        "sessions": int(r["sessions"]),
                        "spans": int(r["spans"]),
                        "failed": int(r["failed"]),
                        "defective": int(r["defective"]),
                        "findings": int(r["findings"]),
                        "p50_ms": float(r["p50_ms"]),
                        "p95_ms": float(r["p95_ms"]),
                        "tokens_in": int(r["tokens_in"]),
                        "tokens_out": int(r["tokens_out"]),
                        "cost_usd": float(r["cost_usd"]),
                        "findings_by_type": types.get((r["agent"], r["start"]), {}),
                    },
                )
                written += 1
            # a window that lost all its traces of an agent (re-judged away) loses its row
            for stale in AgentRollup.objects.filter(
                project_id=project_id, period=period, start__in=starts
            ):
                if (stale.agent, stale.start) not in keep:
                    stale.delete()
    return written


def rollup_pending() -> dict[str, int]:
    """Recompute the days that judge passes touched since the last rollup (by judged_version)."""
    wm, _ = RollupWatermark.objects.get_or_create(key="judgements")
    hi = time.time_ns()
    touched = ch_system(
        """SELECT project_id, groupUniqArray(toDate(start_time)) AS days FROM {db}.trace_judgements
        WHERE judged_version > {lo:UInt64} AND judged_version <= {hi:UInt64} GROUP BY project_id""",
        {"lo": wm.version, "hi": hi},
    )
    from apps.orgs.models import Project

    live = set(
        Project.objects.filter(pk__in=[int(t["project_id"]) for t in touched]).values_list(
            "pk", flat=True
        )
    )
    written = 0
    for t in touched:
        if int(t["project_id"]) in live:
            written += rollup_days(
                project_id=int(t["project_id"]), days=[date.fromisoformat(d) for d in t["days"]]
            )
    RollupWatermark.objects.filter(pk=wm.pk).update(version=hi)
    return {"projects": len(live), "rows": written}
