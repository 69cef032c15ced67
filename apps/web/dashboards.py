"""Dashboard pages: project overview, weekly report, agent page, contracts editor.

Each view serves the full page, and for an HTMX request only its fragment (a template partial):
the overview's live region (polled every 30 s), the report and agent bodies (week and range
pickers), and the contracts editor.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods

from apps.detection.models import AgentContract
from apps.detection.services import contracts_document, contracts_put
from apps.issues.models import Issue, IssueStatus
from apps.issues.selectors import issues_query
from apps.metrics.models import AgentRollup
from apps.metrics.selectors import agent_weeks, project_agents, project_summary, weekly_report
from apps.metrics.services import monday
from apps.orgs.models import Role
from apps.orgs.tenancy import project_page
from apps.spans.selectors import TraceFilters, traces_list
from apps.web.templatetags.charts import anchor
from kriyplatform.errors import AppError

WEEKS = 12
AGENT_RANGES = (4, 12, 26, 52)
OPEN_STATUSES = (IssueStatus.OPEN, IssueStatus.REGRESSED)
# The empty overview's waiting line polls with this element id; its answer is a refresh or 204.
WAITER_ID = "first-span-wait"


def _page(
    request: HttpRequest, template: str, fragment: str, ctx: dict[str, Any], status: int = 200
) -> HttpResponse:
    # A history restore (back button, with no history cache) needs the whole page.
    htmx = request.htmx and not request.htmx.history_restore_request
    response = render(request, f"{template}#{fragment}" if htmx else template, ctx, status=status)
    # the same URL answers a page or a fragment: caches must keep them apart
    patch_vary_headers(response, ("HX-Request",))
    return response


def _this_monday() -> date:
    return monday(datetime.now(UTC).date())


def _slugs(request: HttpRequest) -> dict[str, str]:
    t = request.tenant  # type: ignore[attr-defined]
    return {"o": t.organization.slug, "p": t.project.slug}


# --- overview --------------------------------------------------------------------------------


@project_page()
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    t = request.tenant  # type: ignore[attr-defined]
    summary = project_summary(project_id=t.project_id, weeks=WEEKS)
    if request.htmx and request.htmx.trigger == WAITER_ID:
        # The empty state waits for the first numbers: reload the page once they exist.
        if summary:
            return HttpResponse(headers={"HX-Refresh": "true"})
        return HttpResponse(status=204)
    week = _this_monday()
    ctx: dict[str, Any] = {
        **_slugs(request),
        "summary": summary,
        "week_start": week,
        "now": datetime.now(UTC),
        "waiter_id": WAITER_ID,
    }
    if summary:
        ctx["headline"] = weekly_report(project_id=t.project_id, week_start=week)["headline"]
        ctx["open_total"] = sum(a["open_issues"] for a in summary)
    else:
        ctx["ever"] = bool(project_agents(project_id=t.project_id))
        ctx["host"] = request.build_absolute_uri("/").rstrip("/")
        # "now", so that the example span lands in this week's numbers
        start = datetime.now(UTC).replace(microsecond=0)
        ctx["example"] = {
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    return _page(request, "web/dash/overview.html", "live", ctx)


# --- weekly report ---------------------------------------------------------------------------


def week_param(params: Any) -> date | None:
    """``?week=``: any day (YYYY-MM-DD) or an ISO week (YYYY-Www, what <input type=week> sends),
    snapped to its Monday."""
    raw = (params.get("week") or "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        day = None
    if day is None or not 2000 <= day.year <= 2100:
        raise AppError(
            "week: give a day as YYYY-MM-DD or an ISO week as YYYY-Www "
            "(e.g. 2026-03-04 or 2026-W10), between 2000 and 2100",
            field="week",
        )
    return monday(day)


@project_page()
@require_GET
def report(request: HttpRequest) -> HttpResponse:
    t = request.tenant  # type: ignore[attr-defined]
    current = _this_monday()
    status, error = 200, None
    try:
        week = week_param(request.GET) or current
    except AppError as exc:
        # htmx does not swap a 4xx answer, so the picker's fragment carries its error with a 200
        week, error = current, exc
        status = 200 if request.htmx else exc.status_code
    data = weekly_report(project_id=t.project_id, week_start=week)
    iso = week.isocalendar()
    ctx = {
        **_slugs(request),
        "r": data,
        "h": data["headline"],
        "totals": {
            k: sum(a[k] for a in data["agents"]) for k in ("failed", "defective", "findings")
        },
        "week_start": week,
        "week_value": f"{iso.year}-W{iso.week:02d}",
        "prev_week": week - timedelta(weeks=1),
        "next_week": week + timedelta(weeks=1) if week < current else None,
        "is_current": week == current,
        "is_future": week > current,
        "current_week": current,
        "error": error,
    }
    return _page(request, "web/dash/report.html", "report", ctx, status=status)


# --- agent page ------------------------------------------------------------------------------


@project_page()
@require_GET
def agent(request: HttpRequest, agent: str) -> HttpResponse:
    t = request.tenant  # type: ignore[attr-defined]
    seen = (
        t.scoped(AgentRollup).filter(agent=agent).exists()
        or t.scoped(Issue).filter(agent=agent).exists()
    )
    if not seen:
        raise Http404("no such agent")
    raw = request.GET.get("weeks") or str(WEEKS)
    status, error, n = 200, None, WEEKS
    if raw in {str(r) for r in AGENT_RANGES}:
        n = int(raw)
    else:
        status = 200 if request.htmx else 400  # htmx does not swap a 4xx answer
        error = AppError(
            f"weeks: must be one of {', '.join(map(str, AGENT_RANGES))}", field="weeks"
        )
    weeks = agent_weeks(project_id=t.project_id, agent=agent, weeks=n)
    issues = issues_query(t.scoped(Issue), agent=agent).filter(status__in=OPEN_STATUSES)
    failed, more_failed = traces_list(
        project_id=t.project_id, filters=TraceFilters(agent=agent, outcome="failed", limit=10)
    )
    defective, more_defective = traces_list(
        project_id=t.project_id, filters=TraceFilters(agent=agent, outcome="defective", limit=10)
    )
    ctx = {
        **_slugs(request),
        "agent": agent,
        "weeks": weeks,
        "weeks_desc": list(reversed(weeks)),
        "this_week": weeks[-1],
        "last_week": weeks[-2] if len(weeks) > 1 else None,
        "n_weeks": n,
        "ranges": AGENT_RANGES,
        "open_issues": list(issues[:20]),
        "open_count": issues.count(),
        "failed": failed,
        "more_failed": more_failed is not None,
        "defective": defective,
        "more_defective": more_defective is not None,
        "contract": t.scoped(AgentContract).filter(agent=agent).first(),
        "error": error,
    }
    return _page(request, "web/dash/agent.html", "body", ctx, status=status)


# --- contracts editor ------------------------------------------------------------------------

MAX_STEP_LEN = 256
MAX_SLO_MS = 2_147_483_647  # the column is a PositiveIntegerField


class ContractForm(forms.Form):
    agent = forms.CharField(
        label="Agent name",
        max_length=128,
        help_text="Exactly as your spans send it in their agent field.",
        error_messages={"required": "Agent name: enter the agent's name."},
    )
    required_steps = forms.CharField(
        label="Required steps",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="One span name per line. A completed trace without one of them gets a "
        "required_step_skipped finding.",
    )
    latency_slo_ms = forms.IntegerField(
        label="Latency SLO (ms)",
        required=False,
        min_value=0,
        max_value=MAX_SLO_MS,
        help_text="A trace that takes longer gets a latency_slo_breach finding. Empty: no SLO.",
        # text, not type=number: a browser drops a non-number there, hiding what was wrong
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "off"}),
        error_messages={"invalid": "Latency SLO: enter a whole number of milliseconds."},
    )

    def clean_required_steps(self) -> list[str]:
        steps = [s.strip() for s in self.cleaned_data["required_steps"].splitlines()]
        steps = list(dict.fromkeys(s for s in steps if s))
        for s in steps:
            if len(s) > MAX_STEP_LEN:
                raise forms.ValidationError(
                    f"Required steps: {s[:40]!r}… is longer than {MAX_STEP_LEN} characters."
                )
        return steps

    def entry(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cleaned_data["required_steps"]:
            out["required_steps"] = self.cleaned_data["required_steps"]
        if self.cleaned_data["latency_slo_ms"] is not None:
            out["latency_slo_ms"] = self.cleaned_data["latency_slo_ms"]
        return out


class ContractsJsonForm(forms.Form):
    document = forms.CharField(
        label="Contracts as JSON",
        required=False,
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false"}),
        help_text='The --contracts file format: {"agent": {"required_steps": [...], '
        '"latency_slo_ms": 30000}}. Agents left out lose their contract.',
    )

    def clean_document(self) -> Any:
        raw = self.cleaned_data["document"].strip() or "{}"
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc


def _edit_form(agent: str, entry: dict[str, Any], data: Any = None) -> ContractForm:
    initial = {
        "agent": agent,
        "required_steps": "\n".join(entry.get("required_steps", [])),
        "latency_slo_ms": entry.get("latency_slo_ms"),
    }
    form = ContractForm(data, initial=initial, prefix=anchor(agent))
    form.fields["agent"].widget = forms.HiddenInput()
    return form


def _add_form(data: Any = None, agent: str = "") -> ContractForm:
    form = ContractForm(data, initial={"agent": agent}, prefix="add")
    form.fields["agent"].widget.attrs.update({"list": "seen-agents", "autocomplete": "off"})
    return form


def _json_text(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _save(request: HttpRequest, document: dict[str, Any], what: str) -> HttpResponse:
    """Replace the contracts; re-judge the changed agents after commit; back to the editor."""
    t = request.tenant  # type: ignore[attr-defined]
    _doc, changed = contracts_put(project=t.project, document=document, actor=request.user)
    if changed:
        from apps.detection.tasks import rejudge_agents_task

        project_id, agents = t.project_id, sorted(changed)
        transaction.on_commit(lambda: rejudge_agents_task.delay(project_id, agents))
        names = ", ".join(agents)
        messages.success(
            request,
            f"{what} The traces of {names} from the last {settings.KRIY_CONTRACT_REJUDGE_DAYS} "
            "days are being re-judged against it; findings and numbers follow within minutes.",
        )
    else:
        messages.info(request, "Nothing changed.")
    return redirect("web:contracts", t.organization.slug, t.project.slug)


@project_page()
@require_http_methods(["GET", "POST"])
def contracts(request: HttpRequest) -> HttpResponse:
    t = request.tenant  # type: ignore[attr-defined]
    can_edit = t.can(Role.ADMIN)
    if request.method == "POST" and not can_edit:
        raise Http404("not found")
    doc = contracts_document(project_id=t.project_id)
    seen = project_agents(project_id=t.project_id)
    edit_forms = {a: _edit_form(a, e) for a, e in doc.items()}
    add_form = _add_form(agent=request.GET.get("agent", "")[:128])
    json_form = ContractsJsonForm(initial={"document": _json_text(doc)})
    status = 200
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "edit":
                agent = request.POST.get("agent", "")
                if agent not in doc:
                    raise AppError(f"{agent!r} has no contract any more; add it again below.")
                form = _edit_form(agent, doc[agent], request.POST)
                edit_forms[agent] = form
                if form.is_valid():
                    return _save(
                        request, {**doc, agent: form.entry()}, f"Saved the contract of {agent}."
                    )
            elif action == "remove":
                agent = request.POST.get("agent", "")
                rest = {a: e for a, e in doc.items() if a != agent}
                return _save(request, rest, f"Removed the contract of {agent}.")
            elif action == "add":
                form = add_form = _add_form(request.POST)
                if form.is_valid():
                    agent = form.cleaned_data["agent"].strip()
                    if not agent:
                        form.add_error("agent", "Agent name: enter the agent's name.")
                    elif agent in doc:
                        form.add_error("agent", f"{agent} already has a contract: edit it above.")
                    else:
                        return _save(
                            request, {**doc, agent: form.entry()}, f"Added a contract for {agent}."
                        )
            elif action == "json":
                form = json_form = ContractsJsonForm(request.POST)
                if form.is_valid():
                    return _save(request, form.cleaned_data["document"], "Saved the contracts.")
            else:
                raise AppError("action: must be edit, remove, add or json", field="action")
        except AppError as exc:
            # contracts_put validates the whole document before writing: nothing was saved.
            if action == "json":
                json_form.add_error("document", exc.message)
            elif action == "add":
                add_form.add_error(None, exc.message)
            elif action == "edit" and request.POST.get("agent", "") in edit_forms:
                edit_forms[request.POST["agent"]].add_error(None, exc.message)
            else:
                messages.error(request, exc.message)
        status = 400
    rows = []
    for a, entry in doc.items():
        rows.append({"agent": a, "entry": entry, "form": edit_forms[a], "seen": a in seen})
    ctx = {
        **_slugs(request),
        "rows": rows,
        "uncontracted": [a for a in seen if a not in doc],
        "seen_agents": seen,
        "add_form": add_form,
        "json_form": json_form,
        "can_edit": can_edit,
        "rejudge_days": settings.KRIY_CONTRACT_REJUDGE_DAYS,
    }
    return _page(request, "web/dash/contracts.html", "editor", ctx, status=status)
