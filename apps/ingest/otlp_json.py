"""OTLP/JSON without ``json_format``: the decoded document wrapped in light objects that answer
the same attribute API the OTLP mapping reads from protobuf messages.

``google.protobuf.json_format`` walks every field in pure Python through reflection (~4,000
spans/s). Here orjson parses the body and each span, attribute and value becomes a small object
with exactly the fields the mapping reads (``trace_id`` bytes, ``attributes``, ``WhichOneof``…),
so ``to_native`` and the fast column path run unchanged on JSON and protobuf alike
(tests/ingest/test_otlp_json_equivalence.py proves they map identically). The OTLP JSON rules
(otlp-reference.md §1) apply: hex ids (case-insensitive), integer enums (names accepted too),
64-bit integers as strings or numbers, lowerCamelCase keys (proto field names also accepted, as
json_format does), unknown fields ignored. A document of the wrong shape raises OtlpJsonError
naming the place. Locations are only formatted when something is wrong: the happy path builds
no strings.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}
_VALUE_KEYS = (
    ("stringValue", "string_value"),
    ("boolValue", "bool_value"),
    ("intValue", "int_value"),
    ("doubleValue", "double_value"),
    ("arrayValue", "array_value"),
    ("kvlistValue", "kvlist_value"),
    ("bytesValue", "bytes_value"),
)
_KEY_TO_FIELD = {camel: snake for camel, snake in _VALUE_KEYS} | {
    snake: snake for _c, snake in _VALUE_KEYS
}
# the nesting json_format allowed (100 message levels: a request, its resource, scope, span and
# key-value take 5; each array or kvlist level takes 2)
_MAX_DEPTH = 47
_I64 = (-(2**63), 2**63 - 1)
_U64 = (0, 2**64 - 1)


class OtlpJsonError(ValueError):
    pass


def _fail(where: tuple, rule: str) -> OtlpJsonError:
    path = "".join(
        f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(where)
    )
    return OtlpJsonError(f"{path}: {rule}")


def _get(obj: dict, camel: str, snake: str) -> Any:
    v = obj.get(camel)
    return obj.get(snake) if v is None else v


def _list(obj: dict, camel: str, snake: str, where: tuple) -> list:
    v = obj.get(camel)
    if v is None:
        v = obj.get(snake)
        if v is None:
            return []
    if type(v) is not list:
        raise _fail((*where, camel), "must be a list")
    return v


def _dict(v: Any, where: tuple) -> dict:
    if type(v) is not dict:
        raise _fail(where, "must be an object")
    return v


def _int(v: Any, where: tuple, bounds: tuple[int, int]) -> int:
    t = type(v)
    if t is int:
        n = v
    elif t is str:
        try:
            n = int(v)
        except ValueError:
            raise _fail(where, "must be an integer (a number or a decimal string)") from None
    elif v is None:
        return 0
    else:
        raise _fail(where, "must be an integer (a number or a decimal string)")
    if bounds[0] <= n <= bounds[1]:
        return n
    raise _fail(where, "out of range")


def _str(v: Any, where: tuple) -> str:
    if type(v) is str:
        return v
    if v is None:
        return ""
    raise _fail(where, "must be a string")


def _id(v: Any, size: int, where: tuple) -> bytes:
    if v is None or v == "":
        return b""
    if type(v) is not str:
        raise _fail(where, "must be a hex string")
    try:
        raw = bytes.fromhex(v) if len(v) == 2 * size else b""
    except ValueError:
        raw = b""
    if len(raw) != size:  # fromhex skips whitespace: check the length of what it made
        raise _fail(where, f"must be {2 * size} hex characters")
    return raw


def _double(v: Any, where: tuple) -> float:
    t = type(v)
    if t is float or t is int:
        return float(v)
    if v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    if t is str:
        try:
            return float(v)
        except ValueError:
            pass
    raise _fail(where, "must be a number")


class _Values:
    __slots__ = ("values",)

    def __init__(self, values: list):
        self.values = values


class AnyValue:
    """An AnyValue: the one field the document sets, protobuf defaults for the others."""

    string_value = ""
    bool_value = False
    int_value = 0
    double_value = 0.0
    bytes_value = b""
    array_value = None
    kvlist_value = None
    _t: str | None = None

    def __init__(self, obj: Any, where: tuple, depth: int):
        if type(obj) is not dict:
            raise _fail(where, "must be an object")
        for key, v in obj.items():
            field = _KEY_TO_FIELD.get(key)
            if field is None or v is None:
                continue  # unknown fields are ignored
            self._t = field
            if field == "string_value":
                if type(v) is not str:
                    raise _fail((*where, key), "must be a string")
                self.string_value = v
            elif field == "int_value":
                self.int_value = _int(v, (*where, key), _I64)
            elif field == "bool_value":
                if type(v) is not bool:
                    raise _fail((*where, key), "must be true or false")
                self.bool_value = v
            elif field == "double_value":
                self.double_value = _double(v, (*where, key))
            elif field == "bytes_value":
                try:
                    self.bytes_value = base64.b64decode(_str(v, (*where, key)), validate=True)
                except binascii.Error:
                    raise _fail((*where, key), "must be base64") from None
            else:
                if depth >= _MAX_DEPTH:
                    raise _fail(where, "nested too deeply")
                inner = (*where, key)
                values = _list(_dict(v, inner), "values", "values", inner)
                if field == "array_value":
                    self.array_value = _Values(
                        [
                            AnyValue(x, (*inner, "values", i), depth + 1)
                            for i, x in enumerate(values)
                        ]
                    )
                else:
                    self.kvlist_value = _Values(_key_values(values, (*inner, "values"), depth + 1))
            break

    def WhichOneof(self, _group: str) -> str | None:
        return self._t


_EMPTY = {}


class KeyValue:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: AnyValue):
        self.key = key
        self.value = value


def _key_values(items: list, where: tuple, depth: int = 0) -> list[KeyValue]:
    out = []
    for i, kv in enumerate(items):
        if type(kv) is not dict:
            raise _fail((*where, i), "must be an object")
        key = kv.get("key")
        if type(key) is not str:
            key = _str(key, (*where, i, "key"))
        value = kv.get("value")
        out.append(
            KeyValue(key, AnyValue(_EMPTY if value is None else value, (*where, i, "value"), depth))
        )
    return out


class _Obj:
    """A message: attributes set from the document, protobuf defaults otherwise."""

    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


def _status(obj: Any, where: tuple) -> _Obj:
    if obj is None:
        return _Obj(code=0, message="")
    obj = _dict(obj, where)
    code = obj.get("code", 0)
    if type(code) is str and code in _STATUS_NAMES:
        code = _STATUS_NAMES[code]
    return _Obj(
        code=_int(code, (*where, "code"), (-(2**31), 2**31 - 1)),
        message=_str(obj.get("message"), (*where, "message")),
    )


def _span(obj: Any, where: tuple) -> _Obj:
    obj = _dict(obj, where)
    events = []
    for i, ev in enumerate(_list(obj, "events", "events", where)):
        ew = (*where, "events", i)
        ev = _dict(ev, ew)
        events.append(
            _Obj(
                name=_str(ev.get("name"), (*ew, "name")),
                time_unix_nano=_int(
                    _get(ev, "timeUnixNano", "time_unix_nano"), (*ew, "timeUnixNano"), _U64
                ),
                attributes=_key_values(
                    _list(ev, "attributes", "attributes", ew), (*ew, "attributes")
                ),
            )
        )
    links = []
    for i, ln in enumerate(_list(obj, "links", "links", where)):
        lw = (*where, "links", i)
        ln = _dict(ln, lw)
        links.append(
            _Obj(
                trace_id=_id(_get(ln, "traceId", "trace_id"), 16, (*lw, "traceId")),
                span_id=_id(_get(ln, "spanId", "span_id"), 8, (*lw, "spanId")),
            )
        )
    return _Obj(
        trace_id=_id(_get(obj, "traceId", "trace_id"), 16, (*where, "traceId")),
        span_id=_id(_get(obj, "spanId", "span_id"), 8, (*where, "spanId")),
        parent_span_id=_id(
            _get(obj, "parentSpanId", "parent_span_id"), 8, (*where, "parentSpanId")
        ),
        name=_str(obj.get("name"), (*where, "name")),
        start_time_unix_nano=_int(
            _get(obj, "startTimeUnixNano", "start_time_unix_nano"),
            (*where, "startTimeUnixNano"),
            _U64,
        ),
        end_time_unix_nano=_int(
            _get(obj, "endTimeUnixNano", "end_time_unix_nano"), (*where, "endTimeUnixNano"), _U64
        ),
        attributes=_key_values(
            _list(obj, "attributes", "attributes", where), (*where, "attributes")
        ),
        events=events,
        links=links,
        status=_status(obj.get("status"), (*where, "status")),
    )


def parse_request(doc: Any) -> _Obj:
    """An ExportTraceServiceRequest look-alike from a decoded OTLP/JSON document."""
    doc = _dict(doc, ("body",))
    resource_spans = []
    for i, rs in enumerate(_list(doc, "resourceSpans", "resource_spans", ("body",))):
        where = ("resourceSpans", i)
        rs = _dict(rs, where)
        resource = rs.get("resource")
        resource = _dict(resource, (*where, "resource")) if resource is not None else {}
        scope_spans = []
        for j, ss in enumerate(_list(rs, "scopeSpans", "scope_spans", where)):
            sw = (*where, "scopeSpans", j)
            ss = _dict(ss, sw)
            scope = ss.get("scope")
            scope = _dict(scope, (*sw, "scope")) if scope is not None else {}
            spans = [
                _span(sp, (*sw, "spans", k)) for k, sp in enumerate(_list(ss, "spans", "spans", sw))
            ]
            scope_spans.append(
                _Obj(
                    scope=_Obj(
                        name=_str(scope.get("name"), (*sw, "scope", "name")),
                        version=_str(scope.get("version"), (*sw, "scope", "version")),
                    ),
                    spans=spans,
                )
            )
        rwhere = (*where, "resource")
        resource_spans.append(
            _Obj(
                resource=_Obj(
                    attributes=_key_values(
                        _list(resource, "attributes", "attributes", rwhere), (*rwhere, "attributes")
                    )
                ),
                scope_spans=scope_spans,
            )
        )
    return _Obj(resource_spans=resource_spans)
