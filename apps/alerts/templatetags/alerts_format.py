"""Number formatting shared by the alert pages and the digest emails."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

from apps.alerts.selectors import format_threshold, format_value, window_label

register = template.Library()


@register.filter
def pct(value: float | None) -> str:
    """0.1234 → '12.3 %'; None → '—'."""
    return "—" if value is None else f"{value * 100:.1f} %"


@register.filter
def improvement(value: float | None) -> str:
    """The relative change of the issue rate in words (spans.md §4: positive = it fell)."""
    if value is None:
        return "no comparison"
    if abs(value) < 0.0005:
        return "unchanged"
    word = "improved" if value > 0 else "worsened"
    return f"{word} {abs(value) * 100:.1f} %"


@register.filter
def improvement_class(value: float | None) -> str:
    if value is None or abs(value) < 0.0005:
        return "flat"
    return "better" if value > 0 else "worse"


@register.filter
def metric_value(value: float | None, metric: str) -> str:
    return format_value(metric, value)


@register.filter
def metric_threshold(value: float | None, metric: str) -> str:
    return format_threshold(metric, value)


@register.filter
def window(seconds: int) -> str:
    return window_label(seconds)


@register.filter
def ago(when: datetime | None) -> str:
    """A short relative time: 'just now', '4 min ago', '3 h ago', '2 days ago'."""
    if when is None:
        return "never"
    seconds = (timezone.now() - when).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    days = int(seconds // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


@register.filter
def comparison_label(op: str) -> str:
    """'>=' → 'at or above' (words read better than operators next to a number)."""
    from apps.alerts.models import Comparison

    return Comparison(op).label if op in Comparison.values else op
