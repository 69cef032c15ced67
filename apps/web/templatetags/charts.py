"""Server-rendered SVG charts and number formatting for the dashboard pages.

The strict CSP forbids inline scripts and styles, so charts are plain SVG whose geometry lives in
attributes (allowed) and whose look lives in app.css/dash.css classes. Python computes the
geometry; the templates render it auto-escaped, so agent names and span names in titles and
tooltips stay text. Series differ by colour *and* line style *and* marker shape, and every point
carries a ``<title>`` tooltip, so nothing depends on colour alone.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import dateformat

register = template.Library()

DASH = "\u2014"  # em dash: a value that is not defined
EN_DASH = "\u2013"  # date ranges


# --- formatting ------------------------------------------------------------------------------


def fmt_pct(value: float | None) -> str:
    """A rate (0..1) as a percentage with one decimal: 0.125 → "12.5 %"."""
    if value is None:
        return DASH
    return f"{value * 100:.1f} %"


def fmt_ms(value: float | None) -> str:
    """A compact duration for axes and tooltips: 850 ms, 1.5 s, 80 s, 12.5 min.

    Seconds up to ten minutes: axis ticks in 20 s steps read better as "80 s" than "1.3 min".
    """
    if value is None:
        return DASH
    if value < 1000:
        return f"{value:.0f} ms"
    s = value / 1000
    if s < 600:
        return f"{s:.1f} s".replace(".0 s", " s")
    return f"{s / 60:.1f} min".replace(".0 min", " min")


def as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def fmt_week(value: date | str, *, year: bool = False) -> str:
    """The ISO week starting on ``value``: "Mar 2 - Mar 8" with an en dash (", 2026" with ``year``)."""
    start = as_date(value)
    end = start + timedelta(days=6)
    text = f"{dateformat.format(start, 'M j')} {EN_DASH} {dateformat.format(end, 'M j')}"
    return f"{text}, {end.year}" if year else text


@register.filter
def pct(value: float | None) -> str:
    return fmt_pct(value)


@register.filter
def week_range(value: date | str) -> str:
    return fmt_week(value)


@register.filter
def week_range_year(value: date | str) -> str:
    return fmt_week(value, year=True)


@register.filter
def week_label(value: date | str) -> str:
    return dateformat.format(as_date(value), "M j")


@register.filter
def anchor(value: str) -> str:
    """A stable HTML id for an agent name (which may hold any character)."""
    return "c-" + hashlib.blake2s(str(value).encode(), digest_size=5).hexdigest()


@register.simple_tag(takes_context=True)
def agent_url(context: template.Context, agent: str) -> str:
    """The agent page's URL, or "" when the URL pattern cannot carry this name (e.g. a "/")."""
    tenant = context.get("tenant")
    if tenant is None or tenant.project is None:
        return ""
    try:
        return reverse("web:agent", args=[tenant.organization.slug, tenant.project.slug, agent])
    except NoReverseMatch:
        return ""


# --- improvement (week over week) ------------------------------------------------------------


def delta_context(
    improvement: float | None,
    prev_rate: float | None = None,
    this_rate: float | None = None,
    *,
    known_prev: bool = False,
) -> dict[str, Any]:
    """How to show an improvement: class, words, and why (on hover).

    Improvement is (prev - this) / prev (spans.md §4), so a positive value is a *falling* issue
    rate, which is better.
    """
    if improvement is None:
        if this_rate is None:
            why = "Not defined: no traces this week."
        elif known_prev and prev_rate is None:
            why = "Not defined: no traces the week before."
        elif known_prev and prev_rate == 0:
            why = "Not defined: the week before had a 0.0 % issue rate, so there is no relative change."
        else:
            why = (
                "Not defined: the week before had no traces or a 0.0 % issue rate, "
                "so there is no relative change."
            )
        return {"kind": "none", "text": DASH, "why": why}
    rates = ""
    if prev_rate is not None and this_rate is not None:
        rates = f" (from {fmt_pct(prev_rate)} to {fmt_pct(this_rate)})"
    size = f"{abs(improvement) * 100:.1f} %"
    if size == "0.0 %":
        return {
            "kind": "flat",
            "text": "no change",
            "why": f"The issue rate stayed the same as the week before{rates}.",
        }
    if improvement > 0:
        return {
            "kind": "better",
            "text": f"{size} better",
            "why": f"The issue rate fell by {size} relative to the week before{rates}.",
        }
    return {
        "kind": "worse",
        "text": f"{size} worse",
        "why": f"The issue rate rose by {size} relative to the week before{rates}.",
    }


@register.inclusion_tag("web/dash/_delta.html")
def delta(
    improvement: float | None,
    prev_rate: float | None = None,
    this_rate: float | None = None,
    known_prev: bool = False,
) -> dict[str, Any]:
    # A missing variable (e.g. no last week) reaches a tag as "" rather than None.
    improvement, prev_rate, this_rate = (
        None if v == "" else v for v in (improvement, prev_rate, this_rate)
    )
    return {"d": delta_context(improvement, prev_rate, this_rate, known_prev=known_prev)}


# --- line charts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    key: str  # the week row's field
    label: str
    css: str  # .series-<css> / .dot-<css> / .key.<css>
    shape: str  # circle | square


SIZES = {
    # viewBox sizes close to the rendered width, so the 10px axis text stays readable
    "card": (320, 150),
    "half": (560, 220),
    "wide": (960, 240),
}
PAD_L, PAD_R, PAD_T, PAD_B = 46, 10, 10, 24
TREND = (
    Series("issue_rate", "Issue rate", "issue", "circle"),
    Series("silent_defect_rate", "Silent defect rate", "silent", "square"),
)
LATENCY = (
    Series("p50_ms", "p50 duration", "p50", "circle"),
    Series("p95_ms", "p95 duration", "p95", "square"),
)


def nice_scale(top: float, floor: float) -> tuple[float, float]:
    """An axis maximum and tick step (1, 2, 2.5 or 5 times 10^k) for about four ticks."""
    top = max(top, floor)
    raw = top / 4
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw - 1e-12)
    # rounded: 3 * 0.2 is 0.6000000000000001 in floats, which would show in tick labels
    return round(math.ceil(top / step - 1e-9) * step, 9), round(step, 9)


def _label_every(n: int, width: int) -> int:
    # about 56 user units per label ("Mar 16" is ~30 at 10px) keeps labels apart
    per = (width - PAD_L - PAD_R) / max(n, 1)
    return max(1, math.ceil(56 / per))


def line_chart(
    weeks: Sequence[dict[str, Any]],
    series: Sequence[Series],
    *,
    title: str,
    fmt: Callable[[float | None], str],
    floor: float,
    cap: float | None = None,
    size: str = "card",
    ref: tuple[float, str] | None = None,
    point_note: Callable[[dict[str, Any], Series], str] | None = None,
) -> dict[str, Any]:
    """Geometry of a weekly line chart: one x band per week, gaps where a value is None."""
    w, h = SIZES[size]
    x0, x1, y0, y1 = PAD_L, w - PAD_R, PAD_T, h - PAD_B
    n = len(weeks)
    band = (x1 - x0) / max(n, 1)
    values = [r[s.key] for r in weeks for s in series if r.get(s.key) is not None]
    data_max = max(values, default=0.0)
    ref_shown = ref is not None and ref[0] <= max(data_max, floor) * 1.5
    top, step = nice_scale(max([data_max] + ([ref[0]] if ref_shown else [])), floor)
    if cap is not None:
        top = min(top, cap)

    def y(v: float) -> float:
        return round(y1 - (min(v, top) / top) * (y1 - y0), 1)

    def x(i: int) -> float:
        return round(x0 + (i + 0.5) * band, 1)

    grid = []
    k = 0
    while k * step <= top + 1e-9:
        v = round(k * step, 9)
        grid.append({"y": y(v), "label": fmt(v)})
        k += 1
    every = _label_every(n, w)
    xlabels = [
        {"x": x(i), "label": dateformat.format(as_date(r["week_start"]), "M j")}
        for i, r in enumerate(weeks)
        if (n - 1 - i) % every == 0
    ]
    gaps = []
    out_series = []
    for s in series:
        segments: list[list[str]] = []
        points = []
        run: list[str] = []
        for i, r in enumerate(weeks):
            v = r.get(s.key)
            if v is None:
                if run:
                    segments.append(run)
                run = []
                continue
            px, py = x(i), y(v)
            run.append(f"{px},{py}")
            note = point_note(r, s) if point_note else ""
            points.append(
                {
                    "x": px,
                    "y": py,
                    "sx": round(px - 3.5, 1),
                    "sy": round(py - 3.5, 1),
                    "title": f"{fmt_week(r['week_start'])}: {s.label.lower()} {fmt(v)}{note}",
                }
            )
        if run:
            segments.append(run)
        out_series.append(
            {
                "css": s.css,
                "label": s.label,
                "shape": s.shape,
                # a lone point has no line; its marker shows it
                "segments": [" ".join(seg) for seg in segments if len(seg) > 1],
                "points": points,
            }
        )
    for i, r in enumerate(weeks):
        if all(r.get(s.key) is None for s in series):
            gaps.append({"x": x(i), "title": f"{fmt_week(r['week_start'])}: no traces"})
    last = next((r for r in reversed(weeks) if r.get(series[0].key) is not None), None)
    if last is None:
        desc = "No traces in these weeks."
    else:
        parts = ", ".join(f"{s.label.lower()} {fmt(last.get(s.key))}" for s in series)
        desc = f"Latest week with traces, {fmt_week(last['week_start'])}: {parts}."
    ref_out = None
    if ref is not None:
        ref_out = {"y": y(ref[0]), "label": ref[1], "shown": ref_shown}
    uid = "ch-" + hashlib.blake2s(title.encode(), digest_size=5).hexdigest()
    return {
        "id": uid,
        "w": w,
        "h": h,
        "x0": x0,
        "x1": x1,
        "y0": y0,
        "y1": y1,
        "label_x": x0 - 6,
        "label_y": y1 + 16,
        "grid": grid,
        "xlabels": xlabels,
        "series": out_series,
        "gaps": gaps,
        "gap_y": y1 - 2,
        "ref": ref_out,
        "title": title,
        "desc": desc,
        "empty": last is None,
    }


def _trend_note(row: dict[str, Any], s: Series) -> str:
    n = row["failed"] + row["defective"] if s.key == "issue_rate" else row["defective"]
    return f" ({n:,} of {row['traces']:,} traces)"


@register.inclusion_tag("web/dash/_line_chart.html")
def trend_chart(weeks: Sequence[dict[str, Any]], agent: str, size: str = "card") -> dict[str, Any]:
    """An agent's issue rate (solid) and silent defect rate (dashed) per week."""
    chart = line_chart(
        weeks,
        TREND,
        title=f"Issue rate and silent defect rate per week of {agent}",
        fmt=fmt_pct,
        floor=0.02,
        cap=1.0,
        size=size,
        point_note=_trend_note,
    )
    return {"c": chart}


@register.inclusion_tag("web/dash/_line_chart.html")
def latency_chart(
    weeks: Sequence[dict[str, Any]],
    agent: str,
    slo_ms: int | str | None = None,
    size: str = "half",
) -> dict[str, Any]:
    """p50 (solid) and p95 (dashed) trace duration per week, with the contract's SLO if any."""
    ref = (float(slo_ms), f"SLO {fmt_ms(slo_ms)}") if slo_ms not in (None, "") else None
    chart = line_chart(
        weeks,
        LATENCY,
        title=f"p50 and p95 trace duration per week of {agent}",
        fmt=fmt_ms,
        floor=10.0,
        size=size,
        ref=ref,
    )
    return {"c": chart}


# --- findings by type: small multiples ---------------------------------------------------------


@register.inclusion_tag("web/dash/_findings_chart.html")
def findings_chart(weeks: Sequence[dict[str, Any]], agent: str) -> dict[str, Any]:
    """One row of weekly bars per finding type, on a shared scale.

    Small multiples rather than one stacked bar: nine types would need nine colours, and a
    colour-blind reader could not tell them apart; a labelled row per type needs no legend.
    """
    w, h = 720, 34
    n = len(weeks)
    band = w / max(n, 1)
    totals: dict[str, int] = {}
    for r in weeks:
        for t, c in (r.get("findings_by_type") or {}).items():
            totals[t] = totals.get(t, 0) + int(c)
    peak = max(
        (int(c) for r in weeks for c in (r.get("findings_by_type") or {}).values()), default=0
    )
    rows = []
    for t in sorted(totals, key=lambda k: (-totals[k], k)):
        bars = []
        for i, r in enumerate(weeks):
            if not r.get("traces"):
                continue  # no traces: a gap, not a zero
            c = int((r.get("findings_by_type") or {}).get(t, 0))
            bh = round((c / peak) * (h - 4), 1) if peak else 0
            bars.append(
                {
                    "x": round(i * band + band * 0.15, 1),
                    "w": round(band * 0.7, 1),
                    "y": round(h - 1 - bh, 1),
                    "h": bh,
                    "hit_x": round(i * band, 1),
                    "hit_w": round(band, 1),
                    "title": f"{fmt_week(r['week_start'])}: {c:,} {t} finding{'s' if c != 1 else ''}",
                }
            )
        rows.append({"type": t, "total": totals[t], "bars": bars})
    return {
        "rows": rows,
        "w": w,
        "h": h,
        "base_y": h - 0.5,
        "peak": peak,
        "first": weeks[0]["week_start"] if weeks else None,
        "last": weeks[-1]["week_start"] if weeks else None,
        "agent": agent,
    }
