"""The OTLP wire reader (``apps/ingest/_otlpwire.pyx``) against protobuf itself.

Whatever the reader takes must store exactly what protobuf's objects give; whatever protobuf
refuses, the reader must not take (the request then gets protobuf's 400)."""

from __future__ import annotations

import random

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from apps.ingest import fastotlp
from apps.ingest.fastotlp import otlp_columns, otlp_columns_from_bytes
from apps.ingest.rows import encode_columns
from tests.ingest.test_fastotlp import ENC, LIMITS, assert_same, fast_block, request, sp
from tests.ingest.test_otlp_endpoint import sdk_request


def wire_block(data: bytes) -> bytes | None:
    got = otlp_columns_from_bytes(data, LIMITS, 10_000)
    return None if got is None else encode_columns(got[0], got[1], **ENC)


def object_block(data: bytes) -> bytes | None:
    got = otlp_columns(ExportTraceServiceRequest.FromString(data), LIMITS, 10_000)
    return None if got is None else encode_columns(got[0], got[1], **ENC)


def test_the_reader_is_built() -> None:
    # `pip install -e .` compiles it; a silent build failure would only show as slower ingest
    assert fastotlp._wire_decode is not None


def test_simulator_and_sdk_exporter_output_are_read_off_the_wire_identically() -> None:
    from apps.demo.traffic import TrafficGenerator, to_otlp

    spans = [s for tr in TrafficGenerator(seed=4).sessions(0, 10**18, 30) for s in tr]
    for data in (to_otlp(spans).SerializeToString(), sdk_request().SerializeToString()):
        wire = wire_block(data)
        assert wire is not None, "the reader declined ordinary traffic"
        assert wire == object_block(data)


def test_unknown_fields_are_skipped_like_protobuf() -> None:
    req = request(sp(1, attributes={"a": "x", "n": 3}), sp(2, 1))
    data = req.SerializeToString()
    # a varint field 99 and a length-delimited field 100 appended at the top level
    extra = bytes([0x98, 0x06, 0x2A]) + bytes([0xA2, 0x06, 0x03]) + b"abc"
    assert wire_block(data + extra) == object_block(data + extra) is not None


def test_what_the_reader_leaves_to_protobuf() -> None:
    cases = {
        "a double that is not finite": sp(1, attributes={"x": float("inf")}),
        "bytes": sp(1, attributes={"x": b"\x01"}),
        "a nested list": sp(1, attributes={"x": {"k": "v"}}),
        "an array with a double": sp(1, attributes={"x": [1, 2.5]}),
    }
    for why, span in cases.items():
        data = request(span).SerializeToString()
        assert otlp_columns_from_bytes(data, LIMITS, 10_000) is None, why
        fast_block(ExportTraceServiceRequest.FromString(data))  # the object path still agrees

    # a singular message sent twice is merged by protobuf: left to it
    one = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="s", status=Status(code=1))
    span = one.SerializeToString() + b"\x7a" + _len(Status(message="m").SerializeToString())
    scope = b"\x12" + _len(span)  # ScopeSpans.spans
    resource_spans = b"\x12" + _len(scope)  # ResourceSpans.scope_spans
    data = b"\x0a" + _len(resource_spans)  # ExportTraceServiceRequest.resource_spans
    assert otlp_columns_from_bytes(data, LIMITS, 10) is None
    assert object_block(data) is not None  # protobuf merges the two, and the object path takes it


def _len(body: bytes) -> bytes:
    n, out = len(body), bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def test_invalid_utf8_and_truncation_are_never_taken() -> None:
    good = request(sp(1, attributes={"k": "välue"})).SerializeToString()
    bad = good.replace("välue".encode(), b"v\xffalue")
    assert len(bad) == len(good)
    try:
        ExportTraceServiceRequest.FromString(bad)
        refused = False
    except DecodeError:
        refused = True
    assert refused
    assert otlp_columns_from_bytes(bad, LIMITS, 10) is None
    for cut in range(1, len(good)):
        assert otlp_columns_from_bytes(good[:cut], LIMITS, 10) is None or _parses(good[:cut])


def _parses(data: bytes) -> bool:
    try:
        ExportTraceServiceRequest.FromString(data)
    except DecodeError:
        return False
    return True


def test_mutated_requests_agree_with_protobuf() -> None:
    """Random byte flips, cuts and insertions of real requests: the reader either declines, or
    protobuf parses the same bytes and the object path stores exactly what the reader does."""
    rng = random.Random(2611)
    seeds = [
        sdk_request().SerializeToString(),
        request(
            sp(1, attributes={"gen_ai.operation.name": "chat", "arr": ["a", "b"], "n": -5}),
            sp(2, 1, attributes={"input.value": '{"q": 1}', "input.mime_type": "application/json"}),
            sp(3, 1, attributes={"kriy.constraints": ["region=EU"], "ok": True, "f": 0.5}),
        ).SerializeToString(),
    ]
    taken = 0
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            i = rng.randrange(len(data))
            if op < 0.6:
                data[i] = rng.randrange(256)
            elif op < 0.8:
                del data[i:]
                if not data:
                    data = bytearray(b"\x0a\x00")
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        data = bytes(data)
        wire = wire_block(data)
        if wire is None:
            continue
        assert _parses(data), "the reader took bytes protobuf refuses"
        taken += 1
        assert wire == object_block(data)
    assert taken > 100  # the property was exercised, not vacuous


def test_attribute_values_keep_their_types_and_last_value_wins() -> None:
    kvs = [
        KeyValue(key="s", value=AnyValue(string_value="")),
        KeyValue(key="i", value=AnyValue(int_value=-(2**63))),
        KeyValue(key="b", value=AnyValue(bool_value=False)),
        KeyValue(key="d", value=AnyValue(double_value=-0.0)),
        KeyValue(key="arr", value=AnyValue(array_value=ArrayValue(values=[]))),
        KeyValue(key="empty", value=AnyValue()),
        KeyValue(key="s", value=AnyValue(string_value="again")),
    ]
    span = sp(1)
    span.attributes.extend(kvs)
    data = request(span).SerializeToString()
    assert wire_block(data) == object_block(data) is not None
    cols, _ = otlp_columns_from_bytes(data, LIMITS, 10)
    attrs = cols["attributes"][0]
    assert attrs["s"] == "again" and attrs["i"] == -(2**63) and attrs["b"] is False
    assert attrs["arr"] == [] and "empty" not in attrs


def test_a_token_count_beyond_int64_counts_as_not_reported() -> None:
    span = sp(1, attributes={"gen_ai.usage.input_tokens": 1e300, "gen_ai.usage.output_tokens": 7})
    data = request(span).SerializeToString()
    assert wire_block(data) == object_block(data) is not None
    assert_same(request(span))  # and the detailed path stores the same
    cols, _ = otlp_columns_from_bytes(data, LIMITS, 10)
    assert cols["tokens_in"] == [None] and cols["tokens_out"] == [7]
