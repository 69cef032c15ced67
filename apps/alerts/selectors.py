"""Reads of the alerts app: plain-language descriptions, value formatting, API shapes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import Prefetch, QuerySet
from django.urls import reverse

from apps.alerts.models import (
    RATE_METRICS,
    TRACE_STAT_METRICS,
    WINDOWS,
    AlertEvent,
    AlertRule,
    Comparison,
    Delivery,
    Metric,
    NotificationChannel,
)

_METRIC_PHRASE = {
    Metric.ISSUE_RATE: "the issue rate",
    Metric.SILENT_DEFECT_RATE: "the silent defect rate",
    Metric.FAILED_RATE: "the failed rate",
    Metric.NEW_ISSUE: "the number of new issues",
    Metric.REGRESSED_ISSUE: "the number of regressed issues",
    Metric.P95_DURATION_MS: "the p95 trace duration",
}


def window_label(seconds: int) -> str:
    if seconds in WINDOWS:
        return WINDOWS[seconds]
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds // 60} minutes"


def _trim(x: float, digits: int) -> str:
    s = f"{x:,.{digits}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def format_threshold(metric: str, value: float | None) -> str:
    """A threshold as the user wrote it: rates as a percentage, durations in ms, counts."""
    if value is None:
        return "—"
    if metric in RATE_METRICS:
        return f"{_trim(value * 100, 2)} %"
    if metric == Metric.P95_DURATION_MS:
        return f"{_trim(value, 1)} ms"
    return _trim(value, 2)


def format_value(metric: str, value: float | None) -> str:
    """A measured value for reading: rates with one decimal, durations in ms or s."""
    if value is None:
        return "no data"
    if metric in RATE_METRICS:
        return f"{value * 100:.1f} %"
    if metric == Metric.P95_DURATION_MS:
        return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"
    return _trim(value, 2)


def rule_subject(*, metric: str, finding_type: str = "", agent: str = "") -> str:
    if metric == Metric.FINDING_COUNT:
        what = f"the number of {finding_type or '(choose a type)'} findings"
    else:
        what = _METRIC_PHRASE.get(metric, metric)
    return f"{what} of {agent}" if agent else f"{what} across all agents"


def rule_describe(
    *,
    metric: str,
    comparison: str,
    threshold: float | None,
    window_seconds: int,
    finding_type: str = "",
    agent: str = "",
    min_traces: int = 0,
    muted: bool = False,
) -> str:
    """The plain-language condition: 'Fire when the issue rate of support over the last 1 hour
    is above 20 % (at least 20 traces).' Plain text: templates escape it."""
    label = Comparison(comparison).label if comparison in Comparison.values else comparison
    text = (
        f"Fire when {rule_subject(metric=metric, finding_type=finding_type, agent=agent)}"
        f" over the last {window_label(window_seconds)} is {label}"
        f" {format_threshold(metric, threshold)}"
    )
    if metric in TRACE_STAT_METRICS and min_traces:
        text += f" (at least {min_traces:,} trace{'s' if min_traces != 1 else ''})"
    text += "."
    if muted:
        text += " Muted: it is evaluated but notifies nobody."
    return text


def rule_sentence(rule: AlertRule) -> str:
    return rule_describe(
        metric=rule.metric,
        comparison=rule.comparison,
        threshold=rule.threshold,
        window_seconds=rule.window_seconds,
        finding_type=rule.finding_type,
        agent=rule.agent,
        min_traces=rule.min_traces,
        muted=rule.muted,
    )


def event_summary(event: AlertEvent) -> str:
    """One sentence for a notification: what was measured against which threshold."""
    subject = rule_subject(metric=event.metric, finding_type=event.finding_type, agent=event.agent)
    window = window_label(event.window_seconds)
    label = Comparison(event.comparison).label
    value = format_value(event.metric, event.value)
    threshold = format_threshold(event.metric, event.threshold)
    traces = ""
    if event.metric in TRACE_STAT_METRICS and event.traces is not None:
        traces = f" ({event.traces:,} traces)"
    head = subject[0].upper() + subject[1:]
    if event.kind == AlertEvent.Kind.FIRING:
        return f"{head} over the last {window} is {value}{traces}: {label} the threshold of {threshold}."
    return f"{head} over the last {window} is {value}{traces}: no longer {label} {threshold}."


def public_url(path: str) -> str:
    return settings.KRIY_PUBLIC_URL + path


def rule_path(rule_or_event: AlertRule | AlertEvent, org_slug: str, project_slug: str) -> str:
    rule_id = rule_or_event.pk if isinstance(rule_or_event, AlertRule) else rule_or_event.rule_id
    return reverse("alerts:rule", args=[org_slug, project_slug, rule_id])


# --- querysets for pages and the API ---------------------------------------------------------------


def rules_query(qs: QuerySet[AlertRule]) -> QuerySet[AlertRule]:
    return qs.prefetch_related(Prefetch("channels", NotificationChannel.objects.order_by("name")))


def events_query(qs: QuerySet[AlertEvent]) -> QuerySet[AlertEvent]:
    return qs.order_by("-at", "-sequence").prefetch_related(
        Prefetch("deliveries", Delivery.objects.select_related("channel").order_by("id"))
    )


def channel_last_deliveries(channel_ids: list[int]) -> dict[int, Delivery]:
    """The newest attempted delivery per channel, for the 'last delivery' column (few channels
    per project, so one small indexed query each)."""
    out: dict[int, Delivery] = {}
    for cid in channel_ids:
        d = (
            Delivery.objects.filter(channel_id=cid)
            .exclude(attempts=0)
            .order_by("-updated_at", "-id")
            .first()
        )
        if d is not None:
            out[cid] = d
    return out


# --- API shapes ---------------------------------------------------------------------------------------


def _iso(dt: Any) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt else None


def rule_out(rule: AlertRule) -> dict[str, Any]:
    return {
        "id": rule.pk,
        "name": rule.name,
        "metric": rule.metric,
        "finding_type": rule.finding_type or None,
        "agent": rule.agent or None,
        "comparison": rule.comparison,
        "threshold": rule.threshold,
        "window_seconds": rule.window_seconds,
        "min_traces": rule.min_traces,
        "muted": rule.muted,
        "channels": sorted(c.pk for c in rule.channels.all()),
        "description": rule_sentence(rule),
        "state": rule.state,
        "state_changed_at": _iso(rule.state_changed_at),
        "last_evaluated_at": _iso(rule.last_evaluated_at),
        "last_value": rule.last_value,
        "last_traces": rule.last_traces,
        "last_note": rule.last_note or None,
        "created_at": _iso(rule.created_at),
        "updated_at": _iso(rule.updated_at),
    }


def delivery_out(d: Delivery) -> dict[str, Any]:
    return {
        "channel_id": d.channel_id,
        "channel_name": d.channel.name,
        "status": d.status,
        "attempts": d.attempts,
        "response_code": d.response_code,
        "last_error": d.last_error or None,
        "delivered_at": _iso(d.delivered_at),
    }


def event_out(e: AlertEvent) -> dict[str, Any]:
    return {
        "id": e.pk,
        "sequence": e.sequence,
        "transition": e.kind,
        "at": _iso(e.at),
        "value": e.value,
        "traces": e.traces,
        "metric": e.metric,
        "finding_type": e.finding_type or None,
        "agent": e.agent or None,
        "comparison": e.comparison,
        "threshold": e.threshold,
        "window_seconds": e.window_seconds,
        "muted": e.muted,
        "summary": event_summary(e),
        "deliveries": [delivery_out(d) for d in e.deliveries.all()],
    }


def channel_out(c: NotificationChannel, *, secret: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.pk,
        "name": c.name,
        "kind": c.kind,
        "url": c.url or None,
        "emails": list(c.emails) if c.kind == NotificationChannel.Kind.EMAIL else None,
        "secret_hint": c.secret_hint or None,
        "created_at": _iso(c.created_at),
        "updated_at": _iso(c.updated_at),
    }
    if secret is not None:
        out["secret"] = secret
    return out
