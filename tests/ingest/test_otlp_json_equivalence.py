"""OTLP/JSON decoded without json_format maps exactly like the same request sent as protobuf."""

from __future__ import annotations

import base64
import math

import orjson
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from apps.ingest.fastotlp import otlp_columns
from apps.ingest.native import Limits
from apps.ingest.otlp import decode_request, to_native

scalars = st.one_of(
    st.text(max_size=20).map(lambda s: AnyValue(string_value=s)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.floats(allow_nan=False, allow_infinity=False).map(lambda d: AnyValue(double_value=d)),
    st.binary(max_size=8).map(lambda b: AnyValue(bytes_value=b)),
)


def _array(values: list[AnyValue]) -> AnyValue:
    v = AnyValue()
    v.array_value.values.extend(values)
    return v


def _kvlist(items: list[tuple[str, AnyValue]]) -> AnyValue:
    v = AnyValue()
    v.kvlist_value.values.extend(KeyValue(key=k, value=x) for k, x in items)
    return v


values = st.recursive(
    scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3).map(_array),
        st.lists(st.tuples(st.text(max_size=5), kids), max_size=3).map(_kvlist),
    ),
    max_leaves=8,
)
keys = st.sampled_from(
    [
        "gen_ai.agent.name",
        "gen_ai.operation.name",
        "session.id",
        "input.value",
        "input.mime_type",
        "kriy.result.partial",
        "kriy.retry.attempt",
        "kriy.constraints",
        "openinference.span.kind",
        "gen_ai.usage.input_tokens",
        "x",
        "y.z",
    ]
)
attributes = st.dictionaries(keys, values, max_size=6)
ids = st.binary(min_size=8, max_size=8)


@st.composite
def requests(draw) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(1, 2))):
        rs = req.resource_spans.add()
        for k, v in draw(attributes).items():
            rs.resource.attributes.append(KeyValue(key=k, value=v))
        ss = rs.scope_spans.add()
        ss.scope.name = draw(st.text(max_size=5))
        for _ in range(draw(st.integers(0, 3))):
            sp = ss.spans.add()
            sp.trace_id = draw(st.binary(min_size=16, max_size=16))
            sp.span_id = draw(ids)
            if draw(st.booleans()):
                sp.parent_span_id = draw(ids)
            sp.name = draw(st.text(max_size=10))
            sp.start_time_unix_nano = draw(st.integers(0, 2**63 - 1))
            sp.end_time_unix_nano = draw(st.integers(0, 2**63 - 1))
            sp.status.code = draw(st.integers(0, 2))
            sp.status.message = draw(st.text(max_size=5))
            for k, v in draw(attributes).items():
                sp.attributes.append(KeyValue(key=k, value=v))
            for _ in range(draw(st.integers(0, 2))):
                ev = sp.events.add()
                ev.name = draw(st.text(max_size=5))
                ev.time_unix_nano = draw(st.integers(0, 2**63 - 1))
            if draw(st.booleans()):
                ln = sp.links.add()
                ln.trace_id, ln.span_id = draw(st.binary(min_size=16, max_size=16)), draw(ids)
    return req


def as_otlp_json(req: ExportTraceServiceRequest) -> bytes:
    doc = json_format.MessageToDict(req)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for sp in ss.get("spans", []):
                for obj in (sp, *sp.get("links", [])):
                    for k in ("traceId", "spanId", "parentSpanId"):
                        if k in obj:
                            obj[k] = base64.b64decode(obj[k]).hex()
    return orjson.dumps(doc)


def _json_text(value: object) -> orjson.Fragment:
    if isinstance(value, bytes):  # a column cell holding the JSON text of an object or array
        return orjson.Fragment(value)
    raise TypeError(type(value).__name__)


def _normalized(mapped: list) -> bytes:
    # NaN never occurs (finite doubles only); compare the mapped spans as JSON text
    return orjson.dumps(
        mapped, default=_json_text, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )


@settings(max_examples=300, deadline=None)
@given(req=requests())
def test_json_and_protobuf_map_to_the_same_native_spans(req: ExportTraceServiceRequest) -> None:
    via_proto = to_native(decode_request(req.SerializeToString(), "application/x-protobuf"))
    via_json = to_native(decode_request(as_otlp_json(req), "application/json"))
    assert _normalized(via_json) == _normalized(via_proto)


@settings(max_examples=150, deadline=None)
@given(req=requests())
def test_json_and_protobuf_give_the_same_fast_path_columns(req: ExportTraceServiceRequest) -> None:
    limits = Limits()
    proto = otlp_columns(
        decode_request(req.SerializeToString(), "application/x-protobuf"), limits, 10_000
    )
    json_ = otlp_columns(decode_request(as_otlp_json(req), "application/json"), limits, 10_000)
    assert (proto is None) == (json_ is None)
    if proto is not None:
        assert _normalized(list(proto[0].items())) == _normalized(list(json_[0].items()))


def test_doubles_that_json_cannot_carry_map_like_protobuf() -> None:
    req = ExportTraceServiceRequest()
    sp = req.resource_spans.add().scope_spans.add().spans.add()
    sp.trace_id, sp.span_id, sp.name = b"\x01" * 16, b"\x02" * 8, "n"
    sp.attributes.append(KeyValue(key="nan", value=AnyValue(double_value=math.nan)))
    sp.attributes.append(KeyValue(key="inf", value=AnyValue(double_value=math.inf)))
    via_json = to_native(decode_request(as_otlp_json(req), "application/json"))
    assert (
        via_json[0][0]["attributes"]["nan"] == "NaN"
        and via_json[0][0]["attributes"]["inf"] == "Infinity"
    )
