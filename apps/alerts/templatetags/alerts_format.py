"""Number formatting shared by the alert pages and the digest emails."""

from __future__ import annotations

from django import template

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
