"""The judge: runs the detectors over stored spans and writes one judgement row per trace.

Incremental: each pass takes the traces that received spans since the watermark (by ingest
version), widens them to whole sessions (``stale_state`` is session-wide, so a late write can make
another trace's read stale), judges every trace of those sessions whose root has arrived, and
replaces their judgement rows. Judging the same spans twice writes the same rows again, so a
re-run, a retried task or two workers racing change nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.detection.detectors import Contract, Span, TraceVerdict, judge, parse_contracts
from apps.detection.models import AgentContract, JudgeWatermark
from kriyplatform.clickhouse.client import ch_insert, ch_raw, ch_select, ch_system
from kriyplatform.errors import AppError

log = logging.getLogger(__name__)

CHUNK_TRACES = 5_000
# Columns the detectors need, in Span's field order, then usage columns for the trace totals.
_SPAN_SQL = """SELECT trace_id, span_id, parent_span_id, session_id, agent, name, kind,
    toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time), status,
    if(kind = 'tool', input, ''), result_partial, retry_attempt, retry_reason, constraints,
    context_required, context_present, state_key, state_version, state_op, invoke_agent,
    ifNull(tokens_in, 0), ifNull(tokens_out, 0), ifNull(cost_usd, 0)
FROM {db}.spans FINAL
WHERE project_id = {project_id:UInt64} AND trace_id IN {ids:Array(String)}"""
_N_SPAN_FIELDS = 21


@dataclass
class JudgeStats:
    projects: int = 0
    traces: int = 0
    spans: int = 0
    findings: int = 0
    seconds: float = 0.0
    touched: dict[int, set[str]] = field(default_factory=dict)  # project → agents judged

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "touched"}


# --- contracts ------------------------------------------------------------------------------------


def contracts_for(*, project_id: int) -> dict[str, Contract]:
    return {
        c.agent: Contract(
            required_steps=tuple(c.required_steps or ()), latency_slo_ms=c.latency_slo_ms
        )
        for c in AgentContract.objects.filter(project_id=project_id)
    }


def contracts_document(*, project_id: int) -> dict[str, dict[str, Any]]:
    """The project's contracts in the ``--contracts`` file format of spans.md."""
    return {c.agent: c.as_dict() for c in AgentContract.objects.filter(project_id=project_id)}


def contracts_put(
    *, project: Any, document: Any, actor: Any = None
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Replace the project's contracts; returns the new document and the agents whose contract changed."""
    try:
        parsed = parse_contracts(document)
    except ValueError as exc:
        raise AppError(str(exc), field="contracts") from exc
    for agent in parsed:
        if len(agent) > 128:
            raise AppError(
                f"contracts: agent name {agent[:40]!r}… is over 128 characters", field="contracts"
            )
    before = contracts_document(project_id=project.pk)
    with transaction.atomic():
        AgentContract.objects.filter(project=project).exclude(agent__in=list(parsed)).delete()
        for agent, c in parsed.items():
            AgentContract.objects.update_or_create(
                project=project,
                agent=agent,
                defaults={
                    "required_steps": list(c.required_steps),
                    "latency_slo_ms": c.latency_slo_ms,
                    "updated_at": timezone.now(),
                },
            )
    after = contracts_document(project_id=project.pk)
    changed = {a for a in set(before) | set(after) if before.get(a) != after.get(a)}
    if changed:
        from apps.audit.services import audit_record

        audit_record(
            organization=project.organization,
            actor=actor,
            action="contracts.updated",
            target=project.slug,
            detail={"agents": sorted(changed)},
        )
    return after, changed


# --- reading spans -----------------------------------------------------------------------------------


def load_spans(
    *, project_id: int, trace_ids: list[str]
) -> tuple[list[Span], dict[str, list[float]]]:
    """Spans of these traces (deduplicated), and per-trace LLM usage totals [tokens in, out, cost]."""
    spans: list[Span] = []
    usage: dict[str, list[float]] = {}
    for i in range(0, len(trace_ids), CHUNK_TRACES):
        raw = ch_raw(
            _SPAN_SQL,
            project_id=project_id,
            params={"ids": trace_ids[i : i + CHUNK_TRACES]},
            fmt="JSONCompact",
        )
        for row in orjson.loads(raw)["data"]:
            s = Span(*row[:_N_SPAN_FIELDS])
            spans.append(s)
            if s.kind == "llm":
                u = usage.setdefault(s.trace_id, [0, 0, 0.0])
                u[0] += row[21]
                u[1] += row[22]
                u[2] += row[23]
    return spans, usage


def _session_traces(*, project_id: int, trace_ids: list[str]) -> list[str]:
    """The given traces plus every trace sharing a session with them."""
    out = set(trace_ids)
    for i in range(0, len(trace_ids), CHUNK_TRACES):
        rows = ch_select(
            """SELECT DISTINCT trace_id FROM {db}.spans
            WHERE project_id = {project_id:UInt64} AND session_id IN (
                SELECT DISTINCT session_id FROM {db}.spans
                WHERE project_id = {project_id:UInt64} AND trace_id IN {ids:Array(String)} AND session_id != '')""",
            project_id=project_id,
            params={"ids": trace_ids[i : i + CHUNK_TRACES]},
        )
        out.update(r["trace_id"] for r in rows)
    return sorted(out)


# --- writing judgements ----------------------------------------------------------------------------


def _judgement_rows(
    project_id: int,
    verdicts: Iterable[TraceVerdict],
    usage: Mapping[str, list[float]],
    retention_days: int,
) -> bytes:
    version = time.time_ns()
    now = int(time.time())
    lines = []
    for v in verdicts:
        root = v.root
        names = {s.span_id: s for s in v.spans}
        u = usage.get(v.trace_id, (0, 0, 0.0))
        lines.append(
            orjson.dumps(
                {
                    "project_id": project_id,
                    "trace_id": v.trace_id,
                    "root_span_id": root.span_id,
                    "session_id": v.session_id,
                    "agent": root.agent,
                    "name": root.name,
                    "start_time": f"{root.start_ns // 1_000_000_000}.{root.start_ns % 1_000_000_000:09d}",
                    "duration_ns": root.end_ns - root.start_ns,
                    "status": root.status,
                    "outcome": v.outcome,
                    "span_count": len(v.spans),
                    "tokens_in": int(u[0]),
                    "tokens_out": int(u[1]),
                    "cost_usd": float(u[2]),
                    "finding_span_ids": [f.span_id for f in v.findings],
                    "finding_types": [f.type for f in v.findings],
                    "finding_span_names": [f.span_name for f in v.findings],
                    "finding_agents": [
                        names[f.span_id].agent if f.span_id in names else root.agent
                        for f in v.findings
                    ],
                    "finding_messages": [f.message for f in v.findings],
                    "retention_days": retention_days,
                    "judged_at": now,
                    "judged_version": version,
                }
            )
        )
    lines.append(b"")
    return b"\n".join(lines)


def judge_project_traces(
    *, project_id: int, trace_ids: Iterable[str], stats: JudgeStats | None = None
) -> JudgeStats:
    """Judge these traces and every trace sharing a session with them; replace their judgements."""
    from apps.orgs.models import Project

    stats = stats or JudgeStats()
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is None:
        return stats  # deleted project: its spans expire with their TTL
    contracts = contracts_for(project_id=project_id)
    ids = sorted(set(trace_ids))
    stats.projects += 1
    for i in range(0, len(ids), CHUNK_TRACES):
        chunk = _session_traces(project_id=project_id, trace_ids=ids[i : i + CHUNK_TRACES])
        spans, usage = load_spans(project_id=project_id, trace_ids=chunk)
        verdicts = judge(spans, contracts)
        if verdicts:
            ch_insert(
                "trace_judgements",
                _judgement_rows(project_id, verdicts, usage, project.organization.retention_days),
            )
        stats.traces += len(verdicts)
        stats.spans += len(spans)
        stats.findings += sum(len(v.findings) for v in verdicts)
        stats.touched.setdefault(project_id, set()).update(v.root.agent for v in verdicts)
    return stats


# --- the incremental pass -------------------------------------------------------------------------------


def judge_pending(*, settle_seconds: float | None = None) -> JudgeStats:
    """Judge every trace that received spans since the watermark, then move the watermark.

    Spans younger than the settle time wait for the next pass, so an insert still in flight when
    the watermark moves is never skipped. A crash before the watermark moves only means the same
    traces are judged again — with the same result.
    """
    started = time.perf_counter()
    settle = settings.KRIY_DETECT_SETTLE_SECONDS if settle_seconds is None else settle_seconds
    wm, _ = JudgeWatermark.objects.get_or_create(key="spans")
    hi = time.time_ns() - int(settle * 1e9)
    stats = JudgeStats()
    if hi <= wm.version:
        return stats
    rows = ch_system(
        """SELECT project_id, groupUniqArray(trace_id) AS trace_ids FROM {db}.spans
        WHERE version > {lo:UInt64} AND version <= {hi:UInt64} GROUP BY project_id""",
        {"lo": wm.version, "hi": hi},
    )
    for r in rows:
        judge_project_traces(project_id=int(r["project_id"]), trace_ids=r["trace_ids"], stats=stats)
    for project_id in stats.touched:
        from apps.issues.services import issues_refresh

        issues_refresh(project_id=project_id)
    JudgeWatermark.objects.filter(pk=wm.pk).update(version=hi, updated_at=timezone.now())
    stats.seconds = time.perf_counter() - started
    if stats.traces:
        log.info("judged %s", stats.as_dict())
    return stats


def rejudge_agents(
    *, project_id: int, agents: Iterable[str], days: int | None = None
) -> JudgeStats:
    """Re-judge the traces of these agents from the last ``days`` days (a contract changed)."""
    days = settings.KRIY_CONTRACT_REJUDGE_DAYS if days is None else days
    since = datetime.now(UTC) - timedelta(days=days)
    rows = ch_select(
        """SELECT DISTINCT trace_id FROM {db}.spans
        WHERE project_id = {project_id:UInt64} AND parent_span_id = '' AND agent IN {agents:Array(String)}
          AND start_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')""",
        project_id=project_id,
        params={"agents": sorted(agents), "since": int(since.timestamp() * 1e9)},
    )
    stats = judge_project_traces(project_id=project_id, trace_ids=[r["trace_id"] for r in rows])
    from apps.issues.services import issues_refresh

    issues_refresh(project_id=project_id)
    return stats
