"""Fast path of ``POST /v1/traces``: an OTLP request whose spans all map and validate, straight
to columns (``apps.ingest.rows``), without the native span dicts in between.

``otlp_columns`` applies the mapping of ``otlp.to_native`` and the rules of
``native.validate_spans`` in one pass, checking only what an OTLP span can get wrong (its ids,
times and strings are typed by protobuf already). It returns ``None`` whenever a span would be
refused or anything is unusual; the caller then runs ``to_native`` + ``validate_spans``, which own
every error message and the partial-success answer. The columns it returns are the ones the slow
path stores (``tests/ingest/test_fastotlp.py``).
"""

from __future__ import annotations

import base64
import math
import operator
from typing import Any

import orjson

from apps.ingest.fastnative import _inherit_sessions, _resolve_invoke_agent
from apps.ingest.native import (
    MAX_NS,
    MODEL_KEYS,
    PROVIDER_KEYS,
    TOKENS_IN_KEYS,
    TOKENS_OUT_KEYS,
    Limits,
    usage_count,
)
from apps.ingest.otlp import (
    _HANDOFF_PREFIX,
    _OPENINFERENCE_KIND,
    _OPERATION_KIND,
    _PLAIN,
    _SCALAR_TYPES,
    _STATUS,
    _ZERO_SPAN_ID,
    _ZERO_TRACE_ID,
    ExportTraceServiceRequest,
    _any_to_py,
    _convert_kvs,
    _finite,
    _flattened_messages,
    _is_json_mime,
    _text,
    _TooDeepError,
    context_from_attributes,
    resource_context,
    scope_base,
    scope_base_values,
)

try:  # compiled at install (pip install -e .); without it, protobuf's objects are read
    from apps.ingest._otlpwire import canonical_json as _canonical_json
    from apps.ingest._otlpwire import decode as _wire_decode
except ImportError:  # pragma: no cover - a build without a C compiler
    _wire_decode = None
    _canonical_json = None

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
_USAGE_KEYS = frozenset((*MODEL_KEYS, *PROVIDER_KEYS, *TOKENS_IN_KEYS, *TOKENS_OUT_KEYS))


_MIME_IS_JSON: dict[Any, bool] = {}


def _json_mime(mime: Any) -> bool:
    """otlp._is_json_mime, remembered per value (a request carries few distinct ones)."""
    try:
        return _MIME_IS_JSON[mime]
    except KeyError:
        pass
    except TypeError:  # unhashable: cannot be a mime string anyway
        return False
    ok = _is_json_mime(mime)
    if len(_MIME_IS_JSON) < 64:
        _MIME_IS_JSON[mime] = ok
    return ok


class _Decline(Exception):
    """Not a request this path can vouch for: the slow path decides."""


def otlp_columns(
    req: ExportTraceServiceRequest, limits: Limits, max_spans: int
) -> tuple[dict[str, Any], int] | None:
    """The columns and row count of an OTLP request whose spans are all valid, else None."""
    try:
        n = sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
        if not n or n > max_spans:
            return None
        return _Columns(n, limits).build(req), n
    except Exception:  # _Decline, or anything unforeseen: the detailed path decides
        return None


def otlp_columns_from_bytes(
    data: bytes, limits: Limits, max_spans: int
) -> tuple[dict[str, Any], int] | None:
    """``otlp_columns`` for a protobuf body read straight off the wire (``_otlpwire``), without
    protobuf's Python objects; None when the reader or the mapping declines (the caller then
    decodes the request with protobuf)."""
    if _wire_decode is None:
        return None
    try:
        parsed = _wire_decode(data, limits.max_attribute_bytes)
        if parsed is None:
            return None
        resources, n = parsed
        if not n or n > max_spans:
            return None
        return _Columns(n, limits).build_wire(resources), n
    except Exception:  # _Decline, or anything unforeseen: the detailed path decides
        return None


def _check_attributes(attrs: dict, limits: Limits) -> None:
    """native._check_attributes for values made by otlp._convert_kvs (scalars, lists of
    scalars, JSON text): only sizes and keys can be wrong."""
    if len(attrs) > limits.max_attributes:
        raise _Decline
    max_bytes = limits.max_attribute_bytes
    for key, value in attrs.items():
        t = type(value)
        if t is str:
            if len(value) > max_bytes:
                raise _Decline
        elif t is list:
            size = 0
            for item in value:
                if type(item) is str:
                    size += len(item)
            if size > max_bytes:
                raise _Decline
        if not 0 < len(key) <= 256:
            raise _Decline


class _Columns:
    def __init__(self, n: int, limits: Limits):
        self.limits = limits
        self.rows: list[tuple] = []  # per span, in _ROW order
        self.keys: set[str] = set()  # every attribute key of the request
        # Columns that are mostly defaults: filled in place for the spans that set them.
        self.model = [""] * n
        self.provider = [""] * n
        self.tokens_in: list[Any] = [None] * n
        self.tokens_out: list[Any] = [None] * n
        self.cost_usd: list[Any] = [None] * n
        self.result_partial = [0] * n
        self.retry_attempt = [0] * n
        self.retry_reason = [""] * n
        self.constraints: list[Any] = [[]] * n
        self.context_required: list[Any] = [[]] * n
        self.context_present: list[Any] = [[]] * n
        self.state_key = [""] * n
        self.state_version: list[Any] = [None] * n
        self.state_op = [""] * n

    def build(self, req: ExportTraceServiceRequest) -> dict[str, Any]:
        limits = self.limits
        for rs in req.resource_spans:
            context = resource_context(rs)
            if isinstance(context, str):
                raise _Decline  # nested too deeply: the slow path names it
            res_base, service, res_session = context
            for ss in rs.scope_spans:
                base = scope_base(res_base, ss.scope)
                if base:
                    _check_attributes(base, limits)
                    self.keys.update(base)
                for sp in ss.spans:
                    self._span(sp, base, service, res_session)
        return self._finish()

    def build_wire(self, resources: list) -> dict[str, Any]:
        """``build`` for what ``_otlpwire.decode`` read."""
        limits = self.limits
        add = self._add
        for resource, scopes in resources:
            res_base, service, res_session = context_from_attributes(resource)
            for scope_name, scope_version, spans in scopes:
                base = scope_base_values(res_base, scope_name, scope_version)
                if base:
                    _check_attributes(base, limits)
                    self.keys.update(base)
                for span in spans:  # the reader's 13-tuple (``_otlpwire.decode``)
                    attrs = base.copy()
                    attrs.update(span[8])  # the span's own attributes over the resource's
                    add(span, attrs, service, res_session)
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        limits = self.limits
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
            attributes,
            events,
            invoke,
        ) = zip(*self.rows, strict=True)
        n = len(span_ids)
        if len(set(zip(trace_ids, span_ids, strict=True))) != n:
            raise _Decline  # a repeated span: the slow path names it
        if max(starts) > MAX_NS or max(ends) > MAX_NS:
            raise _Decline
        duration = list(map(operator.sub, ends, starts))
        if min(duration) < 0:
            raise _Decline
        if max(map(len, agents)) > 128 or max(map(len, names)) > 256:
            raise _Decline
        if "\x00" in "".join(agents) or "\x00" in "".join(names) or "\x00" in "".join(sessions):
            raise _Decline  # the slow path names the field
        if max(map(len, sessions)) > 256 or max(map(len, messages)) > 4096:
            raise _Decline
        keys = self.keys
        if "" in keys or max(map(len, keys), default=0) > 256:
            raise _Decline
        if max(map(len, events)) > limits.max_events:
            raise _Decline
        cols: dict[str, Any] = {
            "trace_id": trace_ids,
            "span_id": span_ids,
            "parent_span_id": parents,
            "session_id": list(sessions),
            "agent": agents,
            "name": names,
            "kind": list(kinds),
            "start_ns": starts,
            "end_ns": ends,
            "duration_ns": duration,
            "status": statuses,
            "status_message": messages,
            "input": self._json_column(inputs),
            "output": self._json_column(outputs),
            "attributes": attributes,
            "events": events,
            "result_partial": self.result_partial,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
            "constraints": self.constraints,
            "context_required": self.context_required,
            "context_present": self.context_present,
            "state_key": self.state_key,
            "state_version": self.state_version,
            "state_op": self.state_op,
            "invoke_agent": invoke,
            "model": self.model,
            "provider": self.provider,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": self.cost_usd,
        }
        _inherit_sessions(cols)
        if 1 in invoke:
            _resolve_invoke_agent(cols)
        return cols

    def _json_column(self, values: tuple) -> list[Any]:
        """input/output as the slow path stores them (native._json_text): objects and arrays as
        their JSON text (bytes), other values as JSON text, absent ones ``""``."""
        dumps = orjson.dumps
        limit = self.limits.max_io_bytes
        col: list[Any] = []
        append = col.append
        for v in values:
            if v is None:
                append("")
                continue
            if type(v) is bytes:  # JSON text already canonical (``_parse``)
                if len(v) > limit:
                    raise _Decline
                append(v)
                continue
            try:
                text = dumps(v)
            except orjson.JSONEncodeError:  # nested deeper than orjson encodes: slow path says so
                raise _Decline from None
            if len(text) > limit:
                raise _Decline
            append(text if type(v) in _CONTAINERS else text.decode())
        return col

    def _parse(self, text: str) -> Any:
        """otlp._parse_json_text (sizes are measured on the canonical text, _json_column).

        A JSON object or array already written as orjson writes it comes back as its UTF-8
        bytes, stored as is (``_json_column``): the same bytes as parsing it and writing it
        again, without building the objects. No parsed value is ``bytes``."""
        if _canonical_json is not None:
            raw = _canonical_json(text)
            if raw is not None:
                return raw
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        return value

    def _content(self, attrs: dict, structured: dict, key: str) -> Any:
        """otlp._content."""
        if key in structured:
            attrs.pop(key, None)
            return structured[key]
        v = attrs.pop(key)
        if type(v) is not str:
            return v
        return self._parse(v)

    def _span(self, sp: Any, base: dict, service: str | None, res_session: str | None) -> None:
        """One protobuf Span object."""
        attrs = base.copy()
        structured: dict = {}
        check = _convert_span_kvs(sp.attributes, attrs, structured, self.limits.max_attribute_bytes)
        events = None
        if sp.events:
            events = []
            for ev in sp.events:
                ev_attrs: dict = {}
                if _convert_kvs(ev.attributes, ev_attrs, None) is not None:
                    raise _Decline
                events.append((ev.name, ev.time_unix_nano, ev_attrs))
        links = sp.links
        status = sp.status
        span = (
            sp.trace_id,
            sp.span_id,
            sp.parent_span_id,
            sp.name,
            sp.start_time_unix_nano,
            sp.end_time_unix_nano,
            status.code,
            status.message,
            None,  # the span's own attributes: already in ``attrs``
            structured,
            check,
            events,
            [(ln.trace_id, ln.span_id) for ln in links] if links else None,
        )
        self._add(span, attrs, service, res_session)

    def _add(self, span: tuple, attrs: dict, service: str | None, res_session: str | None) -> None:
        """One span as the wire reader's 13-tuple (``_otlpwire.decode``; the object path builds
        the same), with ``attrs`` its converted attributes, resource and scope ones included."""
        (
            trace_id,
            span_id,
            parent,
            name,
            start,
            end,
            code,
            message,
            _own,
            structured,
            check,
            events_in,
            links,
        ) = span
        if (
            len(trace_id) != 16
            or trace_id == _ZERO_TRACE_ID
            or len(span_id) != 8
            or span_id == _ZERO_SPAN_ID
            or (parent and len(parent) != 8)
            or not name
        ):
            raise _Decline
        i = len(self.rows)
        limits = self.limits
        get = attrs.get

        invoke_agent = 0
        kind = None
        oi_kind = get("openinference.span.kind")
        op = get("gen_ai.operation.name")
        if type(op) is str:
            if op == "invoke_agent":
                kind = "agent"
                invoke_agent = 1
            else:
                kind = _OPERATION_KIND.get(op)
        if kind is None:
            if type(oi_kind) is str:
                kind = _OPENINFERENCE_KIND.get(oi_kind, "step")
                if kind == "tool" and name.startswith(_HANDOFF_PREFIX):
                    kind = "handoff"
            else:
                kind = "step"

        agent = get("gen_ai.agent.name")
        if type(agent) is not str or not agent:
            agent = _text(agent) or _text(get("agent.name")) or service or "unknown"
        session = get("session.id")
        if type(session) is not str or not session:
            text = _text(session) if session is not None else None
            if text is None:
                conv = get("gen_ai.conversation.id")
                text = conv if type(conv) is str and conv else _text(conv)
            session = text or res_session or ""

        inp = out = None
        if "input.value" in attrs:
            inp = attrs.pop("input.value")
            if _json_mime(attrs.pop("input.mime_type", None)) and type(inp) is str:
                inp = self._parse(inp)
            elif "input.value" in structured:
                inp = structured["input.value"]
        elif "gen_ai.input.messages" in attrs:
            inp = self._content(attrs, structured, "gen_ai.input.messages")
        elif "gen_ai.tool.call.arguments" in attrs:
            inp = self._content(attrs, structured, "gen_ai.tool.call.arguments")
        elif oi_kind == "LLM":
            inp = _flattened_messages(attrs, "llm.input_messages.")
        if "output.value" in attrs:
            out = attrs.pop("output.value")
            if _json_mime(attrs.pop("output.mime_type", None)) and type(out) is str:
                out = self._parse(out)
            elif "output.value" in structured:
                out = structured["output.value"]
        elif "gen_ai.output.messages" in attrs:
            out = self._content(attrs, structured, "gen_ai.output.messages")
        elif "gen_ai.tool.call.result" in attrs:
            out = self._content(attrs, structured, "gen_ai.tool.call.result")
        elif oi_kind == "LLM":
            out = _flattened_messages(attrs, "llm.output_messages.")

        if links:
            attrs["otel.links"] = orjson.dumps(
                [{"trace_id": t.hex(), "span_id": s.hex()} for t, s in links]
            ).decode()
            check = True

        events: list = []
        if events_in:
            for ev_name, t, ev_attrs in events_in:
                if not 0 < len(ev_name) <= 256 or t > MAX_NS:
                    raise _Decline
                if ev_attrs:
                    _check_attributes(ev_attrs, limits)
                events.append({"name": ev_name, "time": t, "attributes": ev_attrs})

        if len(attrs) > limits.max_attributes:
            raise _Decline
        if check:
            _check_attributes(attrs, limits)
        self.keys.update(attrs)
        if not _USAGE_KEYS.isdisjoint(attrs):
            self._usage(i, get)
        v = get("llm.cost.total")
        if v is not None and (type(v) is int or type(v) is float):
            self.cost_usd[i] = v
        if not _KRIY_KEYS.isdisjoint(attrs):
            self._kriy(i, get)

        self.rows.append(
            (
                trace_id.hex(),
                span_id.hex(),
                parent.hex() if parent and parent != _ZERO_SPAN_ID else "",
                session,
                agent,
                name,
                kind,
                start,
                end,
                _STATUS.get(code, "unset"),
                message,
                inp,
                out,
                attrs,
                events,
                invoke_agent,
            )
        )

    def _usage(self, i: int, get: Any) -> None:
        for k in MODEL_KEYS:
            v = get(k)
            if type(v) is str and v:
                self.model[i] = v
                break
        for k in PROVIDER_KEYS:
            v = get(k)
            if type(v) is str and v:
                self.provider[i] = v
                break
        for k in TOKENS_IN_KEYS:
            v = get(k)
            if type(v) is int or type(v) is float:
                self.tokens_in[i] = usage_count(v)
                break
        for k in TOKENS_OUT_KEYS:
            v = get(k)
            if type(v) is int or type(v) is float:
                self.tokens_out[i] = usage_count(v)
                break

    def _kriy(self, i: int, get: Any) -> None:
        """native._kriy; a wrong type is the slow path's error to report."""
        v = get("kriy.result.partial")
        if v is not None:
            if type(v) is not bool:
                raise _Decline
            self.result_partial[i] = 1 if v else 0
        v = get("kriy.retry.attempt")
        if v is not None:
            if type(v) is not int or v < 0:
                raise _Decline
            self.retry_attempt[i] = v
        v = get("kriy.retry.reason")
        if v is not None:
            if type(v) is not str:
                raise _Decline
            self.retry_reason[i] = v
        for key, col in (
            ("kriy.constraints", self.constraints),
            ("kriy.context.required", self.context_required),
            ("kriy.context.present", self.context_present),
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
            self.state_key[i] = v
        v = get("kriy.state.version")
        if v is not None:
            if type(v) is not int:
                raise _Decline
            self.state_version[i] = v
        v = get("kriy.state.op")
        if v is not None:
            if v != "read" and v != "write":
                raise _Decline
            self.state_op[i] = v


def _convert_span_kvs(kvs: Any, out: dict, structured: dict, max_bytes: int) -> bool:
    """otlp._convert_kvs (with ``structured``), declining instead of reporting depth.

    Returns whether a value may break a size rule (a long string, a list, JSON text), so that
    the attributes need ``_check_attributes``."""
    check = False
    for kv in kvs:
        v = kv.value
        s = v.string_value
        if s:  # the common case: a non-empty string
            out[kv.key] = s
            if len(s) > max_bytes:
                check = True
            continue
        t = v.WhichOneof("value")
        if t in _PLAIN:
            out[kv.key] = getattr(v, t)
            continue
        if t is None:
            continue
        if t == "double_value":
            d = v.double_value
            out[kv.key] = d if math.isfinite(d) else _finite(d)
            continue
        check = True
        if t == "bytes_value":
            out[kv.key] = base64.b64encode(v.bytes_value).decode("ascii")
            continue
        if t == "array_value":
            lst = []
            for x in v.array_value.values:
                xt = x.WhichOneof("value")
                if xt not in _PLAIN:
                    break
                lst.append(getattr(x, xt))
            else:
                out[kv.key] = lst
                structured[kv.key] = lst
                continue
        try:
            py = _any_to_py(v, 0)
        except _TooDeepError:
            raise _Decline from None
        if t == "array_value" and all(type(x) in _SCALAR_TYPES for x in py):
            out[kv.key] = py
        else:
            out[kv.key] = orjson.dumps(py).decode()
        structured[kv.key] = py
    return check
