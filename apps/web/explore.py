"""Explore pages: traces, trace waterfall, span detail, sessions, issues.

Every view serves the full page, and for HTMX the fragment the client asked to replace (its
``HX-Target``): ``main`` gets the page content (navigation between pages), a list's results
container gets the results, the trace page's side panel gets the span detail. History restores
get the full page, because htmx swaps the whole body with them.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from apps.ingest.native import parse_time
from apps.issues.models import Issue, IssueEvent, IssueStatus
from apps.issues.selectors import issue_daily_counts, issue_occurrences, issues_query
from apps.issues.services import issue_set_status
from apps.orgs.models import Role
from apps.orgs.tenancy import project_page
from apps.spans.api import trace_filters
from apps.spans.selectors import (
    OUTCOMES,
    rfc3339,
    session_get,
    sessions_list,
    trace_get,
    traces_list,
)
from kriyplatform.clickhouse.client import ch_select
from kriyplatform.errors import AppError, NotFound
from kriyplatform.params import choice_param, int_param, str_param, time_param

# What each finding type means, in plain words (spans.md §3), for issue pages and tooltips.
FINDING_TYPES: dict[str, tuple[str, str]] = {
    "swallowed_error": (
        "Swallowed error",
        "A step failed, nothing later retried it successfully, and the run still reported "
        "success. The agent carried on as if the step had worked, so the user got an answer "
        "built on a failure nobody saw.",
    ),
    "partial_result_used": (
        "Partial result used",
        "A step returned an incomplete result (truncated, paginated or partial, marked with "
        "kriy.result.partial) and later steps went on to use it without fetching the rest. "
        "Answers built on half the data look complete but are not.",
    ),
    "retry_reason_lost": (
        "Retry reason lost",
        "A step was retried after an earlier attempt failed, but the retry did not carry why "
        "(kriy.retry.reason is empty). The retry repeats the same call blind, and the failure "
        "that caused it disappears from the record.",
    ),
    "handoff_constraint_dropped": (
        "Handoff constraint dropped",
        "An agent handed work to another agent and some constraint in force for it (a budget, "
        "a region, a policy in kriy.constraints) did not travel with the handoff. The receiving "
        "agent can act outside limits it never heard of.",
    ),
    "context_missing": (
        "Context missing",
        "A step declared the context fields it needs (kriy.context.required) but ran without "
        "some of them (kriy.context.present) and did not fail. It guessed or used defaults "
        "instead of the customer's real data.",
    ),
    "stale_state": (
        "Stale state read",
        "A step read a piece of shared state (kriy.state.key) at a version older than one "
        "already written earlier in the same session. It acted on outdated data, for example "
        "an account balance from before the last update.",
    ),
    "tool_loop": (
        "Tool loop",
        "The same tool was called three or more times in one run with exactly the same input. "
        "The agent is looping instead of making progress, spending time and money on answers "
        "it already has.",
    ),
    "required_step_skipped": (
        "Required step skipped",
        "The run completed without a step that the agent's contract requires (for example "
        "a verification step). Configure required steps per agent under Agent contracts.",
    ),
    "latency_slo_breach": (
        "Latency SLO breach",
        "The run took longer than the latency objective in the agent's contract. It may have "
        "succeeded, but too late for the user who was waiting.",
    ),
}

SESSION_PAGE = 50
ISSUE_PAGE = 50
WF_WIDTH = 1000  # SVG user units of a waterfall track; bars are placed in these units
MAX_WF_ROWS = 2000  # a page beyond this many rows stops being readable (and fast)
MAX_DEPTH_CLASS = 12  # indent classes d0…d12 exist in explore.css; deeper spans show the depth
CHART_DAYS = 56


# --- rendering ------------------------------------------------------------------------------------


def _is_fragment(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _render(
    request: HttpRequest,
    template: str,
    ctx: dict[str, Any],
    *,
    fragment: str = "content",
    status: int = 200,
) -> HttpResponse:
    """The full page, or for HTMX the partial that the target asked for."""
    ctx = {**_slugs(request), **ctx}
    if not _is_fragment(request):
        resp = render(request, template, ctx, status=status)
    else:
        name = "content" if request.htmx.target == "main" else fragment
        ctx["htmx_nav"] = name == "content"
        # htmx 2 does not swap 4xx responses by default: a refused filter is shown in place.
        resp = render(request, f"{template}#{name}", ctx, status=200 if status == 400 else status)
        if name == "results":
            # A filter form sends every field: push the address without the empty ones.
            query = urlencode([(k, v) for k, vs in request.GET.lists() for v in vs if v])
            resp["HX-Push-Url"] = request.path + (f"?{query}" if query else "")
    # The same URL answers a page or a fragment: caches must keep them apart.
    patch_vary_headers(resp, ("HX-Request", "HX-Target"))
    return resp


def _slugs(request: HttpRequest) -> dict[str, str]:
    # Partials render on their own, outside any {% with %} of the page: give them the slugs.
    t = request.tenant
    return {"o": t.organization.slug, "p": t.project.slug}


def _query_without(request: HttpRequest, *drop: str, **set_: Any) -> str:
    """The current query string with some parameters dropped or replaced."""
    q = request.GET.copy()
    for name in drop:
        q.pop(name, None)
    for name, value in set_.items():
        q[name] = str(value)
    encoded = q.urlencode()
    return f"?{encoded}" if encoded else "?"


def _ns(value: str) -> int:
    ns, err = parse_time(value, "time")
    return ns if err is None and ns is not None else 0


def _as_local_input(raw: str | None) -> str:
    """A since/until value as a datetime-local input value (UTC, seconds precision)."""
    if not raw:
        return ""
    try:
        ns = time_param({"t": raw}, "t")
    except AppError:
        return ""
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


# --- span-store reads that only these pages need ---------------------------------------------------


def project_trace_agents(*, project_id: int) -> list[str]:
    """Agents that own judged traces of the project, for the filter selects."""
    rows = ch_select(
        """SELECT DISTINCT agent FROM {db}.trace_judgements
        WHERE project_id = {project_id:UInt64} ORDER BY agent LIMIT 500""",
        project_id=project_id,
    )
    return [r["agent"] for r in rows]


def project_has_traces(*, project_id: int) -> bool:
    rows = ch_select(
        "SELECT 1 AS x FROM {db}.trace_judgements WHERE project_id = {project_id:UInt64} LIMIT 1",
        project_id=project_id,
    )
    return bool(rows)


def project_has_spans(*, project_id: int) -> bool:
    rows = ch_select(
        "SELECT 1 AS x FROM {db}.spans WHERE project_id = {project_id:UInt64} LIMIT 1",
        project_id=project_id,
    )
    return bool(rows)


def session_state_ops(
    *, project_id: int, session_id: str, limit: int = 500
) -> list[dict[str, Any]]:
    """Reads and writes of shared state (``kriy.state.*``) in the traces of a session, in time
    order, each read flagged when the judge found it stale and annotated with the newest version
    written (and finished) before it started.

    Spans are found through the session's traces, not their own ``session_id``: a child span
    usually carries no session and takes its trace's (spans.md §3).
    """
    rows = ch_select(
        """SELECT trace_id, span_id, name, agent,
               toUnixTimestamp64Nano(start_time) AS start_ns, toUnixTimestamp64Nano(end_time) AS end_ns,
               state_key, state_op, state_version
        FROM {db}.spans FINAL
        WHERE project_id = {project_id:UInt64} AND (state_op != '' OR state_key != '')
          AND trace_id IN (
            SELECT trace_id FROM {db}.trace_judgements FINAL
            WHERE project_id = {project_id:UInt64} AND session_id = {session_id:String})
        ORDER BY start_time, span_id LIMIT {limit:UInt32}""",
        project_id=project_id,
        params={"session_id": session_id, "limit": limit},
    )
    stale = {
        (r["trace_id"], r["span_id"]): r["message"]
        for r in ch_select(
            """SELECT trace_id, sid AS span_id, msg AS message
            FROM {db}.trace_judgements FINAL
            ARRAY JOIN finding_span_ids AS sid, finding_types AS t, finding_messages AS msg
            WHERE project_id = {project_id:UInt64} AND session_id = {session_id:String}
              AND t = 'stale_state'""",
            project_id=project_id,
            params={"session_id": session_id},
        )
    }
    out = []
    for r in rows:
        newer = None
        if r["state_op"] == "read" and r["state_version"] is not None:
            written = [
                w["state_version"]
                for w in rows
                if w["state_op"] == "write"
                and w["state_key"] == r["state_key"]
                and w["state_version"] is not None
                and w["end_ns"] <= r["start_ns"]
            ]
            if written and max(written) > r["state_version"]:
                newer = max(written)
        out.append(
            {
                "trace_id": r["trace_id"],
                "span_id": r["span_id"],
                "name": r["name"],
                "agent": r["agent"],
                "time": rfc3339(r["start_ns"]),
                "key": r["state_key"],
                "op": r["state_op"],
                "version": r["state_version"],
                "newer_version": newer,
                "stale_message": stale.get((r["trace_id"], r["span_id"])),
            }
        )
    return out


# --- traces ------------------------------------------------------------------------------------------

TRACE_FILTERS = ("agent", "outcome", "session_id", "since", "until", "q")


def _first_span_snippets(request: HttpRequest) -> dict[str, str]:
    """A ready-to-run curl that sends one root span stamped now, with fresh ids."""
    host = request.build_absolute_uri("/").rstrip("/")
    now_ns = time.time_ns()
    return {
        "host": host,
        "trace_id": secrets.token_hex(16),
        "span_id": secrets.token_hex(8),
        "start": rfc3339(now_ns - 2_000_000_000),
        "end": rfc3339(now_ns),
    }


@project_page()
@require_GET
def traces(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    p = request.GET
    error: AppError | None = None
    items: list[dict[str, Any]] = []
    next_cursor = None
    try:
        filters = trace_filters(p)
        items, next_cursor = traces_list(project_id=t.project_id, filters=filters)
    except AppError as exc:
        error = exc
    active = any(p.get(name) for name in TRACE_FILTERS)
    has_traces = bool(items) or project_has_traces(project_id=t.project_id)
    agents = project_trace_agents(project_id=t.project_id) if has_traces else []
    if p.get("agent") and p["agent"] not in agents:
        agents.append(p["agent"])  # keep the chosen value visible in the select
    ctx: dict[str, Any] = {
        "traces": items,
        "error": error,
        "active": active,
        "has_traces": has_traces,
        "spans_waiting": not has_traces and project_has_spans(project_id=t.project_id),
        "agents": agents,
        "outcomes": OUTCOMES,
        "f": {name: p.get(name, "") for name in TRACE_FILTERS},
        "since_input": _as_local_input(p.get("since")),
        "until_input": _as_local_input(p.get("until")),
        "cursor": p.get("cursor", ""),
        "next_url": _query_without(request, cursor=next_cursor) if next_cursor else None,
        "first_url": _query_without(request, "cursor") if p.get("cursor") else None,
        "clear_url": request.path,
    }
    if not has_traces:
        ctx["snippet"] = _first_span_snippets(request)
    return _render(
        request,
        "web/explore/traces.html",
        ctx,
        fragment="results",
        status=400 if error else 200,
    )


def _trace_or_404(project_id: int, trace_id: str) -> dict[str, Any]:
    try:
        return trace_get(project_id=project_id, trace_id=trace_id)
    except NotFound as exc:
        raise Http404("trace not found") from exc


def waterfall(spans: list[dict[str, Any]], findings: list[dict[str, Any]]) -> dict[str, Any]:
    """Spans as a tree for the waterfall: parents before children, siblings by start time.

    Each row has its depth and its bar in track units (0…WF_WIDTH) relative to the trace's
    start and duration. Spans whose parent has not arrived (or whose parents form a cycle) are
    returned separately, each with its own subtree.
    """
    if not spans:
        return {"rows": [], "orphans": [], "hidden": 0, "shown": 0, "total_ms": 0, "ticks": []}
    starts = {s["span_id"]: _ns(s["start_time"]) for s in spans}
    ends = {s["span_id"]: _ns(s["end_time"]) for s in spans}
    t0 = min(starts.values())
    t1 = max(max(ends.values()), t0)
    total = max(t1 - t0, 1)
    by_id = {s["span_id"]: s for s in spans}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    tops, orphans = [], []
    for s in spans:
        parent = s["parent_span_id"]
        if parent is None:
            tops.append(s)
        elif parent in by_id and parent != s["span_id"]:
            children[parent].append(s)
        else:
            orphans.append(s)
    marks: dict[str, list[str]] = defaultdict(list)
    for f in findings:
        marks[f["span_id"]].append(f["type"])

    def order(s: dict[str, Any]) -> tuple[int, str]:
        return starts[s["span_id"]], s["span_id"]

    seen: set[str] = set()

    def walk(roots: list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
        stack = [(s, 0) for s in sorted(roots, key=order, reverse=True)]
        while stack:
            s, depth = stack.pop()
            sid = s["span_id"]
            if sid in seen:
                continue
            seen.add(sid)
            start, end = starts[sid], max(ends[sid], starts[sid])
            width = max((end - start) / total * WF_WIDTH, 2.0)
            x = min((start - t0) / total * WF_WIDTH, WF_WIDTH - width)
            out.append(
                {
                    "span": s,
                    "depth": depth,
                    "depth_class": min(depth, MAX_DEPTH_CLASS),
                    "x": round(max(x, 0.0), 2),
                    "width": round(width, 2),
                    "offset_ms": round((start - t0) / 1e6, 3),
                    "findings": marks.get(sid, []),
                }
            )
            for c in sorted(children.get(sid, []), key=order, reverse=True):
                stack.append((c, depth + 1))

    rows: list[dict[str, Any]] = []
    lost: list[dict[str, Any]] = []
    walk(tops, rows)
    walk(orphans, lost)
    walk([s for s in spans if s["span_id"] not in seen], lost)  # parent cycles
    total_ms = total / 1e6
    hidden = max(len(rows) + len(lost) - MAX_WF_ROWS, 0)
    if hidden:
        rows = rows[:MAX_WF_ROWS]
        lost = lost[: max(MAX_WF_ROWS - len(rows), 0)]
    return {
        "rows": rows,
        "orphans": lost,
        "hidden": hidden,
        "shown": len(rows) + len(lost),
        "total_ms": total_ms,
        "ticks": [total_ms * k / 4 for k in range(5)],
    }


def _trace_summary(data: dict[str, Any]) -> dict[str, Any]:
    spans = data["spans"]
    roots = [s for s in spans if s["parent_span_id"] is None]
    root = roots[0] if roots else None
    head = root or min(spans, key=lambda s: (_ns(s["start_time"]), s["span_id"]))
    llm = [s for s in spans if s["kind"] == "llm"]
    tokens_in = sum(s["tokens_in"] or 0 for s in llm)
    tokens_out = sum(s["tokens_out"] or 0 for s in llm)
    cost = sum(s["cost_usd"] or 0 for s in llm)
    starts = [_ns(s["start_time"]) for s in spans]
    ends = [_ns(s["end_time"]) for s in spans]
    return {
        "root": root,
        "head": head,
        "session_id": head["session_id"],
        "span_count": len(spans),
        "error_count": sum(1 for s in spans if s["status"] == "error"),
        "agents": sorted({s["agent"] for s in spans}),
        "duration_ms": (head["duration_ms"] if root else round((max(ends) - min(starts)) / 1e6, 3)),
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "cost_usd": cost,
        "has_usage": bool(tokens_in or tokens_out or cost),
    }


@project_page()
@require_GET
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    t = request.tenant
    data = _trace_or_404(t.project_id, trace_id)
    names = {s["span_id"]: s["name"] for s in data["spans"]}
    findings = [
        {
            **f,
            "span_name": names.get(f["span_id"], ""),
            "title": FINDING_TYPES.get(f["type"], (f["type"], ""))[0],
        }
        for f in data["findings"]
    ]
    summary = _trace_summary(data)
    # The side panel opens on the first span with a finding, else the root.
    first = next((s for s in data["spans"] if s["span_id"] == _first_finding_span(findings)), None)
    selected = first or summary["head"]
    ctx = {
        "trace": data,
        "findings": findings,
        "summary": summary,
        "wf": waterfall(data["spans"], data["findings"]),
        **_span_ctx(data, selected),
        "in_panel": True,
    }
    return _render(request, "web/explore/trace.html", ctx, fragment="content")


def _first_finding_span(findings: list[dict[str, Any]]) -> str | None:
    return findings[0]["span_id"] if findings else None


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _span_ctx(data: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    attrs = _as_dict(s["attributes"])
    parent = next((x for x in data["spans"] if x["span_id"] == s["parent_span_id"]), None)
    return {
        "trace_id": data["trace_id"],
        "trace_outcome": data["outcome"],
        "span": s,
        "parent": parent,
        "parent_missing": s["parent_span_id"] is not None and parent is None,
        "children": [x for x in data["spans"] if x["parent_span_id"] == s["span_id"]],
        "span_findings": [
            {**f, "title": FINDING_TYPES.get(f["type"], (f["type"], ""))[0]}
            for f in data["findings"]
            if f["span_id"] == s["span_id"]
        ],
        "attributes": [
            {"key": k, "value": attrs[k], "kriy": k.startswith("kriy.")} for k in sorted(attrs)
        ],
        # Pairs, not dicts: a user attribute named "items" would shadow dict.items in templates.
        "events": [
            {
                "name": e.get("name", ""),
                "time": e.get("time"),
                "attributes": [
                    {"key": k, "value": v} for k, v in sorted(_as_dict(e.get("attributes")).items())
                ],
            }
            for e in (s["events"] or [])
            if isinstance(e, dict)
        ],
    }


@project_page()
@require_GET
def span(request: HttpRequest, trace_id: str, span_id: str) -> HttpResponse:
    t = request.tenant
    data = _trace_or_404(t.project_id, trace_id)
    s = next((x for x in data["spans"] if x["span_id"] == span_id.lower()), None)
    if s is None:
        raise Http404("span not found")
    ctx = _span_ctx(data, s)
    ctx["in_panel"] = _is_fragment(request) and request.htmx.target != "main"
    return _render(request, "web/explore/span.html", ctx, fragment="panel")


# --- sessions ----------------------------------------------------------------------------------------


@project_page()
@require_GET
def sessions(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    p = request.GET
    error: AppError | None = None
    rows: list[dict[str, Any]] = []
    offset = 0
    try:
        agent = str_param(p, "agent", 128)
        outcome = choice_param(p, "outcome", OUTCOMES)
        offset = int_param(p, "offset", 0, 0, 1_000_000)
        rows = sessions_list(
            project_id=t.project_id,
            agent=agent,
            outcome=outcome,
            limit=SESSION_PAGE + 1,
            offset=offset,
        )
    except AppError as exc:
        error = exc
    active = bool(p.get("agent") or p.get("outcome"))
    items = [
        {
            "session_id": r["session_id"],
            "traces": int(r["traces"]),
            "agents": sorted(r["agents"]),
            "first": rfc3339(r["first_ns"]),
            "last": rfc3339(r["last_ns"]),
            "outcome": r["worst"],
        }
        for r in rows[:SESSION_PAGE]
    ]
    has_traces = bool(items) or project_has_traces(project_id=t.project_id)
    agents = project_trace_agents(project_id=t.project_id) if has_traces else []
    if p.get("agent") and p["agent"] not in agents:
        agents.append(p["agent"])
    ctx = {
        "sessions": items,
        "error": error,
        "active": active,
        "has_traces": has_traces,
        "agents": agents,
        "outcomes": OUTCOMES,
        "f": {"agent": p.get("agent", ""), "outcome": p.get("outcome", "")},
        "offset": offset,
        "range_end": offset + len(items),
        "next_url": (
            _query_without(request, offset=offset + SESSION_PAGE)
            if len(rows) > SESSION_PAGE
            else None
        ),
        "prev_url": (
            _query_without(request, offset=max(offset - SESSION_PAGE, 0)) if offset else None
        ),
        "clear_url": request.path,
    }
    return _render(
        request,
        "web/explore/sessions.html",
        ctx,
        fragment="results",
        status=400 if error else 200,
    )


@project_page()
@require_GET
def session(request: HttpRequest, session_id: str) -> HttpResponse:
    t = request.tenant
    try:
        data = session_get(project_id=t.project_id, session_id=session_id)
    except NotFound as exc:
        raise Http404("session not found") from exc
    traces_ = data["traces"]
    counts = Counter(tr["outcome"] for tr in traces_)
    last = traces_[-1]
    end_ns = _ns(last["start_time"]) + int(last["duration_ms"] * 1e6)
    ctx = {
        "session": data,
        "traces": traces_,
        "counts": {o: counts.get(o, 0) for o in OUTCOMES},
        "agents": sorted({tr["agent"] for tr in traces_}),
        "findings_total": sum(tr["finding_count"] for tr in traces_),
        "first": traces_[0]["start_time"],
        "span_ms": max(end_ns - _ns(traces_[0]["start_time"]), 0) / 1e6,
        "state_ops": session_state_ops(project_id=t.project_id, session_id=session_id),
    }
    return _render(request, "web/explore/session.html", ctx, fragment="content")


# --- issues ------------------------------------------------------------------------------------------

UNRESOLVED = (IssueStatus.OPEN, IssueStatus.REGRESSED)
ISSUE_TABS = (
    ("", "Open + regressed"),
    ("open", "Open"),
    ("regressed", "Regressed"),
    ("resolved", "Resolved"),
    ("ignored", "Ignored"),
    ("all", "All"),
)


@project_page()
@require_GET
def issues(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    p = request.GET
    error: AppError | None = None
    agent = type_ = status = None
    offset = 0
    try:
        agent = str_param(p, "agent", 128)
        type_ = str_param(p, "type", 64)
        status = choice_param(p, "status", tuple(k for k, _ in ISSUE_TABS if k))
        offset = int_param(p, "offset", 0, 0, 1_000_000)
    except AppError as exc:
        error = exc
    base = issues_query(t.scoped(Issue), agent=agent, type=type_)
    by_status: Counter[str] = Counter(
        {r["status"]: r["n"] for r in base.order_by().values("status").annotate(n=Count("id"))}
    )
    if status is None:
        qs = base.filter(status__in=UNRESOLVED)
    elif status == "all":
        qs = base
    else:
        qs = base.filter(status=status)
    page = list(qs[offset : offset + ISSUE_PAGE + 1]) if error is None else []
    tab_counts = {
        "": by_status[IssueStatus.OPEN] + by_status[IssueStatus.REGRESSED],
        "all": sum(by_status.values()),
        **{s: by_status[s] for s in IssueStatus.values},
    }
    scoped = t.scoped(Issue)
    agents = sorted(set(scoped.values_list("agent", flat=True)))
    types = sorted(set(scoped.values_list("type", flat=True)) | set(FINDING_TYPES))
    ctx = {
        "issues": page[:ISSUE_PAGE],
        "error": error,
        "tabs": [
            {
                "key": key,
                "label": label,
                "count": tab_counts[key],
                "url": _query_without(
                    request, "offset", "status", **({"status": key} if key else {})
                ),
                "current": (status or "") == key,
            }
            for key, label in ISSUE_TABS
        ],
        "status": status or "",
        "f": {"agent": p.get("agent", ""), "type": p.get("type", "")},
        "agents": agents,
        "types": [(k, FINDING_TYPES.get(k, (k, ""))[0]) for k in types],
        "any_issues": tab_counts["all"] > 0 or scoped.exists(),
        "filtered": bool(agent or type_),
        "can_triage": t.can(Role.MEMBER),
        "back": request.get_full_path(),
        "next_url": (
            _query_without(request, offset=offset + ISSUE_PAGE) if len(page) > ISSUE_PAGE else None
        ),
        "prev_url": (
            _query_without(request, offset=max(offset - ISSUE_PAGE, 0)) if offset else None
        ),
        "clear_url": request.path + (f"?status={status}" if status else ""),
    }
    return _render(
        request,
        "web/explore/issues.html",
        ctx,
        fragment="results",
        status=400 if error else 200,
    )


def daily_bars(
    rows: list[dict[str, Any]], *, days: int = CHART_DAYS, today: date | None = None
) -> dict[str, Any]:
    """Bars of a per-day count chart in SVG units: one 10-unit slot per day, 100 units tall."""
    today = today or timezone.now().date()
    counts = {str(r["day"]): int(r["n"]) for r in rows}
    start = today - timedelta(days=days - 1)
    series = [
        (start + timedelta(days=i), counts.get((start + timedelta(days=i)).isoformat(), 0))
        for i in range(days)
    ]
    peak = max((n for _, n in series), default=0)
    scale = max(peak, 1)
    bars = []
    for i, (day, n) in enumerate(series):
        h = round(n / scale * 100, 2) if n else 0
        bars.append({"x": i * 10 + 1, "y": round(110 - h, 2), "height": h, "day": day, "n": n})
    return {
        "bars": bars,
        "peak": peak,
        "total": sum(n for _, n in series),
        "width": days * 10,
        "labels": [
            {"x": b["x"] + 4, "day": b["day"], "anchor": a}
            for b, a in ((bars[0], "start"), (bars[days // 2], "middle"), (bars[-1], "end"))
        ],
    }


def _issue_side_ctx(request: HttpRequest, issue: Issue) -> dict[str, Any]:
    t = request.tenant
    return {
        "issue": issue,
        "events": list(t.scoped(IssueEvent).filter(issue_id=issue.pk).order_by("-at", "-id")[:50]),
        "can_triage": t.can(Role.MEMBER),
        "back": request.POST.get("next") if request.method == "POST" else request.get_full_path(),
    }


@project_page()
@require_GET
def issue(request: HttpRequest, issue_id: int) -> HttpResponse:
    t = request.tenant
    obj = t.get(Issue, pk=issue_id)
    title, meaning = FINDING_TYPES.get(obj.type, (obj.type, ""))
    ctx = {
        **_issue_side_ctx(request, obj),
        "type_title": title,
        "meaning": meaning,
        "chart": daily_bars(issue_daily_counts(project_id=t.project_id, issue=obj)),
        "occurrences": [
            {**o, "start_time": rfc3339(o["start_ns"])}
            for o in issue_occurrences(project_id=t.project_id, issue=obj, limit=25)
        ],
    }
    return _render(request, "web/explore/issue.html", ctx, fragment="content")


def _safe_back(request: HttpRequest, fallback: str) -> str:
    nxt = request.POST.get("next", "")
    ok = url_has_allowed_host_and_scheme(
        nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return nxt if nxt and ok and nxt.startswith("/") else fallback


@project_page(min_role=Role.MEMBER)
@require_POST
def issue_status(request: HttpRequest, issue_id: int) -> HttpResponse:
    """Resolve, ignore or reopen. HTMX gets the updated row (or the detail page's status side
    panel); a plain form post goes back where it came from. Viewers get 404 from the decorator."""
    t = request.tenant
    obj = t.get(Issue, pk=issue_id)
    fallback = request.path.rsplit("status/", 1)[0]
    try:
        obj = issue_set_status(issue=obj, action=request.POST.get("action", ""), actor=request.user)
    except AppError as exc:
        if _is_fragment(request):
            return HttpResponse(exc.message, status=400, content_type="text/plain")
        messages.error(request, exc.message)
        return redirect(_safe_back(request, fallback))
    if _is_fragment(request):
        ctx = {**_slugs(request), **_issue_side_ctx(request, obj)}
        if request.POST.get("view") == "detail":
            return render(request, "web/explore/issue.html#side", ctx)
        return render(request, "web/explore/issues.html#issue_row", {**ctx, "i": obj})
    messages.success(request, f"Issue {obj.get_status_display().lower()}: {obj}.")
    return redirect(_safe_back(request, fallback))
