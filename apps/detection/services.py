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

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.detection.detectors import Contract, Span, parse_contracts
from apps.detection.judge_core import SPAN_SQL, USAGE_SQL, ChunkResult, judge_chunk, spans_from_raw
from apps.detection.models import AgentContract, JudgeWatermark
from kriyplatform.clickhouse.client import ch_insert, ch_raw, ch_select, ch_system
from kriyplatform.errors import AppError

log = logging.getLogger(__name__)

# Traces judged per span-store read: each read scans the project's detection columns once, so
# fewer, larger chunks are faster; the size bounds the judge's memory (~30k traces, ~300k spans).
CHUNK_TRACES = 30_000
IN_PROCESS_CHUNK_TRACES = 5_000
ID_PARAM_CHUNK = 50_000


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


MAX_CONTRACT_AGENTS = 1_000
MAX_REQUIRED_STEPS = 100
MAX_LATENCY_SLO_MS = 2**31 - 1  # ~24 days: the column's range


def _check_contract_limits(parsed: Mapping[str, Contract]) -> None:
    """What the relational store can hold, named field by field (NUL cannot be stored)."""
    if len(parsed) > MAX_CONTRACT_AGENTS:
        raise AppError(f"contracts: at most {MAX_CONTRACT_AGENTS} agents", field="contracts")
    for agent, c in parsed.items():
        where = f"contracts[{agent[:40]!r}]"
        if len(agent) > 128 or "\x00" in agent:
            raise AppError(
                f"{where}: agent names are 1-128 characters without NUL", field="contracts"
            )
        if len(c.required_steps) > MAX_REQUIRED_STEPS:
            raise AppError(
                f"{where}.required_steps: at most {MAX_REQUIRED_STEPS} steps", field="contracts"
            )
        for step in c.required_steps:
            if len(step) > 256 or "\x00" in step:
                raise AppError(
                    f"{where}.required_steps: step names are 1-256 characters without NUL",
                    field="contracts",
                )
        if c.latency_slo_ms is not None and c.latency_slo_ms > MAX_LATENCY_SLO_MS:
            raise AppError(
                f"{where}.latency_slo_ms: at most {MAX_LATENCY_SLO_MS}", field="contracts"
            )


def contracts_put(
    *, project: Any, document: Any, actor: Any = None
) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Replace the project's contracts; returns the new document and the agents whose contract changed."""
    try:
        parsed = parse_contracts(document)
    except ValueError as exc:
        raise AppError(str(exc), field="contracts") from exc
    _check_contract_limits(parsed)
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


def load_spans(*, project_id: int, trace_ids: list[str]) -> list[Span]:
    """Spans of these traces, deduplicated, as the detectors see them."""
    spans: list[Span] = []
    for i in range(0, len(trace_ids), ID_PARAM_CHUNK):
        params = {"ids": trace_ids[i : i + ID_PARAM_CHUNK]}
        spans += spans_from_raw(
            ch_raw(SPAN_SQL, project_id=project_id, params=params, fmt="JSONCompact")
        )
    return spans


# Traces to judge: the new ones plus every trace that shares a session with them.
_AFFECTED_SQL = """SELECT trace_id, groupUniqArrayIf(session_id, session_id != '') AS sessions
FROM {db}.spans
WHERE project_id = {project_id:UInt64}
  AND (trace_id IN (%(new)s)
       OR session_id IN (SELECT DISTINCT session_id FROM {db}.spans
                         WHERE project_id = {project_id:UInt64} AND session_id != '' AND trace_id IN (%(new)s)))
GROUP BY trace_id"""
_NEW_BY_IDS = "SELECT arrayJoin({ids:Array(String)})"
_NEW_BY_VERSION = (
    "SELECT DISTINCT trace_id FROM {db}.spans WHERE project_id = {project_id:UInt64} "
    "AND version > {lo:UInt64} AND version <= {hi:UInt64}"
)


def _session_groups(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Traces that share a session (directly or through another trace) form one group: they are
    judged together, because a write in one can make a read in another stale."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for r in rows:
        t = "t:" + r["trace_id"]
        find(t)
        for sess in r["sessions"]:
            a, b = find(t), find("s:" + sess)
            if a != b:
                parent[a] = b
    groups: dict[str, list[str]] = {}
    for r in rows:
        groups.setdefault(find("t:" + r["trace_id"]), []).append(r["trace_id"])
    return list(groups.values())


def _chunks(groups: list[list[str]], size: int) -> list[list[str]]:
    """Whole session groups packed into chunks of about ``size`` traces."""
    out: list[list[str]] = []
    cur: list[str] = []
    for g in sorted(groups, key=min):
        if cur and len(cur) + len(g) > size:
            out.append(cur)
            cur = []
        cur.extend(g)
    if cur:
        out.append(cur)
    return out


# --- judging ------------------------------------------------------------------------------------------

_pool: Any = None


def _worker_pool() -> Any:
    """Worker processes for large passes (forkserver: children start clean, never from a process
    that holds chDB's threads)."""
    global _pool
    if _pool is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["apps.detection.judge_core"])
        _pool = ProcessPoolExecutor(max_workers=settings.KRIY_JUDGE_PROCESSES, mp_context=ctx)
        import atexit

        atexit.register(_pool.shutdown, wait=True, cancel_futures=True)
    return _pool


def judge_project_traces(
    *,
    project_id: int,
    trace_ids: Iterable[str] | None = None,
    version_range: tuple[int, int] | None = None,
    stats: JudgeStats | None = None,
) -> JudgeStats:
    """Judge the given traces (by id, or those with spans in an ingest-version range) together
    with every trace sharing a session with them, and replace their judgements.

    The parent reads each chunk's rows from the span store; parsing, judging and encoding run
    in-process for small passes and in worker processes for large ones, a chunk in flight per
    worker while the parent reads the next.
    """
    from apps.orgs.models import Project

    stats = stats or JudgeStats()
    project = Project.objects.select_related("organization").filter(pk=project_id).first()
    if project is None:
        return stats  # deleted project: its spans expire with their TTL
    if version_range is not None:
        params = {"lo": version_range[0], "hi": version_range[1]}
        affected = ch_select(
            _AFFECTED_SQL % {"new": _NEW_BY_VERSION}, project_id=project_id, params=params
        )
    else:
        ids = sorted(set(trace_ids or ()))
        affected = []
        for i in range(0, len(ids), ID_PARAM_CHUNK):
            params = {"ids": ids[i : i + ID_PARAM_CHUNK]}
            affected += ch_select(
                _AFFECTED_SQL % {"new": _NEW_BY_IDS}, project_id=project_id, params=params
            )
    if not affected:
        return stats
    stats.projects += 1
    contracts = contracts_document(project_id=project_id)
    kwargs = {
        "project_id": project_id,
        "retention_days": project.organization.retention_days,
        "version": time.time_ns(),
        "now": int(time.time()),
    }
    parallel = (
        settings.KRIY_JUDGE_PROCESSES > 1
        and len(affected) > settings.KRIY_JUDGE_PARALLEL_MIN_TRACES
    )
    # In-process chunks stay small (the server's memory); worker chunks are sized so every
    # worker gets a few, each bounded by CHUNK_TRACES.
    size = (
        IN_PROCESS_CHUNK_TRACES
        if not parallel
        else max(2_000, min(CHUNK_TRACES, len(affected) // (settings.KRIY_JUDGE_PROCESSES * 3) + 1))
    )
    pending: list[Any] = []

    def finish(result: ChunkResult) -> None:
        if result.rows:
            ch_insert("trace_judgements", result.rows)
        stats.traces += result.traces
        stats.spans += result.spans
        stats.findings += result.findings
        stats.touched.setdefault(project_id, set()).update(result.agents)

    for chunk in _chunks(_session_groups(affected), size):
        params = {"ids": chunk}
        raw_spans = ch_raw(SPAN_SQL, project_id=project_id, params=params, fmt="JSONCompact")
        raw_usage = ch_raw(USAGE_SQL, project_id=project_id, params=params, fmt="JSONCompact")
        if not parallel:
            finish(judge_chunk(raw_spans, raw_usage, contracts, **kwargs))
            continue
        pending.append(
            _worker_pool().submit(judge_chunk, raw_spans, raw_usage, contracts, **kwargs)
        )
        while len(pending) > settings.KRIY_JUDGE_PROCESSES:
            finish(pending.pop(0).result())
    for fut in pending:
        finish(fut.result())
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
    projects = ch_system(
        "SELECT DISTINCT project_id FROM {db}.spans WHERE version > {lo:UInt64} AND version <= {hi:UInt64}",
        {"lo": wm.version, "hi": hi},
    )
    for r in projects:
        judge_project_traces(
            project_id=int(r["project_id"]), version_range=(wm.version, hi), stats=stats
        )
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
    """Re-judge the traces of these agents from the last ``days`` days (a contract changed).

    "The last days" counts both when a trace happened and when it arrived, so a history sent
    in recently (a backfill, a recorded corpus) follows a contract set after it.
    """
    days = settings.KRIY_CONTRACT_REJUDGE_DAYS if days is None else days
    since = datetime.now(UTC) - timedelta(days=days)
    rows = ch_select(
        """SELECT DISTINCT trace_id FROM {db}.spans
        WHERE project_id = {project_id:UInt64} AND parent_span_id = '' AND agent IN {agents:Array(String)}
          AND (start_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')
               OR ingested_at >= toDateTime(intDiv({since:Int64}, 1000000000), 'UTC'))""",
        project_id=project_id,
        params={"agents": sorted(agents), "since": int(since.timestamp() * 1e9)},
    )
    stats = judge_project_traces(project_id=project_id, trace_ids=[r["trace_id"] for r in rows])
    from apps.issues.services import issues_refresh

    issues_refresh(project_id=project_id)
    return stats
