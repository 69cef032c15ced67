"""Formatting for the explore pages: durations, times, money, JSON.

Everything here returns plain strings (auto-escaped by the template) or ``format_html`` output,
which escapes its arguments: span content is user content and is never marked safe.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


def to_datetime(value: Any) -> datetime | None:
    """A datetime from an RFC 3339 string (nanoseconds allowed), Unix ns, or a datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int):
        return datetime.fromtimestamp(value / 1e9, tz=UTC)
    if isinstance(value, str):
        from apps.ingest.native import parse_time

        ns, err = parse_time(value, "time")
        if err is None and ns is not None:
            return datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return None


def relative(dt: datetime, now: datetime | None = None) -> str:
    """Compact relative time: "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago"."""
    now = now or timezone.now()
    secs = (now - dt).total_seconds()
    future = secs < 0
    secs = abs(secs)
    if secs < 5:
        return "just now"
    if secs < 60:
        text = f"{int(secs)} s"
    elif secs < 3600:
        text = f"{int(secs // 60)} min"
    elif secs < 86400:
        text = f"{int(secs // 3600)} h"
    elif secs < 86400 * 60:
        text = f"{int(secs // 86400)} d"
    else:
        return dt.strftime("%Y-%m-%d")
    return f"in {text}" if future else f"{text} ago"


@register.simple_tag
def when(value: Any) -> SafeString | str:
    """``<time>`` with the relative time as text and the absolute UTC time on hover."""
    dt = to_datetime(value)
    if dt is None:
        return "—"
    absolute = dt.strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        dt.isoformat().replace("+00:00", "Z"),
        absolute,
        relative(dt),
    )


@register.simple_tag(takes_context=True)
def oob_sidebar(context: template.Context) -> SafeString:
    """The project sidebar again, swapped out of band: after HTMX navigation into ``#main`` it
    marks the new page as current (the rest of the layout stays as it is)."""
    html = context.template.engine.get_template("includes/sidebar.html").render(context)
    # Our own template's output (already escaped); only the fixed opening tag is extended.
    return mark_safe(  # noqa: S308
        html.replace(
            '<nav class="sidebar"', '<nav class="sidebar" hx-swap-oob="outerHTML:nav.sidebar"', 1
        )
    )


@register.filter
def utc(value: Any) -> str:
    """Absolute UTC time with milliseconds, for detail pages."""
    dt = to_datetime(value)
    if dt is None:
        return "—"
    return dt.strftime("%Y-%m-%d %H:%M:%S.") + f"{dt.microsecond // 1000:03d} UTC"


@register.filter
def duration(ms: Any) -> str:
    """Milliseconds as a readable duration: 0.4 ms, 850 ms, 1.24 s, 2 m 03 s, 1 h 05 m."""
    if ms is None or ms == "":
        return "—"
    ms = float(ms)
    if ms < 1:
        return f"{ms:.2f} ms" if ms else "0 ms"
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    s = ms / 1000
    if s < 10:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} m {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} m"


@register.filter
def usd(value: Any) -> str:
    """Cost in dollars: four decimals below a cent, so small LLM calls do not read as $0.00."""
    if value is None or value == "":
        return "—"
    v = float(value)
    if v == 0:
        return "$0"
    return f"${v:.4f}" if v < 0.01 else f"${v:,.2f}"


@register.filter
def pretty_json(value: Any) -> str:
    """Input/output as indented JSON; text that was not JSON is shown as it came."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


@register.filter
def attr_value(value: Any) -> str:
    """An attribute value: strings as they are, lists/numbers/bools as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


@register.filter
def humanize_type(value: str) -> str:
    """``stale_state`` → ``stale state`` for headings."""
    return str(value).replace("_", " ")


@register.filter
def finding_title(type_: str) -> str:
    """The plain-language name of a finding type: ``tool_loop`` → ``Tool loop``."""
    from apps.web.explore import FINDING_TYPES

    known = FINDING_TYPES.get(str(type_))
    return known[0] if known else humanize_type(type_).capitalize()


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    try:
        return mapping.get(key)
    except AttributeError:
        return None
