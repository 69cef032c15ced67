"""Fast path of ``POST /api/v1/spans``: a request whose spans are all valid, straight to columns.

``decode_native`` parses the body with msgspec into typed structs, so types, lengths, enums and
attribute value shapes are checked in C; what is left (ids, times, ``kriy.*`` types, the derived
columns) runs column by column over the whole request. It returns the request's columns
(``apps.ingest.rows``) or ``None``; ``None`` means "not sure": the caller then runs the detailed
per-span validator (``native.validate_spans``) on the same body, which owns every error message
and the partial-success answer. So this path only has to be exact for what it accepts: the
columns it builds are the ones the slow path builds from ``validate_spans`` rows
(``tests/ingest/test_fastnative.py`` proves it on the corner cases).

Where the two parsers could disagree, this path declines:
- unknown keys anywhere (msgspec would skip their values unchecked);
- integers outside int64 (orjson reads them as floats);
- list attributes longer than 256 items or with strings over ``max_attribute_bytes // 256``
  characters (their size rule is a sum);
- ``input``/``output`` are kept raw by msgspec and parsed by orjson itself, exactly like the slow
  path, and re-encoded by orjson: the stored text is the same. An object or array already
  written as orjson writes it is recognised by one scan (``_otlpwire.canonical_json``) and kept
  as sent, which is those same bytes.
"""

# No ``from __future__ import annotations``: msgspec reads the annotations of the structs that
# _decoder builds at run time, and those name types local to it.
import functools
import operator
import re
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import Meta, Raw

from apps.ingest.native import (
    COST_KEYS,
    MAX_NS,
    MODEL_KEYS,
    PROVIDER_KEYS,
    TOKENS_IN_KEYS,
    TOKENS_OUT_KEYS,
    Limits,
    parse_time,
    usage_count,
)

try:  # compiled at install (pip install -e .); without it every value is parsed
    from apps.ingest._otlpwire import canonical_json as _canonical_json
except ImportError:  # pragma: no cover - a build without a C compiler
    _canonical_json = None

_HEX32 = re.compile(r"[0-9a-f]{32}").fullmatch
_HEX_LOWER_RUN = re.compile(r"[0-9a-f]*").fullmatch
_HEX_RUN = re.compile(r"[0-9a-fA-F]*").fullmatch
_ZERO32 = "0" * 32
_ZERO16 = "0" * 16
_NULL = Raw(b"null")
_CONTAINERS = (dict, list)

_KRIY_KEYS = frozenset(
    (
        "kriy.result.partial",
        "kriy.retry.attempt",
        "kriy.retry.reason",
        "kriy.constraints",
        "kriy.context.required",
        "kriy.context.present",
        "kriy.state.key",
        "kriy.state.version",
        "kriy.state.op",
    )
)
# Attribute keys that feed a column of their own.
_SPECIAL = frozenset(
    (*MODEL_KEYS, *PROVIDER_KEYS, *TOKENS_IN_KEYS, *TOKENS_OUT_KEYS, *COST_KEYS, *_KRIY_KEYS)
)
_LIST_ITEMS = 256

# Fields read off every span struct, in this order (one attrgetter, one transpose).
_FIELDS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "session_id",
    "agent",
    "name",
    "kind",
    "start_time",
    "end_time",
    "status",
    "status_message",
    "input",
    "output",
    "attributes",
    "events",
    "invoke_agent",
)
_GET_FIELDS = operator.attrgetter(*_FIELDS)


@functools.lru_cache(maxsize=8)
def _decoder(limits: Limits) -> msgspec.json.Decoder:
    """The body decoder for these limits (the limits are part of the types)."""
    Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
    # A list's strings may sum to max_attribute_bytes: bounding both the items and their
    # length keeps every accepted list within that without summing in Python.
    item_chars = max(1, limits.max_attribute_bytes // _LIST_ITEMS)
    Value = (
        Annotated[str, Meta(max_length=limits.max_attribute_bytes)]
        | Int64
        | float
        | bool
        | Annotated[
            list[Annotated[str, Meta(max_length=item_chars)] | Int64 | float | bool],
            Meta(max_length=_LIST_ITEMS),
        ]
    )
    Attributes = Annotated[
        dict[Annotated[str, Meta(min_length=1, max_length=256)], Value],
        Meta(max_length=limits.max_attributes),
    ]
    Time = Annotated[int, Meta(ge=0, le=MAX_NS)] | str

    class Event(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        name: Annotated[str, Meta(min_length=1, max_length=256)]
        time: Time
        attributes: Attributes | None = None

    class Span(msgspec.Struct, forbid_unknown_fields=True, gc=False, kw_only=True):
        trace_id: str
        span_id: Annotated[str, Meta(min_length=16, max_length=16)]
        parent_span_id: str | None = None
        session_id: Annotated[str, Meta(max_length=256)] | None = None
        agent: Annotated[str, Meta(min_length=1, max_length=128)]
        name: Annotated[str, Meta(min_length=1, max_length=256)]
        kind: Literal["agent", "llm", "tool", "retrieval", "handoff", "step"] | None = None
        start_time: Time
        end_time: Time
        status: Literal["ok", "error", "unset"] | None = None
        status_message: Annotated[str, Meta(max_length=4096)] | None = None
        input: Raw = _NULL
        output: Raw = _NULL
        attributes: Attributes | None = None
        events: Annotated[list[Event], Meta(max_length=limits.max_events)] | None = None
        invoke_agent: Any = msgspec.field(default=None, name="_invoke_agent")

    class Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
        spans: list[Span]

    return msgspec.json.Decoder(Body)


class _Decline(Exception):
    """Not a request this path can vouch for: the slow path decides."""


def decode_native(body: bytes, limits: Limits, max_spans: int) -> tuple[dict[str, Any], int] | None:
    """The columns and row count of a native request whose spans are all valid, else None."""
    try:
        spans = _decoder(limits).decode(body).spans
    except Exception:  # DecodeError, UnicodeDecodeError (bad UTF-8 in a string), RecursionError…
        return None  # whatever it is, the detailed path reports it
    n = len(spans)
    if not n or n > max_spans:
        return None
    try:
        return _columns(spans, n, limits), n
    except Exception:  # _Decline, or anything unforeseen: the detailed path decides
        return None


def _columns(spans: list[Any], n: int, limits: Limits) -> dict[str, Any]:
    (
        trace_ids,
        span_ids,
        parents,
        sessions,
        agents,
        names,
        kinds,
        starts,
        ends,
        statuses,
        messages,
        inputs,
        outputs,
        attrs,
        events,
        invoke,
    ) = zip(*map(_GET_FIELDS, spans), strict=True)

    # ids: 32/16 lowercase hex, not all zero; parents any-case hex, stored lowercase.
    for t in set(trace_ids):
        if not _HEX32(t) or t == _ZERO32:
            raise _Decline
    if not _HEX_LOWER_RUN("".join(span_ids)) or _ZERO16 in span_ids:
        raise _Decline
    if len(set(zip(trace_ids, span_ids, strict=True))) != n:
        raise _Decline  # a repeated span: the slow path names it
    # NUL in names (PostgreSQL keeps agent and span names) and all-zero parents (roots): slow path
    if "\x00" in "".join(agents) or "\x00" in "".join(names) or _ZERO16 in parents:
        raise _Decline
    if any(s and "\x00" in s for s in sessions):
        raise _Decline
    present = [p for p in parents if p]
    if present:
        if set(map(len, present)) != {16}:
            raise _Decline
        joined = "".join(present)
        if not _HEX_RUN(joined):
            raise _Decline
        if joined == joined.lower():
            parent_col = [p or "" for p in parents]
        else:
            parent_col = [p.lower() if p else "" for p in parents]
    else:
        parent_col = [""] * n
    session_col = [s or "" for s in sessions] if None in sessions else list(sessions)

    # times: integer nanoseconds are range-checked by the decoder; strings are RFC 3339.
    starts = _times(starts)
    ends = _times(ends)
    duration = list(map(operator.sub, ends, starts))
    if n and min(duration) < 0:
        raise _Decline

    kind_col = ["step" if k is None else k for k in kinds] if None in kinds else list(kinds)
    status_col = (
        ["unset" if s is None else s for s in statuses] if None in statuses else list(statuses)
    )
    message_col = ["" if m is None else m for m in messages] if None in messages else list(messages)

    cols: dict[str, Any] = {
        "trace_id": trace_ids,
        "span_id": span_ids,
        "parent_span_id": parent_col,
        "session_id": session_col,
        "agent": agents,
        "name": names,
        "kind": kind_col,
        "start_ns": starts,
        "end_ns": ends,
        "duration_ns": duration,
        "status": status_col,
        "status_message": message_col,
        "input": _json_column(inputs, limits.max_io_bytes),
        "output": _json_column(outputs, limits.max_io_bytes),
    }
    _attribute_columns(attrs, n, cols)
    cols["events"] = _events_column(events, n) if events.count(None) != n else [[]] * n
    if invoke.count(None) == n:
        cols["invoke_agent"] = [0] * n
    else:
        cols["invoke_agent"] = [1 if v is True else 0 for v in invoke]

    _inherit_sessions(cols)
    if invoke.count(None) != n:
        _resolve_invoke_agent(cols)
    return cols


def _times(values: tuple) -> list[int]:
    if str not in set(map(type, values)):
        return list(values)
    out = []
    for v in values:
        if type(v) is str:
            v, err = parse_time(v, "")
            if err:
                raise _Decline
        out.append(v)
    return out


def _json_column(raws: tuple, limit: int) -> list[Any]:
    """``input``/``output``: orjson parses the raw values (as the slow path does); objects and
    arrays become their canonical JSON text (bytes), other values their JSON
    text as a string, absent ones ``""``. An object or array sent exactly as orjson writes it
    is kept as sent (``_otlpwire.canonical_json``: the same bytes, without the round trip)."""
    n = len(raws)
    if raws.count(_NULL) == n:
        return [""] * n
    col: list[Any] = [""] * n
    parse: list[int] = []  # the values the scan leaves to orjson
    if _canonical_json is None:
        parse = [i for i in range(n) if raws[i] != _NULL]
    else:
        for i, raw in enumerate(raws):
            text = _canonical_json(raw)
            if text is None:
                if raw != _NULL:
                    parse.append(i)
            elif len(text) > limit:
                raise _Decline
            else:
                col[i] = text
    if not parse:
        return col
    try:
        values = orjson.loads(b"[" + b",".join([raws[i] for i in parse]) + b"]")
    except orjson.JSONDecodeError:
        raise _Decline from None
    if len(values) != len(parse):
        raise _Decline
    dumps = orjson.dumps
    for i, v in zip(parse, values, strict=True):
        if v is None:
            continue
        try:
            text = dumps(v)
        except orjson.JSONEncodeError:  # nested deeper than orjson encodes: the slow path says so
            raise _Decline from None
        if len(text) > limit:  # canonical text can outgrow the raw text (1E15 → 1000000000000000.0)
            raise _Decline
        col[i] = text if type(v) in _CONTAINERS else text.decode()
    return col


def _attribute_columns(attrs: tuple, n: int, cols: dict[str, Any]) -> None:
    model = [""] * n
    provider = [""] * n
    tokens_in: list[Any] = [None] * n
    tokens_out: list[Any] = [None] * n
    cost: list[Any] = [None] * n
    partial = [0] * n
    attempt = [0] * n
    reason = [""] * n
    constraints: list[Any] = [[]] * n
    required: list[Any] = [[]] * n
    present: list[Any] = [[]] * n
    state_key = [""] * n
    state_version: list[Any] = [None] * n
    state_op = [""] * n
    special = _SPECIAL.intersection
    attr_col: list[Any] = list(attrs)
    for i, a in enumerate(attrs):
        if not a:
            attr_col[i] = _EMPTY
            continue
        keys = special(a)
        if not keys:
            continue
        get = a.get
        for k in MODEL_KEYS:
            v = get(k)
            if type(v) is str and v:
                model[i] = v
                break
        for k in PROVIDER_KEYS:
            v = get(k)
            if type(v) is str and v:
                provider[i] = v
                break
        for k in TOKENS_IN_KEYS:
            v = get(k)
            if type(v) is int or type(v) is float:
                tokens_in[i] = usage_count(v)
                break
        for k in TOKENS_OUT_KEYS:
            v = get(k)
            if type(v) is int or type(v) is float:
                tokens_out[i] = usage_count(v)
                break
        v = get("llm.cost.total")
        if type(v) is int or type(v) is float:
            cost[i] = v
        if keys.isdisjoint(_KRIY_KEYS):
            continue
        # kriy.* conventions (native._kriy): a wrong type is the slow path's error to report.
        v = get("kriy.result.partial")
        if v is not None:
            if type(v) is not bool:
                raise _Decline
            partial[i] = 1 if v else 0
        v = get("kriy.retry.attempt")
        if v is not None:
            if type(v) is not int or not 0 <= v < 2**63:
                raise _Decline
            attempt[i] = v
        v = get("kriy.retry.reason")
        if v is not None:
            if type(v) is not str:
                raise _Decline
            reason[i] = v
        for key, col in (
            ("kriy.constraints", constraints),
            ("kriy.context.required", required),
            ("kriy.context.present", present),
        ):
            v = get(key)
            if v is not None:
                if type(v) is not list or set(map(type, v)) - {str}:
                    raise _Decline
                col[i] = v
        v = get("kriy.state.key")
        if v is not None:
            if type(v) is not str:
                raise _Decline
            state_key[i] = v
        v = get("kriy.state.version")
        if v is not None:
            if type(v) is not int or not -(2**63) <= v < 2**63:
                raise _Decline
            state_version[i] = v
        v = get("kriy.state.op")
        if v is not None:
            if v != "read" and v != "write":
                raise _Decline
            state_op[i] = v
    cols["attributes"] = attr_col
    cols["model"] = model
    cols["provider"] = provider
    cols["tokens_in"] = tokens_in
    cols["tokens_out"] = tokens_out
    cols["cost_usd"] = cost
    cols["result_partial"] = partial
    cols["retry_attempt"] = attempt
    cols["retry_reason"] = reason
    cols["constraints"] = constraints
    cols["context_required"] = required
    cols["context_present"] = present
    cols["state_key"] = state_key
    cols["state_version"] = state_version
    cols["state_op"] = state_op


_EMPTY: dict[str, Any] = {}


def _events_column(events: tuple, n: int) -> list[Any]:
    col: list[Any] = []
    for evs in events:
        if not evs:
            col.append([])
            continue
        out = []
        for ev in evs:
            t = ev.time
            if type(t) is str:
                t, err = parse_time(t, "")
                if err:
                    raise _Decline
            out.append({"name": ev.name, "time": t, "attributes": ev.attributes or {}})
        col.append(out)
    return col


def _inherit_sessions(cols: dict[str, Any]) -> None:
    """native.inherit_sessions over columns."""
    sessions = cols["session_id"]
    if "" not in sessions:
        return
    roots = {
        t: s
        for t, p, s in zip(cols["trace_id"], cols["parent_span_id"], sessions, strict=True)
        if not p and s
    }
    if roots:
        get = roots.get
        cols["session_id"] = [
            s or get(t, "") for s, t in zip(sessions, cols["trace_id"], strict=True)
        ]


def _resolve_invoke_agent(cols: dict[str, Any]) -> None:
    """native.resolve_invoke_agent over columns."""
    trace_ids, span_ids, parents = cols["trace_id"], cols["span_id"], cols["parent_span_id"]
    kinds, agents, flags = cols["kind"], cols["agent"], cols["invoke_agent"]
    flagged = [i for i, f in enumerate(flags) if f and parents[i] and kinds[i] == "agent"]
    if not flagged:
        return
    by_id = dict(zip(zip(trace_ids, span_ids, strict=True), agents, strict=True))
    kinds = list(kinds)
    for i in flagged:
        parent_agent = by_id.get((trace_ids[i], parents[i]))
        if parent_agent is not None and parent_agent != agents[i]:
            kinds[i] = "handoff"
    cols["kind"] = kinds
