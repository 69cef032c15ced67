"""Reads of the span store: traces, a trace's spans, sessions, usage. Every query is tenant-scoped
through ``ch_select`` (project id required and bound)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from django.core.cache import cache

from apps.ingest.native import inherit_sessions, resolve_invoke_agent
from kriyplatform.clickhouse.client import ch_select
from kriyplatform.errors import AppError, NotFound

OUTCOMES = ("failed", "defective", "clean")
OUTCOME_RANK = {"clean": 0, "defective": 1, "failed": 2}
MAX_PAGE = 500


def rfc3339(ns: int) -> str:
    s, n = divmod(int(ns), 1_000_000_000)
    base = datetime.fromtimestamp(s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{n:09d}Z" if n else f"{base}Z"


def worst_outcome(outcomes: list[str | None]) -> str | None:
    known = [o for o in outcomes if o]
    if not known:
        return None
    return max(known, key=OUTCOME_RANK.__getitem__)


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(start_ns: int, trace_id: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([start_ns, trace_id])).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start_ns, trace_id = orjson.loads(raw)
        if type(start_ns) is not int or type(trace_id) is not str or len(trace_id) > 64:
            raise ValueError
        return start_ns, trace_id
    except (ValueError, TypeError, orjson.JSONDecodeError) as exc:
        raise AppError(
            "cursor: not a cursor this API returned; start again without it", field="cursor"
        ) from exc


# --- trace list -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceFilters:
    agent: str | None = None
    session_id: str | None = None
    outcome: str | None = None
    since_ns: int | None = None
    until_ns: int | None = None
    q: str | None = None
    limit: int = 50
    cursor: str | None = None


def traces_list(
    *, project_id: int, filters: TraceFilters
) -> tuple[list[dict[str, Any]], str | None]:
    """Judged traces newest first (by root start), with the next page's cursor or None.

    The list is the judge's trace index: a trace appears once its root has arrived and the judge
    has passed (seconds later); until then its spans are readable by id.
    """
    limit = filters.limit
    if not 1 <= limit <= MAX_PAGE:
        raise AppError(f"limit: must be between 1 and {MAX_PAGE}", field="limit")
    if filters.outcome is not None and filters.outcome not in OUTCOMES:
        raise AppError("outcome: must be failed, defective or clean", field="outcome")
    where = ["project_id = {project_id:UInt64}"]
    params: dict[str, Any] = {"limit": limit + 1}
    for name, value, cond in (
        ("agent", filters.agent, "agent = {agent:String}"),
        ("session_id", filters.session_id, "session_id = {session_id:String}"),
        ("outcome", filters.outcome, "outcome = {outcome:String}"),
        ("since", filters.since_ns, "start_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')"),
        ("until", filters.until_ns, "start_time < fromUnixTimestamp64Nano({until:Int64}, 'UTC')"),
        (
            "q",
            filters.q,
            "(positionCaseInsensitiveUTF8(name, {q:String}) > 0 OR positionCaseInsensitiveUTF8(agent, {q:String}) > 0)",
        ),
    ):
        if value is not None and value != "":
            where.append(cond)
            params[name] = value
    if filters.cursor:
        c_start, c_trace = decode_cursor(filters.cursor)
        where.append(
            "(toUnixTimestamp64Nano(start_time), trace_id) < ({c_start:Int64}, {c_trace:String})"
        )
        params["c_start"], params["c_trace"] = c_start, c_trace
    rows = ch_select(
        f"""SELECT {TRACE_FIELDS}
        FROM {{db}}.trace_judgements FINAL
        WHERE {" AND ".join(where)}
        ORDER BY start_time DESC, trace_id DESC LIMIT {{limit:UInt32}}""",
        project_id=project_id,
        params=params,
    )
    page = rows[:limit]
    nxt = encode_cursor(page[-1]["start_ns"], page[-1]["trace_id"]) if len(rows) > limit else None
    return [trace_item(r) for r in page], nxt


TRACE_FIELDS = """trace_id, agent, session_id, name, toUnixTimestamp64Nano(start_time) AS start_ns, duration_ns,
    status, outcome, length(finding_types) AS finding_count"""


def trace_item(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "trace_id": r["trace_id"],
        "agent": r["agent"],
        "session_id": r["session_id"] or None,
        "name": r["name"],
        "start_time": rfc3339(r["start_ns"]),
        "duration_ms": round(r["duration_ns"] / 1e6, 3),
        "status": r["status"],
        "outcome": r["outcome"],
        "finding_count": r["finding_count"],
    }


# --- one trace ----------------------------------------------------------------------------------

SPAN_FIELDS = """trace_id, span_id, parent_span_id, session_id, agent, name, kind,
    toUnixTimestamp64Nano(start_time) AS start_ns, toUnixTimestamp64Nano(end_time) AS end_ns,
    status, status_message, input, output, attributes, events, model, provider, tokens_in, tokens_out, cost_usd,
    invoke_agent"""


def _loads(text: str, default: Any) -> Any:
    if not text:
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def span_out(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "trace_id": r["trace_id"],
        "span_id": r["span_id"],
        "parent_span_id": r["parent_span_id"] or None,
        "session_id": r["session_id"] or None,
        "agent": r["agent"],
        "name": r["name"],
        "kind": r["kind"],
        "start_time": rfc3339(r["start_ns"]),
        "end_time": rfc3339(r["end_ns"]),
        "duration_ms": round((r["end_ns"] - r["start_ns"]) / 1e6, 3),
        "status": r["status"],
        "status_message": r["status_message"] or None,
        "input": _loads(r["input"], None),
        "output": _loads(r["output"], None),
        "attributes": _loads(r["attributes"], {}),
        "events": [
            {**e, "time": rfc3339(e["time"]) if isinstance(e.get("time"), int) else e.get("time")}
            for e in _loads(r["events"], [])
        ],
        "model": r["model"] or None,
        "provider": r["provider"] or None,
        "tokens_in": r["tokens_in"],
        "tokens_out": r["tokens_out"],
        "cost_usd": r["cost_usd"],
    }


def trace_spans(*, project_id: int, trace_id: str) -> list[dict[str, Any]]:
    return ch_select(
        f"""SELECT {SPAN_FIELDS} FROM {{db}}.spans FINAL
        WHERE project_id = {{project_id:UInt64}} AND trace_id = {{trace_id:String}}
        ORDER BY start_time, span_id""",
        project_id=project_id,
        params={"trace_id": trace_id},
    )


def trace_judgement(*, project_id: int, trace_id: str) -> dict[str, Any] | None:
    rows = ch_select(
        """SELECT outcome, finding_span_ids, finding_types, finding_messages, finding_span_names, finding_agents, session_id
        FROM {db}.trace_judgements FINAL
        WHERE project_id = {project_id:UInt64} AND trace_id = {trace_id:String}""",
        project_id=project_id,
        params={"trace_id": trace_id},
    )
    return rows[0] if rows else None


def findings_of(judgement: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not judgement:
        return []
    return [
        {"span_id": s, "type": t, "message": m, "span_name": n}
        for s, t, m, n in zip(
            judgement["finding_span_ids"],
            judgement["finding_types"],
            judgement["finding_messages"],
            judgement["finding_span_names"],
            strict=False,
        )
    ]


def trace_get(*, project_id: int, trace_id: str) -> dict[str, Any]:
    if len(trace_id) != 32:
        raise NotFound("trace not found")
    rows = trace_spans(project_id=project_id, trace_id=trace_id.lower())
    if not rows:
        raise NotFound("trace not found")
    # spans.md §4: a span without a session takes its trace's (its root's). Ingest fills it in
    # when the root comes in the same request; an exporter that sends each span as it ends
    # sends children first, so the rest is filled in here.
    inherit_sessions(rows)
    resolve_invoke_agent(rows)
    judgement = trace_judgement(project_id=project_id, trace_id=trace_id.lower())
    return {
        "trace_id": trace_id.lower(),
        "outcome": judgement["outcome"] if judgement else None,
        "spans": [span_out(r) for r in rows],
        "findings": [
            {k: f[k] for k in ("span_id", "type", "message")} for f in findings_of(judgement)
        ],
    }


# --- sessions -------------------------------------------------------------------------------------


def session_get(*, project_id: int, session_id: str) -> dict[str, Any]:
    if not session_id or len(session_id) > 256:
        raise NotFound("session not found")
    rows = ch_select(
        f"""SELECT {TRACE_FIELDS}
        FROM {{db}}.trace_judgements FINAL
        WHERE project_id = {{project_id:UInt64}} AND session_id = {{session_id:String}}
        ORDER BY start_time, trace_id""",
        project_id=project_id,
        params={"session_id": session_id},
    )
    if not rows:
        raise NotFound("session not found")
    traces = [trace_item(r) for r in rows]
    return {
        "session_id": session_id,
        "outcome": worst_outcome([t["outcome"] for t in traces]),
        "traces": traces,
    }


def sessions_list(
    *,
    project_id: int,
    agent: str | None = None,
    outcome: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Recent sessions with their trace counts, agents, time span and worst outcome."""
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    extra = having = ""
    if agent:
        extra = " AND agent = {agent:String}"
        params["agent"] = agent
    if outcome:
        having = " HAVING worst = {outcome:String}"
        params["outcome"] = outcome
    return ch_select(
        f"""SELECT session_id, count() AS traces, groupUniqArray(agent) AS agents,
               toUnixTimestamp64Nano(min(start_time)) AS first_ns, toUnixTimestamp64Nano(max(start_time)) AS last_ns,
               multiIf(countIf(outcome = 'failed') > 0, 'failed', countIf(outcome = 'defective') > 0, 'defective', 'clean') AS worst
        FROM {{db}}.trace_judgements FINAL
        WHERE project_id = {{project_id:UInt64}} AND session_id != ''{extra}
        GROUP BY session_id{having}
        ORDER BY last_ns DESC, session_id LIMIT {{limit:UInt32}} OFFSET {{offset:UInt32}}""",
        project_id=project_id,
        params=params,
    )


# --- usage ------------------------------------------------------------------------------------------


def _month_start() -> str:
    now = datetime.now(UTC)
    return f"{now.year:04d}-{now.month:02d}-01"


def project_month_ingested(*, project_id: int) -> int:
    """Distinct spans that arrived this month (a re-send within the month counts once)."""
    rows = ch_select(
        """SELECT uniqExact(trace_id, span_id) AS n FROM {db}.spans
        WHERE project_id = {project_id:UInt64} AND ingested_at >= toDateTime({month:String}, 'UTC')""",
        project_id=project_id,
        params={"month": _month_start()},
    )
    return int(rows[0]["n"]) if rows else 0


def usage_get(*, project_id: int, organization: Any) -> dict[str, Any]:
    counts = ch_select(
        """SELECT count() AS spans, uniqExact(trace_id) AS traces, uniqExactIf(session_id, session_id != '') AS sessions
        FROM {db}.spans FINAL WHERE project_id = {project_id:UInt64}""",
        project_id=project_id,
    )[0]
    return {
        "spans": int(counts["spans"]),
        "traces": int(counts["traces"]),
        "sessions": int(counts["sessions"]),
        "month": {
            "start": _month_start(),
            "ingested_spans": project_month_ingested(project_id=project_id),
            "organization_ingested_spans": org_month_usage(organization.pk),
            "quota": organization.monthly_span_quota,
        },
    }


def _usage_key(org_id: int) -> str:
    return f"kriy:org-usage:{org_id}:{_month_start()}"


def org_month_usage(organization_id: int) -> int:
    """Spans the organization ingested this month: cached a minute, bumped by each insert."""
    key = _usage_key(organization_id)
    value = cache.get(key)
    if value is None:
        from apps.orgs.models import Project

        value = sum(
            project_month_ingested(project_id=pid)
            for pid in Project.objects.filter(organization_id=organization_id).values_list(
                "pk", flat=True
            )
        )
        cache.add(key, value, 60)
    return int(value)


def note_ingested(organization_id: int, n: int) -> None:
    try:
        cache.incr(_usage_key(organization_id), n)
    except ValueError:
        pass  # not cached yet: the next read counts it from the span store
