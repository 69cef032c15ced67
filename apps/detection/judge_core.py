"""The judge's pure core: span-store bytes in, judgement-row bytes out.

No Django and no span-store access, so a large pass can run chunks in worker processes (chDB
lets only the serving process read; the parent reads, children parse and judge). Building
Python objects from the span rows is the judge's main cost; doing it in parallel is what lets
one pass use every core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from apps.detection.detectors import Span, TraceVerdict, judge, parse_contracts

# Columns the detectors need, in Span's field order. The ten always-set columns come as they are;
# the reliability columns (mostly defaults) travel packed in one JSON array that is empty for a
# span without any: fewer Python values per span is what makes the read fast.
SPAN_SQL = """SELECT trace_id, span_id, parent_span_id, session_id, agent, name, kind,
    toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time), status,
    if(tool_input = '' AND result_partial = 0 AND retry_attempt = 0 AND retry_reason = ''
         AND empty(constraints) AND empty(context_required) AND empty(context_present)
         AND state_key = '' AND state_version IS NULL AND state_op = '' AND invoke_agent = 0,
       '',
       toJSONString((tool_input, result_partial, retry_attempt, retry_reason, constraints,
                     context_required, context_present, state_key, state_version, state_op, invoke_agent)))
FROM {db}.spans FINAL
WHERE project_id = {project_id:UInt64} AND trace_id IN {ids:Array(String)}"""

USAGE_SQL = """SELECT trace_id, sum(ifNull(tokens_in, 0)), sum(ifNull(tokens_out, 0)), sum(ifNull(cost_usd, 0))
FROM {db}.spans FINAL
WHERE project_id = {project_id:UInt64} AND trace_id IN {ids:Array(String)} AND kind = 'llm'
GROUP BY trace_id"""


def spans_from_raw(raw: bytes) -> list[Span]:
    """Spans from SPAN_SQL's JSONCompact output."""
    loads = orjson.loads
    out: list[Span] = []
    append = out.append
    for t, sid, parent, sess, agent, name, kind, start, end, status, extra in loads(raw)["data"]:
        if extra:
            append(Span(t, sid, parent, sess, agent, name, kind, start, end, status, *loads(extra)))
        else:
            append(Span(t, sid, parent, sess, agent, name, kind, start, end, status))
    return out


def usage_from_raw(raw: bytes) -> dict[str, tuple[int, int, float]]:
    return {t: (tin, tout, cost) for t, tin, tout, cost in orjson.loads(raw)["data"]}


def judgement_rows(
    *,
    project_id: int,
    verdicts: Iterable[TraceVerdict],
    usage: Mapping[str, tuple[int, int, float]],
    retention_days: int,
    version: int,
    now: int,
) -> bytes:
    """JSONEachRow for trace_judgements: one row per verdict, findings inline."""
    dumps = orjson.dumps
    lines = []
    for v in verdicts:
        root = v.root
        findings = v.findings
        if findings:
            agents = {s.span_id: s.agent for s in v.spans}
            f_agents = [agents.get(f.span_id, root.agent) for f in findings]
        else:
            f_agents = []
        u = usage.get(v.trace_id, (0, 0, 0.0))
        lines.append(
            dumps(
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
                    "finding_span_ids": [f.span_id for f in findings],
                    "finding_types": [f.type for f in findings],
                    "finding_span_names": [f.span_name for f in findings],
                    "finding_agents": f_agents,
                    "finding_messages": [f.message for f in findings],
                    "retention_days": retention_days,
                    "judged_at": now,
                    "judged_version": version,
                }
            )
        )
    lines.append(b"")
    return b"\n".join(lines)


@dataclass
class ChunkResult:
    rows: bytes
    traces: int = 0
    spans: int = 0
    findings: int = 0
    agents: set[str] = field(default_factory=set)


def judge_chunk(
    raw_spans: bytes,
    raw_usage: bytes,
    contracts: Mapping[str, Any],
    *,
    project_id: int,
    retention_days: int,
    version: int,
    now: int,
) -> ChunkResult:
    """Parse, judge and encode one chunk (whole sessions). Runs in-process or in a worker."""
    spans = spans_from_raw(raw_spans)
    verdicts = judge(spans, parse_contracts(contracts))
    rows = judgement_rows(
        project_id=project_id,
        verdicts=verdicts,
        usage=usage_from_raw(raw_usage),
        retention_days=retention_days,
        version=version,
        now=now,
    )
    return ChunkResult(
        rows=rows if verdicts else b"",
        traces=len(verdicts),
        spans=len(spans),
        findings=sum(len(v.findings) for v in verdicts),
        agents={v.root.agent for v in verdicts},
    )
