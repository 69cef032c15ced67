"""Alert rule and notification channel pages (settings/alerts/…).

Every member may read them; only admins may change anything (a change by anyone else answers
404, like everything a member may not reach). Each page serves the whole page, and its
``content`` fragment for htmx requests.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.alerts import selectors, services
from apps.alerts.forms import ChannelForm, RuleForm
from apps.alerts.models import (
    RATE_METRICS,
    AlertEvent,
    AlertRule,
    Comparison,
    Metric,
    NotificationChannel,
)
from apps.metrics.selectors import project_agents
from apps.orgs.models import Role
from apps.orgs.tenancy import project_page
from kriyplatform.errors import AppError


def _fragment(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _page(
    request: HttpRequest, template: str, ctx: dict[str, Any], status: int = 200
) -> HttpResponse:
    ctx.setdefault("can_admin", request.tenant.can(Role.ADMIN))
    name = f"{template}#content" if _fragment(request) else template
    return render(request, name, ctx, status=status)


def _require_admin(request: HttpRequest) -> None:
    if not request.tenant.can(Role.ADMIN):
        raise Http404("not found")


def _slugs(request: HttpRequest) -> tuple[str, str]:
    t = request.tenant
    return t.organization.slug, t.project.slug


def _rows(rules: list[AlertRule]) -> list[dict[str, Any]]:
    return [{"rule": r, "sentence": selectors.rule_sentence(r)} for r in rules]


# --- rules -------------------------------------------------------------------------------------------


@project_page()
@require_GET
def rules(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    rule_list = list(selectors.rules_query(t.scoped(AlertRule)))
    ctx = {
        "rows": _rows(rule_list),
        "firing": sum(1 for r in rule_list if r.state == "firing"),
        "has_channels": t.scoped(NotificationChannel).exists(),
        "tab": "rules",
    }
    return _page(request, "alerts/rules.html", ctx)


def _form_ctx(request: HttpRequest, form: RuleForm, rule: AlertRule | None) -> dict[str, Any]:
    t = request.tenant
    return {
        "form": form,
        "rule": rule,
        "agents": project_agents(project_id=t.project_id),
        "has_channels": t.scoped(NotificationChannel).exists(),
        "preview": _preview_text(form),
        "tab": "rules",
    }


def _preview_text(form: RuleForm) -> str:
    """The sentence of what the form says now (bound or initial), or a hint while incomplete."""
    src = form.data if form.is_bound else form.initial
    metric = src.get("metric") or "issue_rate"
    try:
        threshold = float(src.get("threshold")) if src.get("threshold") not in (None, "") else None
    except (TypeError, ValueError):
        threshold = None
    if threshold is not None and metric in RATE_METRICS and form.is_bound:
        threshold = threshold / 100  # the form takes percentages
    try:
        window = int(src.get("window_seconds") or 3600)
        min_traces = int(src.get("min_traces") or 0)
    except (TypeError, ValueError):
        window, min_traces = 3600, 0
    comparison = src.get("comparison") or ">"
    if comparison not in Comparison.values:
        comparison = ">"
    muted = src.get("muted") in (True, "on", "true", "1")
    return selectors.rule_describe(
        metric=metric if metric in Metric.values else "issue_rate",
        comparison=comparison,
        threshold=threshold,
        window_seconds=window,
        finding_type=str(src.get("finding_type") or "")[:64],
        agent=str(src.get("agent") or "").strip()[:128],
        min_traces=min_traces,
        muted=muted,
    )


@project_page(min_role=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def rule_new(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    form = RuleForm(request.POST or None, project=t.project)
    if request.method == "POST" and form.is_valid():
        try:
            rule = services.rule_create(
                project=t.project, actor=request.user, data=form.service_data()
            )
        except AppError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Rule “{rule.name}” created. It is evaluated every minute.")
            return redirect("alerts:rule", *_slugs(request), rule.pk)
    status = 400 if form.is_bound else 200
    return _page(request, "alerts/rule_form.html", _form_ctx(request, form, None), status)


@project_page(min_role=Role.ADMIN)
@require_GET
def rule_preview(request: HttpRequest) -> HttpResponse:
    """The plain-language preview of the form's values (htmx, while the admin types)."""
    form = RuleForm(request.GET, project=request.tenant.project)
    return render(request, "alerts/rule_form.html#preview", {"preview": _preview_text(form)})


@project_page()
@require_GET
def rule(request: HttpRequest, rule_id: int) -> HttpResponse:
    t = request.tenant
    obj = t.get(selectors.rules_query(t.scoped(AlertRule)), pk=rule_id)
    events = list(selectors.events_query(t.scoped(AlertEvent).filter(rule=obj))[:100])
    ctx = {
        "rule": obj,
        "sentence": selectors.rule_sentence(obj),
        "events": [{"event": e, "summary": selectors.event_summary(e)} for e in events],
        "tab": "rules",
    }
    return _page(request, "alerts/rule_detail.html", ctx)


@project_page(min_role=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, rule_id: int) -> HttpResponse:
    t = request.tenant
    obj = t.get(AlertRule, pk=rule_id)
    form = RuleForm(request.POST or None, project=t.project, rule=obj)
    if request.method == "POST" and form.is_valid():
        try:
            services.rule_update(rule=obj, actor=request.user, data=form.service_data())
        except AppError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Rule “{obj.name}” saved.")
            return redirect("alerts:rule", *_slugs(request), obj.pk)
    status = 400 if form.is_bound else 200
    return _page(request, "alerts/rule_form.html", _form_ctx(request, form, obj), status)


@project_page()
@require_POST
def rule_mute(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Set muted on or off (an explicit value, so a repeated click changes nothing)."""
    _require_admin(request)
    t = request.tenant
    obj = t.get(selectors.rules_query(t.scoped(AlertRule)), pk=rule_id)
    services.rule_set_muted(rule=obj, muted=request.POST.get("muted") == "1", actor=request.user)
    if _fragment(request):
        ctx = {"row": _rows([obj])[0], "can_admin": True}
        return render(request, "alerts/rules.html#rule_row", ctx)
    messages.success(request, f"Rule “{obj.name}” {'muted' if obj.muted else 'unmuted'}.")
    if request.POST.get("next") == "detail":
        return redirect("alerts:rule", *_slugs(request), obj.pk)
    return redirect("alerts:rules", *_slugs(request))


@project_page()
@require_POST
def rule_delete(request: HttpRequest, rule_id: int) -> HttpResponse:
    _require_admin(request)
    obj = request.tenant.get(AlertRule, pk=rule_id)
    name = obj.name
    services.rule_delete(rule=obj, actor=request.user)
    messages.success(request, f"Rule “{name}” deleted.")
    return redirect("alerts:rules", *_slugs(request))


# --- channels -----------------------------------------------------------------------------------------


def _channels_ctx(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    t = request.tenant
    channels = list(t.scoped(NotificationChannel).prefetch_related("rules"))
    last = selectors.channel_last_deliveries([c.pk for c in channels])
    return {
        "channels": [{"channel": c, "last": last.get(c.pk)} for c in channels],
        "tab": "channels",
        **extra,
    }


@project_page()
@require_GET
def channels(request: HttpRequest) -> HttpResponse:
    return _page(request, "alerts/channels.html", _channels_ctx(request))


@project_page(min_role=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def channel_new(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    form = ChannelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            channel, secret = services.channel_create(
                project=t.project, actor=request.user, data=form.service_data()
            )
        except AppError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            if secret is None:
                messages.success(request, f"Channel “{channel.name}” created.")
                return redirect("alerts:channels", *_slugs(request))
            # Rendered, not redirected: the secret must not travel through a session or URL.
            ctx = _channels_ctx(request, new_secret=secret, new_channel=channel)
            return _page(request, "alerts/channels.html", ctx, status=201)
    status = 400 if form.is_bound else 200
    return _page(
        request,
        "alerts/channel_form.html",
        {"form": form, "channel": None, "tab": "channels"},
        status,
    )


@project_page(min_role=Role.ADMIN)
@require_http_methods(["GET", "POST"])
def channel_edit(request: HttpRequest, channel_id: int) -> HttpResponse:
    t = request.tenant
    obj = t.get(NotificationChannel, pk=channel_id)
    form = ChannelForm(request.POST or None, channel=obj)
    if request.method == "POST" and form.is_valid():
        try:
            _c, secret = services.channel_update(
                channel=obj,
                actor=request.user,
                data=form.service_data(),
                rotate_secret=bool(form.cleaned_data.get("rotate_secret")),
            )
        except AppError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            if secret is None:
                messages.success(request, f"Channel “{obj.name}” saved.")
                return redirect("alerts:channels", *_slugs(request))
            ctx = _channels_ctx(request, new_secret=secret, new_channel=obj)
            return _page(request, "alerts/channels.html", ctx)
    status = 400 if form.is_bound else 200
    ctx = {"form": form, "channel": obj, "tab": "channels"}
    return _page(request, "alerts/channel_form.html", ctx, status)


@project_page()
@require_POST
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    _require_admin(request)
    obj = request.tenant.get(NotificationChannel, pk=channel_id)
    result = services.channel_test(channel=obj, actor=request.user)
    if _fragment(request):
        return render(
            request, "alerts/channels.html#test_result", {"result": result, "channel": obj}
        )
    if result.ok:
        code = f" (HTTP {result.status_code})" if result.status_code else ""
        messages.success(request, f"Test sent to “{obj.name}”{code}.")
    else:
        messages.error(request, f"Test to “{obj.name}” failed: {result.error}")
    return redirect("alerts:channels", *_slugs(request))


@project_page()
@require_POST
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    _require_admin(request)
    obj = request.tenant.get(NotificationChannel, pk=channel_id)
    name = obj.name
    services.channel_delete(channel=obj, actor=request.user)
    messages.success(request, f"Channel “{name}” deleted; its rules no longer notify it.")
    return redirect("alerts:channels", *_slugs(request))
