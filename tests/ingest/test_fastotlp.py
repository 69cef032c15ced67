"""The OTLP fast path (apps.ingest.fastotlp) stores exactly what to_native + validate_spans store,
and declines whenever a span would be refused or it cannot be sure."""

from __future__ import annotations

import random

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from apps.ingest.fastotlp import otlp_columns, otlp_columns_from_bytes
from apps.ingest.native import Limits, validate_spans
from apps.ingest.otlp import decode_request, to_native
from apps.ingest.rows import encode_columns, rows_to_columns

LIMITS = Limits()
ENC = {"project_id": 7, "retention_days": 30, "version": 123, "now": 1_767_261_600}
BASE_NS = 1_767_261_600_000_000_000
TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")


def any_value(v) -> AnyValue:
    if isinstance(v, AnyValue):
        return v
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(
            kvlist_value=KeyValueList(
                values=[KeyValue(key=k, value=any_value(x)) for k, x in v.items()]
            )
        )
    if v is None:
        return AnyValue()
    return AnyValue(string_value=v)


def kvs(attrs: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()]


def sp(i: int, parent: int | None = None, trace: bytes = TRACE, **fields) -> Span:
    attrs = fields.pop("attributes", {})
    s = Span(
        trace_id=trace,
        span_id=i.to_bytes(8, "big"),
        name=fields.pop("name", f"span-{i}"),
        start_time_unix_nano=fields.pop("start", BASE_NS + i),
        end_time_unix_nano=fields.pop("end", BASE_NS + 1000 + i),
        attributes=kvs(attrs),
        **fields,
    )
    if parent is not None:
        s.parent_span_id = parent.to_bytes(8, "big")
    return s


def request(
    *spans: Span, resource: dict | None = None, scope: InstrumentationScope | None = None
) -> ExportTraceServiceRequest:
    rs = ResourceSpans(
        resource=Resource(
            attributes=kvs(resource if resource is not None else {"service.name": "svc"})
        ),
        scope_spans=[ScopeSpans(scope=scope, spans=list(spans))],
    )
    return ExportTraceServiceRequest(resource_spans=[rs])


def slow_block(req: ExportTraceServiceRequest, limits: Limits = LIMITS) -> bytes | None:
    mapped = to_native(req)
    if any(m[0] is None for m in mapped):
        return None
    rows, rejected = validate_spans([m[0] for m in mapped], limits)
    if rejected:
        return None
    return encode_columns(rows_to_columns(rows), len(rows), **ENC)


def fast_block(req: ExportTraceServiceRequest, limits: Limits = LIMITS) -> bytes | None:
    """What the fast path stores, read through protobuf's objects; the wire reader, when it
    takes the request, must store exactly the same."""
    got = otlp_columns(req, limits, 10_000)
    wire = otlp_columns_from_bytes(req.SerializeToString(), limits, 10_000)
    if got is None:
        assert wire is None, "the wire reader took a request the fast path declines"
        return None
    block = encode_columns(got[0], got[1], **ENC)
    if wire is not None:
        assert encode_columns(wire[0], wire[1], **ENC) == block
    return block


def assert_same(req: ExportTraceServiceRequest, limits: Limits = LIMITS) -> None:
    # the request as it arrives: decoded from its wire form
    req = decode_request(req.SerializeToString(), "application/x-protobuf")
    slow = slow_block(req, limits)
    assert slow is not None, "the detailed path refused it"
    fast = fast_block(req, limits)
    assert fast is not None, "the fast path declined a valid request"
    assert fast == slow


def assert_declined(req: ExportTraceServiceRequest, limits: Limits = LIMITS) -> None:
    req = decode_request(req.SerializeToString(), "application/x-protobuf")
    assert fast_block(req, limits) is None


def test_simulator_traffic_is_taken_by_the_fast_path_and_encoded_identically() -> None:
    from apps.demo.traffic import TrafficGenerator, to_otlp

    gen = TrafficGenerator(seed=5, payload_bytes=300)
    spans = [s for tr in gen.sessions(BASE_NS, BASE_NS + 86_400 * 10**9, 40) for s in tr]
    assert_same(to_otlp(spans))


def test_genai_and_openinference_conventions() -> None:
    msgs = [{"role": "user", "content": 'hé 😀 "q" \n'}]
    assert_same(
        request(
            sp(
                1,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "router",
                    "session.id": "s1",
                },
            ),
            sp(
                2,
                1,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "billing",
                },
            ),
            sp(
                3,
                1,
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "router"},
            ),
            sp(
                4,
                1,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": orjson.dumps(msgs).decode(),
                    "gen_ai.output.messages": msgs,
                    "gen_ai.request.model": "m",
                    "gen_ai.usage.prompt_tokens": 5,
                    "gen_ai.usage.completion_tokens": 2.5,
                    "llm.cost.total": 3,
                },
            ),
            sp(
                5,
                1,
                attributes={
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.call.arguments": '{"a": 1, "b" : [1, 2.50, 1E2]}',
                    "gen_ai.tool.call.result": "not json {",
                },
            ),
            sp(
                6,
                1,
                attributes={
                    "openinference.span.kind": "LLM",
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "x",
                    "llm.input_messages.1.message.role": "assistant",
                    "llm.output_messages.0.message.content": "y",
                    "llm.model_name": "m2",
                    "llm.provider": "p",
                    "llm.token_count.prompt": 3,
                },
            ),
            sp(7, 1, name="handoff to billing", attributes={"openinference.span.kind": "TOOL"}),
            sp(8, 1, name="handoff to billing", attributes={"openinference.span.kind": "CHAIN"}),
            sp(
                9,
                1,
                attributes={
                    "openinference.span.kind": "RETRIEVER",
                    "input.value": '{"q": "é"}',
                    "input.mime_type": "application/json",
                    "output.value": "[1, 2]",
                    "output.mime_type": "text/plain",
                },
            ),
            sp(
                10,
                1,
                attributes={
                    "input.value": {"k": [1, {"z": True}]},
                    "output.value": ["a", {"b": None}],
                },
            ),
            sp(11, 1, attributes={"input.value": 5, "output.value": 1.5}),
            sp(
                12,
                1,
                attributes={
                    "input.value": "[1,",
                    "input.mime_type": "application/json; charset=utf-8",
                },
            ),
            sp(
                13,
                1,
                attributes={
                    "gen_ai.operation.name": "embeddings",
                    "agent.name": "emb",
                    "gen_ai.conversation.id": 42,
                },
            ),
            sp(
                14,
                1,
                attributes={
                    "gen_ai.operation.name": "unknown-op",
                    "openinference.span.kind": "AGENT",
                },
            ),
            sp(15, 1, attributes={"gen_ai.operation.name": 5}),
        )
    )


def test_attribute_value_types_resource_scope_links_events_and_status() -> None:
    s = sp(
        2,
        1,
        attributes={
            "str": "é",
            "empty": "",
            "int": -(2**63),
            "bool": False,
            "double": 1.25,
            "nan": float("nan"),
            "inf": float("-inf"),
            "bytes": b"\x00\xff",
            "ints": [1, 2, 3],
            "mixed": ["a", 1, 2.5, True],
            "nested": [[1], {"a": b"x"}],
            "kv": {"a": 1, "b": [float("inf")]},
            "none": None,
            "kriy.result.partial": True,
            "kriy.retry.attempt": 2,
            "kriy.retry.reason": "timeout",
            "kriy.constraints": ["budget<=500"],
            "kriy.context.required": ["a", "b"],
            "kriy.context.present": [],
            "kriy.state.key": "account:1",
            "kriy.state.version": 7,
            "kriy.state.op": "write",
        },
        status=Status(code=Status.STATUS_CODE_ERROR, message="boom ✗"),
        links=[Span.Link(trace_id=TRACE, span_id=(9).to_bytes(8, "big"))],
        events=[
            Span.Event(
                name="exception",
                time_unix_nano=BASE_NS,
                attributes=kvs({"exception.type": "E", "n": 1}),
            ),
            Span.Event(name="plain", time_unix_nano=0),
        ],
    )
    root = sp(1, status=Status(code=Status.STATUS_CODE_OK))
    other_trace = sp(3, 77, trace=bytes(15) + b"\x01", start=0, end=0)
    zero_parent = sp(4, trace=bytes(15) + b"\x02")
    zero_parent.parent_span_id = bytes(8)
    assert_same(
        request(
            root,
            s,
            other_trace,
            zero_parent,
            resource={
                "service.name": "svc",
                "session.id": "res-sess",
                "deploy": {"k": "v"},
                "n": 1.5,
            },
            scope=InstrumentationScope(name="lib", version="1.0"),
        )
    )


def test_several_resources_and_scopes_and_sessions_inherited_from_the_root() -> None:
    req = request(sp(1, attributes={"session.id": "s"}), sp(2, 1), sp(3, 2))
    rs2 = ResourceSpans(
        resource=Resource(attributes=kvs({"gen_ai.conversation.id": "r2"})),
        scope_spans=[
            ScopeSpans(scope=InstrumentationScope(name="a"), spans=[sp(4, 1)]),
            ScopeSpans(
                scope=InstrumentationScope(version="2"), spans=[sp(5, trace=bytes(15) + b"\x03")]
            ),
            ScopeSpans(spans=[]),
        ],
    )
    req.resource_spans.append(rs2)
    req.resource_spans.append(ResourceSpans())
    assert_same(req)


def test_limits_at_their_edges_are_accepted_like_the_slow_path() -> None:
    limits = Limits(max_attributes=6, max_attribute_bytes=300, max_io_bytes=400, max_events=2)
    assert_same(
        request(
            sp(
                1,
                name="n" * 256,
                attributes={
                    "a": "x" * 300,
                    "k" * 256: ["é" * 150, "y" * 150],
                    "input.value": "z" * 398,  # stored as its JSON text: 400 bytes
                    "gen_ai.agent.name": "a" * 128,
                    "session.id": "s" * 256,
                },
                status=Status(message="m" * 4096),
                events=[Span.Event(name="e" * 256, time_unix_nano=1)] * 2,
            ),
            resource={},
        ),
        limits,
    )


@pytest.mark.parametrize(
    "span",
    [
        sp(1, trace=bytes(16)),
        sp(1, trace=b"\x01" * 15),
        sp(0),
        sp(1, name=""),
        sp(1, parent_span_id=b"\x01\x02"),
        sp(1, start=2**63),
        sp(1, start=10, end=5),
        sp(1, attributes={"": "empty key"}),
        sp(1, attributes={"k" * 257: 1}),
        sp(1, attributes={"s": "x" * (64 * 1024 + 1)}),
        sp(1, attributes={"l": ["x" * (40 * 1024), "y" * (30 * 1024)]}),
        sp(1, attributes={"gen_ai.agent.name": "a" * 129}),
        sp(1, name="n" * 257),
        sp(1, attributes={"session.id": "s" * 257}),
        sp(1, status=Status(message="m" * 4097)),
        sp(1, attributes={"kriy.retry.attempt": "two"}),
        sp(1, attributes={"kriy.retry.attempt": -1}),
        sp(1, attributes={"kriy.result.partial": 1}),
        sp(1, attributes={"kriy.constraints": "a"}),
        sp(1, attributes={"kriy.constraints": [1]}),
        sp(1, attributes={"kriy.state.op": "delete"}),
        sp(1, attributes={"kriy.state.version": 1.5}),
        sp(1, attributes={"input.value": "x" * (1024 * 1024)}),
        sp(1, events=[Span.Event(name="", time_unix_nano=1)]),
        sp(1, events=[Span.Event(name="e", time_unix_nano=2**63)]),
        sp(1, events=[Span.Event(name="e", time_unix_nano=1)] * 129),
        sp(1, attributes={f"a{i}": i for i in range(600)}),
    ],
)
def test_spans_the_slow_path_refuses_are_declined(span: Span) -> None:
    req = request(sp(5), span)
    decoded = decode_request(req.SerializeToString(), "application/x-protobuf")
    assert slow_block(decoded) is None
    assert_declined(req)


def test_repeated_spans_too_many_spans_and_too_deep_values_are_declined() -> None:
    assert_declined(request(sp(1), sp(1)))
    req = request(sp(1), sp(2), sp(3))
    decoded = decode_request(req.SerializeToString(), "application/x-protobuf")
    assert otlp_columns(decoded, LIMITS, 2) is None
    assert otlp_columns(decoded, LIMITS, 3) is not None
    assert otlp_columns(ExportTraceServiceRequest(), LIMITS, 3) is None

    def nest(kv: KeyValue) -> None:
        kv.key = "d"
        cur = kv.value
        for _ in range(70):
            cur = cur.array_value.values.add()
        cur.string_value = "x"

    # (only a hand-built message nests this deep: the protobuf parser stops far earlier)
    span_deep, res_deep, ev_deep = request(sp(1)), request(sp(1)), request(sp(1))
    nest(span_deep.resource_spans[0].scope_spans[0].spans[0].attributes.add())
    nest(res_deep.resource_spans[0].resource.attributes.add())
    ev = ev_deep.resource_spans[0].scope_spans[0].spans[0].events.add(name="e", time_unix_nano=1)
    nest(ev.attributes.add())
    for req in (span_deep, res_deep, ev_deep):
        assert slow_block(req) is None
        assert fast_block(req) is None


def _random_any(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 2 or r < 0.5:
        return rng.choice(
            [
                "",
                "x",
                'é😀\n"',
                '{"j": [1, 2.5]}',
                "[1,",
                0,
                -7,
                2**40,
                1.5,
                float("nan"),
                True,
                False,
                b"\x01",
                None,
            ]
        )
    if r < 0.75:
        return [_random_any(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["a", "b", "ü"]): _random_any(rng, depth + 1) for _ in range(rng.randint(0, 3))
    }


KEYS = [
    "gen_ai.operation.name",
    "openinference.span.kind",
    "gen_ai.agent.name",
    "agent.name",
    "session.id",
    "gen_ai.conversation.id",
    "input.value",
    "input.mime_type",
    "output.value",
    "output.mime_type",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments",
    "gen_ai.tool.call.result",
    "llm.input_messages.0.message.content",
    "gen_ai.request.model",
    "gen_ai.usage.input_tokens",
    "llm.cost.total",
    "kriy.result.partial",
    "kriy.retry.attempt",
    "kriy.constraints",
    "kriy.state.op",
    "kriy.state.version",
    "plain",
]
VALUES = {
    "gen_ai.operation.name": ["chat", "invoke_agent", "execute_tool", "handoff", "x"],
    "openinference.span.kind": ["LLM", "TOOL", "AGENT", "CHAIN", "RETRIEVER", "X"],
    "input.mime_type": ["application/json", "text/plain"],
    "output.mime_type": ["application/json", "text/plain"],
    "kriy.state.op": ["read", "write", "x"],
}


def test_random_requests_agree_with_the_detailed_path() -> None:
    rng = random.Random(1126)
    accepted = 0
    for _ in range(300):
        spans = []
        for i in range(1, rng.randint(2, 6)):
            attrs = {}
            for key in rng.sample(KEYS, rng.randint(0, 8)):
                attrs[key] = (
                    rng.choice(VALUES[key])
                    if key in VALUES and rng.random() < 0.8
                    else _random_any(rng)
                )
            parent = rng.randint(1, i - 1) if i > 1 and rng.random() < 0.8 else None
            spans.append(sp(i, parent, name=rng.choice(["step", "handoff to x"]), attributes=attrs))
        req = decode_request(request(*spans).SerializeToString(), "application/x-protobuf")
        fast = fast_block(req)
        slow = slow_block(req)
        if fast is not None:
            accepted += 1
            assert fast == slow
    assert accepted > 50
