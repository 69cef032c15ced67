"""Query-parameter parsing with errors that name the parameter and the rule."""

from __future__ import annotations

from typing import Any

from kriyplatform.errors import AppError


def int_param(params: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise AppError(f"{name}: must be an integer between {lo} and {hi}", field=name) from exc
    if not lo <= value <= hi:
        raise AppError(f"{name}: must be between {lo} and {hi}", field=name)
    return value


def time_param(params: Any, name: str) -> int | None:
    """Unix nanoseconds from RFC 3339 / a date (YYYY-MM-DD) / integer nanoseconds."""
    from apps.ingest.native import parse_time

    raw = params.get(name)
    if raw in (None, ""):
        return None
    value: Any = raw
    if isinstance(raw, str) and raw.isdigit():
        value = int(raw)
    elif isinstance(raw, str) and len(raw) == 10:
        value = raw + "T00:00:00Z"
    elif isinstance(raw, str) and len(raw) in (16, 19) and "T" in raw:
        value = raw + (":00Z" if len(raw) == 16 else "Z")  # datetime-local inputs, read as UTC
    ns, err = parse_time(value, name)
    if err:
        raise AppError(err, field=name)
    return ns


def str_param(params: Any, name: str, max_len: int = 256) -> str | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if len(raw) > max_len or "\x00" in raw:
        raise AppError(f"{name}: at most {max_len} characters, no NUL bytes", field=name)
    return raw


def choice_param(params: Any, name: str, choices: tuple[str, ...]) -> str | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    if raw not in choices:
        raise AppError(f"{name}: must be one of {', '.join(choices)}", field=name)
    return raw
