"""Validation and normalization of native spans (spans.md §1) into span-store rows.

This is the ingest hot path, shared by the REST endpoint, OTLP (after mapping) and the offline
``detect`` command: no DRF serializer, one pass per span, errors as ``"field: rule"`` strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

KINDS = frozenset({"agent", "llm", "tool", "retrieval", "handoff", "step"})
STATUSES = frozenset({"ok", "error", "unset"})
MAX_NS = 2**63 - 1  # DateTime64(9) ends at 2262-04-11
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def usage_count(value: float) -> int | None:
    """A reported token count as stored (Int64). A number the column cannot hold (1e300 tokens)
    counts as not reported; the attribute itself is kept as sent."""
    n = int(value)
    return n if _INT64_MIN <= n <= _INT64_MAX else None


_HEX32 = re.compile(r"[0-9a-f]{32}").fullmatch
_HEX16 = re.compile(r"[0-9a-fA-F]{16}").fullmatch
_HEX16L = re.compile(r"[0-9a-f]{16}").fullmatch
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
).fullmatch
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Where model, provider, tokens and cost are read from (first present wins); legacy names included.
MODEL_KEYS = (
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model_name",
    "llm.model_name",
    "llm.request.model_name",
    "embedding.model_name",
)
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
TOKENS_IN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
TOKENS_OUT_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
COST_KEYS = ("llm.cost.total",)


@dataclass(frozen=True, slots=True)
class Limits:
    max_attributes: int = 512
    max_attribute_bytes: int = 64 * 1024
    max_io_bytes: int = 1024 * 1024
    max_events: int = 128

    @classmethod
    def from_settings(cls) -> Limits:
        from django.conf import settings

        s = settings.KRIY_INGEST
        return cls(
            s["MAX_ATTRIBUTES_PER_SPAN"],
            s["MAX_ATTRIBUTE_BYTES"],
            s["MAX_IO_BYTES"],
            s["MAX_EVENTS_PER_SPAN"],
        )


def parse_time(value: Any, field: str) -> tuple[int | None, str | None]:
    """Unix nanoseconds from an RFC 3339 string with offset, or an integer of nanoseconds."""
    if type(value) is int:
        if 0 <= value <= MAX_NS:
            return value, None
        return None, f"{field}: integer Unix nanoseconds must be between 0 and {MAX_NS}"
    if type(value) is str:
        m = _RFC3339(value)
        if m is None:
            return (
                None,
                f"{field}: must be RFC 3339 with a UTC offset (e.g. 2026-01-01T10:00:00.5Z) or integer Unix nanoseconds",
            )
        y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
        try:
            dt = datetime(int(y), int(mo), int(d), int(h), int(mi), min(int(s), 59), tzinfo=UTC)
        except ValueError:
            return None, f"{field}: not a real date and time"
        secs = int((dt - _EPOCH).total_seconds())
        if int(s) == 60:  # a leap second counts as the next second
            secs += 1
        if not z:
            off = int(oh) * 3600 + int(om) * 60
            secs -= off if sign == "+" else -off
        ns = secs * 1_000_000_000 + (int(frac.ljust(9, "0")) if frac else 0)
        if not 0 <= ns <= MAX_NS:
            return None, f"{field}: must be between 1970-01-01 and 2262-04-11"
        return ns, None
    return None, f"{field}: must be an RFC 3339 string or integer Unix nanoseconds"


def _check_attributes(attrs: Any, field: str, limits: Limits, errors: list[str]) -> dict[str, Any]:
    if type(attrs) is not dict:
        errors.append(f"{field}: must be an object")
        return {}
    if len(attrs) > limits.max_attributes:
        errors.append(
            f"{field}: at most {limits.max_attributes} attributes per span, got {len(attrs)}"
        )
        return {}
    max_bytes = limits.max_attribute_bytes
    for key, value in attrs.items():
        t = type(value)
        if t is str:
            if len(value) > max_bytes and len(value.encode()) > max_bytes:
                errors.append(f"{field}.{key}: value over {max_bytes} bytes")
        elif t is bool or t is int or t is float:
            if t is int and not -(2**63) <= value < 2**64:
                errors.append(f"{field}.{key}: integer out of the 64-bit range")
        elif t is list:
            size = 0
            for item in value:
                it = type(item)
                if it is str:
                    size += len(item)
                elif it is int:
                    if not -(2**63) <= item < 2**64:
                        errors.append(f"{field}.{key}: integer out of the 64-bit range")
                        break
                elif it is not bool and it is not float:
                    errors.append(f"{field}.{key}: a list may hold only strings, numbers and bools")
                    break
            if size > max_bytes:
                errors.append(f"{field}.{key}: value over {max_bytes} bytes")
        else:
            errors.append(f"{field}.{key}: value must be a string, number, bool or a list of those")
        if len(key) > 256 or not key:
            errors.append(f"{field}: keys must be 1-256 characters")
    return attrs


def _str_list(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _kriy(attrs: dict[str, Any], row: dict[str, Any], errors: list[str]) -> None:
    """Typed reliability conventions (spans.md §2) as their own columns; wrong types are refused."""
    v = attrs.get("kriy.result.partial")
    if v is not None:
        if type(v) is not bool:
            errors.append("attributes.kriy.result.partial: must be a bool")
        row["result_partial"] = 1 if v is True else 0
    v = attrs.get("kriy.retry.attempt")
    if v is not None:
        if type(v) is not int or v < 0:
            errors.append("attributes.kriy.retry.attempt: must be an integer ≥ 0")
        elif v > _INT64_MAX:
            errors.append(f"attributes.kriy.retry.attempt: must be at most {_INT64_MAX}")
        else:
            row["retry_attempt"] = v
    v = attrs.get("kriy.retry.reason")
    if v is not None:
        if type(v) is not str:
            errors.append("attributes.kriy.retry.reason: must be a string")
        else:
            row["retry_reason"] = v
    for key, col in (
        ("kriy.constraints", "constraints"),
        ("kriy.context.required", "context_required"),
        ("kriy.context.present", "context_present"),
    ):
        v = attrs.get(key)
        if v is not None:
            if not _str_list(v):
                errors.append(f"attributes.{key}: must be a list of strings")
            else:
                row[col] = v
    v = attrs.get("kriy.state.key")
    if v is not None:
        if type(v) is not str:
            errors.append("attributes.kriy.state.key: must be a string")
        else:
            row["state_key"] = v
    v = attrs.get("kriy.state.version")
    if v is not None:
        if type(v) is not int:
            errors.append("attributes.kriy.state.version: must be an integer")
        elif not _INT64_MIN <= v <= _INT64_MAX:
            errors.append("attributes.kriy.state.version: must be a 64-bit signed integer")
        else:
            row["state_version"] = v
    v = attrs.get("kriy.state.op")
    if v is not None:
        if v != "read" and v != "write":
            errors.append("attributes.kriy.state.op: must be 'read' or 'write'")
        else:
            row["state_op"] = v


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...], kind: type) -> Any:
    for k in keys:
        v = attrs.get(k)
        if v is not None and type(v) is not bool:
            if kind is str and type(v) is str and v:
                return v
            if kind is not str and type(v) in (int, float):
                return v
    return None


def _json_text(value: Any, field: str, limit: int, errors: list[str]) -> str:
    if value is None:
        return ""
    try:
        text = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError) as exc:
        errors.append(f"{field}: not encodable as JSON ({exc})")
        return ""
    if len(text) > limit:
        errors.append(f"{field}: over {limit} bytes as JSON")
        return ""
    return text.decode()


def _events(events: Any, limits: Limits, errors: list[str]) -> list[dict[str, Any]]:
    if events is None:
        return []
    if type(events) is not list:
        errors.append("events: must be a list")
        return []
    if len(events) > limits.max_events:
        errors.append(f"events: at most {limits.max_events} per span")
        return []
    out = []
    for i, ev in enumerate(events):
        if type(ev) is not dict:
            errors.append(f"events[{i}]: must be an object")
            continue
        name = ev.get("name")
        if type(name) is not str or not 1 <= len(name) <= 256:
            errors.append(f"events[{i}].name: required, 1-256 characters")
        t, err = parse_time(ev.get("time"), f"events[{i}].time")
        if err:
            errors.append(err)
        attrs = ev.get("attributes")
        if attrs is not None:
            _check_attributes(attrs, f"events[{i}].attributes", limits, errors)
        out.append({"name": name, "time": t, "attributes": attrs or {}})
    return out


def validate_span(obj: Any, limits: Limits) -> tuple[dict[str, Any] | None, list[str]]:
    """A span-store row (without project, version and retention) or the list of what is wrong."""
    if type(obj) is not dict:
        return None, ["span: must be a JSON object"]
    errors: list[str] = []
    get = obj.get

    trace_id = get("trace_id")
    if type(trace_id) is not str or not _HEX32(trace_id) or trace_id == _ZERO32:
        errors.append("trace_id: required, 32 lowercase hex characters, not all zero")
    span_id = get("span_id")
    if type(span_id) is not str or len(span_id) != 16 or not _HEX16L(span_id) or span_id == _ZERO16:
        errors.append("span_id: required, 16 lowercase hex characters, not all zero")
    parent = get("parent_span_id")
    if parent is None or parent == "" or parent == _ZERO16:
        # all zeros is W3C's "no parent" (OTLP maps it to a root too)
        parent = ""
    elif type(parent) is not str or not _HEX16(parent):
        errors.append("parent_span_id: must be 16 hex characters, or null for a root span")
    else:
        parent = parent.lower()
    session = get("session_id")
    if session is None:
        session = ""
    elif type(session) is not str or len(session) > 256:
        errors.append("session_id: must be a string of at most 256 characters")
    elif "\x00" in session:
        errors.append("session_id: must not contain NUL characters")
    agent = get("agent")
    if type(agent) is not str or not 1 <= len(agent) <= 128:
        errors.append("agent: required, 1-128 characters")
    elif "\x00" in agent:
        errors.append("agent: must not contain NUL characters")
    name = get("name")
    if type(name) is not str or not 1 <= len(name) <= 256:
        errors.append("name: required, 1-256 characters")
    elif "\x00" in name:
        errors.append("name: must not contain NUL characters")
    kind = get("kind")
    if kind is None:
        kind = "step"
    elif type(kind) is not str or kind not in KINDS:
        errors.append("kind: must be one of agent, llm, tool, retrieval, handoff, step")
    start, err = parse_time(get("start_time"), "start_time")
    if err:
        errors.append(err)
    end, err = parse_time(get("end_time"), "end_time")
    if err:
        errors.append(err)
    if start is not None and end is not None and end < start:
        errors.append("end_time: must not be before start_time")
    status = get("status")
    if status is None:
        status = "unset"
    elif type(status) is not str or status not in STATUSES:
        errors.append("status: must be ok, error or unset")
    message = get("status_message")
    if message is None:
        message = ""
    elif type(message) is not str or (len(message) > 4096 and len(message.encode()) > 4096):
        errors.append("status_message: must be a string of at most 4 KiB")

    row: dict[str, Any] = {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "session_id": session,
        "agent": agent,
        "name": name,
        "kind": kind,
        "start_ns": start,
        "end_ns": end,
        "status": status,
        "status_message": message,
        "result_partial": 0,
        "retry_attempt": 0,
        "retry_reason": "",
        "constraints": [],
        "context_required": [],
        "context_present": [],
        "state_key": "",
        "state_version": None,
        "state_op": "",
        "invoke_agent": 1 if get("_invoke_agent") is True else 0,
    }
    attrs = get("attributes")
    if attrs is None:
        attrs = {}
    else:
        attrs = _check_attributes(attrs, "attributes", limits, errors)
        if attrs:
            _kriy(attrs, row, errors)
    row["input"] = _json_text(get("input"), "input", limits.max_io_bytes, errors)
    row["output"] = _json_text(get("output"), "output", limits.max_io_bytes, errors)
    row["events"] = _events(get("events"), limits, errors)
    if errors:
        return None, errors
    row["attributes"] = attrs
    if attrs:
        row["model"] = _first(attrs, MODEL_KEYS, str) or ""
        row["provider"] = _first(attrs, PROVIDER_KEYS, str) or ""
        ti = _first(attrs, TOKENS_IN_KEYS, int)
        to = _first(attrs, TOKENS_OUT_KEYS, int)
        row["tokens_in"] = usage_count(ti) if ti is not None else None
        row["tokens_out"] = usage_count(to) if to is not None else None
        row["cost_usd"] = _first(attrs, COST_KEYS, float)
    else:
        row["model"] = row["provider"] = ""
        row["tokens_in"] = row["tokens_out"] = row["cost_usd"] = None
    return row, []


@dataclass(slots=True)
class Rejection:
    index: int
    span_id: str
    errors: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "span_id": self.span_id, "errors": self.errors}


def validate_spans(
    spans: list[Any], limits: Limits
) -> tuple[list[dict[str, Any]], list[Rejection]]:
    """Rows of the valid spans, and a rejection per invalid one (with its index in the request).

    A span repeating the (trace_id, span_id) of an earlier span of the same request replaces it,
    as a re-sent span does (the later one wins); spans without a session take their trace root's
    session when the root is in the request.
    """
    rows: list[dict[str, Any]] = []
    rejected: list[Rejection] = []
    seen: dict[tuple[str, str], int] = {}
    for i, obj in enumerate(spans):
        row, errors = validate_span(obj, limits)
        if row is None:
            sid = obj.get("span_id") if type(obj) is dict else None
            rejected.append(Rejection(i, sid if type(sid) is str else "", errors))
            continue
        key = (row["trace_id"], row["span_id"])
        if key in seen:
            rows[seen[key]] = row  # a re-send within the request: the later span wins
            continue
        seen[key] = len(rows)
        rows.append(row)
    inherit_sessions(rows)
    resolve_invoke_agent(rows)
    return rows, rejected


def inherit_sessions(rows: list[dict[str, Any]]) -> None:
    roots = {
        r["trace_id"]: r["session_id"] for r in rows if not r["parent_span_id"] and r["session_id"]
    }
    if roots:
        for r in rows:
            if not r["session_id"]:
                s = roots.get(r["trace_id"])
                if s:
                    r["session_id"] = s


def resolve_invoke_agent(rows: list[dict[str, Any]]) -> None:
    """spans.md §1: an OTLP ``invoke_agent`` span is a handoff when the invoked agent differs
    from its parent span's agent. Decided here when the parent is in the same batch; the judge
    decides again over the whole trace (the flag stays on the row)."""
    flagged = [
        r for r in rows if r["invoke_agent"] and r["parent_span_id"] and r["kind"] == "agent"
    ]
    if not flagged:
        return
    agents = {(r["trace_id"], r["span_id"]): r["agent"] for r in rows}
    for r in flagged:
        parent_agent = agents.get((r["trace_id"], r["parent_span_id"]))
        if parent_agent is not None and parent_agent != r["agent"]:
            r["kind"] = "handoff"
