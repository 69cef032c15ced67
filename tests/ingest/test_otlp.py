"""OTLP/HTTP trace decoding and mapping onto native spans (spans.md §1, otlp-reference.md).

Spans are produced by the real opentelemetry-sdk and encoded exactly as the OTLP/HTTP
exporter does; hand-built protobuf is used only for what the SDK cannot emit
(kvlist/bytes/empty values, bad ids, missing resource).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from openinference.semconv.trace import (
    MessageAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode, Tracer

from apps.ingest.otlp import (
    OtlpDecodeError,
    decode_request,
    encode_response,
    encode_status,
    to_native,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

TRACE_HEX = "5b8efff798038103d269b633813fc60c"
SPAN_HEX = "eee19b7ec3c1b174"
PARENT_HEX = "eee19b7ec3c1b173"

# otlp-reference.md §1, with its uppercase hex ids.
REFERENCE_EXAMPLE = (
    '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":'
    '{"stringValue":"my.service"}}]},"scopeSpans":[{"scope":{"name":"my.library",'
    '"version":"1.0.0"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C",'
    '"spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173","name":"…",'
    '"kind":2,"startTimeUnixNano":"1544712660000000000",'
    '"endTimeUnixNano":"1544712661000000000"}]}]}]}'
)


# --------------------------------------------------------------------------- helpers


def sdk_export(
    build: Callable[[Tracer], None],
    resource: dict[str, Any] | None = None,
    content_type: str = PROTOBUF,
) -> list[tuple[dict | None, list[str], str]]:
    """Record spans with the real SDK, encode them as the OTLP/HTTP exporter does, map them."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create(resource if resource is not None else {"service.name": "svc"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("test.scope", "1.2.3"))
    request = encode_spans(exporter.get_finished_spans())
    body = otlp_json(request) if content_type == JSON else request.SerializeToString()
    return to_native(decode_request(body, content_type))


def one_span(
    attributes: dict[str, Any] | None = None,
    name: str = "step",
    resource: dict[str, Any] | None = None,
    status: Status | None = None,
) -> dict:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span(name, attributes=attributes) as span:
            if status is not None:
                span.set_status(status)

    [(native, errors, _)] = sdk_export(build, resource)
    assert errors == []
    assert native is not None
    return native


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """Valid OTLP JSON: json_format output with the ids rewritten from base64 to hex."""
    doc = json_format.MessageToDict(request)

    def fix(obj: Any) -> None:
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key in ("traceId", "spanId", "parentSpanId"):
                    obj[key] = base64.b64decode(value).hex().upper()
                else:
                    fix(value)
        elif isinstance(obj, list):
            for item in obj:
                fix(item)

    fix(doc)
    return orjson.dumps(doc)


def kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def raw_span(**fields: Any) -> Span:
    defaults: dict[str, Any] = {
        "trace_id": bytes.fromhex(TRACE_HEX),
        "span_id": bytes.fromhex(SPAN_HEX),
        "name": "step",
        "start_time_unix_nano": 1,
        "end_time_unix_nano": 2,
    }
    defaults.update(fields)
    return Span(**defaults)


def raw_request(*spans: Span, resource_attrs: list[KeyValue] | None = None) -> bytes:
    rs = ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])
    if resource_attrs is not None:
        rs.resource.attributes.extend(resource_attrs)
    return ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString()


def map_raw(*spans: Span, resource_attrs: list[KeyValue] | None = None) -> list:
    return to_native(decode_request(raw_request(*spans, resource_attrs=resource_attrs), PROTOBUF))


def map_json(doc: dict | str | bytes) -> list:
    body = doc if isinstance(doc, bytes) else (doc if isinstance(doc, str) else json.dumps(doc))
    if isinstance(body, str):
        body = body.encode()
    return to_native(decode_request(body, JSON))


def json_request(span: dict, resource_attrs: list | None = None) -> dict:
    base = {"traceId": TRACE_HEX.upper(), "spanId": SPAN_HEX.upper(), "name": "step"}
    base.update(span)
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": resource_attrs or []},
                "scopeSpans": [{"spans": [base]}],
            }
        ]
    }


# --------------------------------------------------------------------------- protobuf from the SDK


def test_sdk_protobuf_span_maps_to_native_shape() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("invoke_agent support") as root:
            root.set_attribute("gen_ai.operation.name", "invoke_agent")
            with tracer.start_as_current_span("crm.lookup") as child:
                child.set_attribute("gen_ai.operation.name", "execute_tool")

    results = sdk_export(build, {"service.name": "support-svc"})
    assert [r[1] for r in results] == [[], []]
    child, root = results[0][0], results[1][0]  # the SDK exports in end order
    assert child is not None and root is not None
    assert set(child) == {
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
    }
    assert len(child["trace_id"]) == 32 and child["trace_id"] == child["trace_id"].lower()
    assert len(child["span_id"]) == 16 and child["span_id"] == child["span_id"].lower()
    assert child["trace_id"] == root["trace_id"]
    assert child["parent_span_id"] == root["span_id"]
    assert root["parent_span_id"] is None
    assert results[0][2] == child["span_id"]
    assert child["name"] == "crm.lookup"
    assert child["kind"] == "tool"
    assert child["agent"] == "support-svc"
    assert isinstance(child["start_time"], int) and child["end_time"] >= child["start_time"]
    assert child["status"] == "unset"
    assert child["status_message"] is None
    assert child["input"] is None and child["output"] is None
    assert child["events"] == []


def test_sdk_spans_map_in_request_order_across_resources_and_scopes() -> None:
    exporter = InMemorySpanExporter()
    names = []
    for service in ("svc-a", "svc-b"):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        for scope in ("scope-1", "scope-2"):
            with provider.get_tracer(scope).start_as_current_span(f"{service}/{scope}"):
                names.append(f"{service}/{scope}")
    request = encode_spans(exporter.get_finished_spans())
    flattened = [
        (sp.name, rs.resource)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for sp in ss.spans
    ]
    results = to_native(decode_request(request.SerializeToString(), PROTOBUF))
    assert [n["name"] for n, _, _ in results] == [name for name, _ in flattened]
    assert sorted(n["name"] for n, _, _ in results) == sorted(names)
    for native, _, _ in results:
        assert native["agent"] == native["name"].split("/")[0]
        assert native["attributes"]["otel.scope.name"] == native["name"].split("/")[1]


def test_sdk_json_export_maps_like_protobuf() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat gpt-4o") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.usage.input_tokens", 12)
            span.set_attribute("kriy.constraints", ["budget<=500"])
            span.add_event("retry", {"attempt": 1})
            span.set_status(Status(StatusCode.ERROR, "boom"))

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("t"))
    request = encode_spans(exporter.get_finished_spans())
    from_protobuf = to_native(decode_request(request.SerializeToString(), PROTOBUF))
    from_json = to_native(decode_request(otlp_json(request), JSON))
    assert from_json == from_protobuf
    assert from_json[0][0]["kind"] == "llm"


# --------------------------------------------------------------------------- agent


def test_agent_prefers_gen_ai_agent_name_over_agent_name_and_service() -> None:
    native = one_span(
        {"gen_ai.agent.name": "planner", "agent.name": "oi-agent"}, resource={"service.name": "s"}
    )
    assert native["agent"] == "planner"


def test_agent_falls_back_to_openinference_agent_name() -> None:
    native = one_span({SpanAttributes.AGENT_NAME: "oi-agent"}, resource={"service.name": "s"})
    assert native["agent"] == "oi-agent"


def test_agent_falls_back_to_resource_service_name() -> None:
    assert one_span({}, resource={"service.name": "billing-svc"})["agent"] == "billing-svc"


def test_empty_agent_name_falls_through_to_next_source() -> None:
    native = one_span({"gen_ai.agent.name": "", "agent.name": "oi"}, resource={})
    assert native["agent"] == "oi"


def test_agent_is_unknown_without_any_source() -> None:
    [(native, errors, _)] = map_raw(raw_span())
    assert errors == []
    assert native["agent"] == "unknown"


# --------------------------------------------------------------------------- session


def test_session_prefers_session_id_over_conversation_id() -> None:
    native = one_span({"session.id": "s-1", "gen_ai.conversation.id": "conv-1"})
    assert native["session_id"] == "s-1"


def test_session_falls_back_to_gen_ai_conversation_id() -> None:
    assert one_span({"gen_ai.conversation.id": "conv-1"})["session_id"] == "conv-1"


def test_session_falls_back_to_resource_attributes() -> None:
    native = one_span({}, resource={"service.name": "s", "session.id": "res-session"})
    assert native["session_id"] == "res-session"
    native = one_span({}, resource={"service.name": "s", "gen_ai.conversation.id": "res-conv"})
    assert native["session_id"] == "res-conv"


def test_span_session_wins_over_resource_session() -> None:
    native = one_span({"gen_ai.conversation.id": "span-conv"}, resource={"session.id": "res"})
    assert native["session_id"] == "span-conv"


def test_session_is_none_without_any_source() -> None:
    assert one_span({})["session_id"] is None


# --------------------------------------------------------------------------- kind


@pytest.mark.parametrize(
    ("operation", "kind"),
    [
        ("chat", "llm"),
        ("text_completion", "llm"),
        ("generate_content", "llm"),
        ("embeddings", "llm"),
        ("execute_tool", "tool"),
        ("invoke_workflow", "agent"),
        ("retrieval", "retrieval"),
        ("search_memory", "retrieval"),
        ("handoff", "handoff"),
        ("create_agent", "step"),
        ("some_custom_operation", "step"),
    ],
)
def test_kind_from_gen_ai_operation_name(operation: str, kind: str) -> None:
    native = one_span({"gen_ai.operation.name": operation})
    assert native["kind"] == kind
    assert "_invoke_agent" not in native


def test_invoke_agent_is_agent_kind_marked_for_the_handoff_decision() -> None:
    native = one_span({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "x"})
    assert native["kind"] == "agent"
    assert native["_invoke_agent"] is True


@pytest.mark.parametrize(
    ("span_kind", "kind"),
    [
        (OpenInferenceSpanKindValues.LLM, "llm"),
        (OpenInferenceSpanKindValues.EMBEDDING, "llm"),
        (OpenInferenceSpanKindValues.TOOL, "tool"),
        (OpenInferenceSpanKindValues.AGENT, "agent"),
        (OpenInferenceSpanKindValues.RETRIEVER, "retrieval"),
        (OpenInferenceSpanKindValues.RERANKER, "retrieval"),
        (OpenInferenceSpanKindValues.CHAIN, "step"),
        (OpenInferenceSpanKindValues.GUARDRAIL, "step"),
        (OpenInferenceSpanKindValues.UNKNOWN, "step"),
    ],
)
def test_kind_from_openinference_span_kind(
    span_kind: OpenInferenceSpanKindValues, kind: str
) -> None:
    native = one_span({SpanAttributes.OPENINFERENCE_SPAN_KIND: span_kind.value})
    assert native["kind"] == kind
    assert "_invoke_agent" not in native


def test_openinference_tool_span_named_handoff_to_is_a_handoff() -> None:
    native = one_span(
        {SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.TOOL.value},
        name="handoff to billing",
    )
    assert native["kind"] == "handoff"


def test_openinference_chain_span_named_handoff_to_stays_a_step() -> None:
    native = one_span(
        {SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.CHAIN.value},
        name="handoff to billing",
    )
    assert native["kind"] == "step"


def test_gen_ai_operation_name_wins_over_openinference_kind() -> None:
    native = one_span(
        {"gen_ai.operation.name": "chat", SpanAttributes.OPENINFERENCE_SPAN_KIND: "TOOL"}
    )
    assert native["kind"] == "llm"


def test_unmapped_gen_ai_operation_falls_back_to_openinference_kind() -> None:
    native = one_span(
        {"gen_ai.operation.name": "create_agent", SpanAttributes.OPENINFERENCE_SPAN_KIND: "AGENT"}
    )
    assert native["kind"] == "agent"


def test_kind_defaults_to_step() -> None:
    assert one_span({})["kind"] == "step"


def test_non_string_kind_attributes_default_to_step() -> None:
    assert one_span({"gen_ai.operation.name": ["chat"], "openinference.span.kind": 3})["kind"] == (
        "step"
    )


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("status", "expected", "message"),
    [
        (None, "unset", None),
        (Status(StatusCode.UNSET), "unset", None),
        (Status(StatusCode.OK), "ok", None),
        (Status(StatusCode.ERROR), "error", None),
        (Status(StatusCode.ERROR, "tool timed out"), "error", "tool timed out"),
    ],
)
def test_status_code_and_message(status: Status | None, expected: str, message: str | None) -> None:
    native = one_span({}, status=status)
    assert native["status"] == expected
    assert native["status_message"] == message


# --------------------------------------------------------------------------- input / output


def test_openinference_json_values_are_parsed() -> None:
    native = one_span(
        {
            SpanAttributes.INPUT_VALUE: '{"account": 42, "fields": ["plan"]}',
            SpanAttributes.INPUT_MIME_TYPE: OpenInferenceMimeTypeValues.JSON.value,
            SpanAttributes.OUTPUT_VALUE: "[1, 2]",
            SpanAttributes.OUTPUT_MIME_TYPE: "application/json; charset=utf-8",
            "tool.name": "crm.lookup",
        }
    )
    assert native["input"] == {"account": 42, "fields": ["plan"]}
    assert native["output"] == [1, 2]
    attrs = native["attributes"]
    for consumed in ("input.value", "input.mime_type", "output.value", "output.mime_type"):
        assert consumed not in attrs
    assert attrs["tool.name"] == "crm.lookup"


def test_openinference_plain_text_values_stay_strings_even_when_they_look_like_json() -> None:
    native = one_span(
        {
            SpanAttributes.INPUT_VALUE: '{"a": 1}',
            SpanAttributes.INPUT_MIME_TYPE: OpenInferenceMimeTypeValues.TEXT.value,
            SpanAttributes.OUTPUT_VALUE: "[1]",  # no mime type: text
        }
    )
    assert native["input"] == '{"a": 1}'
    assert native["output"] == "[1]"
    assert "input.mime_type" not in native["attributes"]


def test_openinference_json_mime_with_unparsable_text_keeps_the_string() -> None:
    native = one_span(
        {
            SpanAttributes.INPUT_VALUE: "not json {",
            SpanAttributes.INPUT_MIME_TYPE: "application/json",
        }
    )
    assert native["input"] == "not json {"


def test_gen_ai_messages_as_json_strings_are_parsed() -> None:
    messages_in = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    messages_out = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "hello"}],
            "finish_reason": "stop",
        }
    ]
    native = one_span(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps(messages_in),
            "gen_ai.output.messages": json.dumps(messages_out),
        }
    )
    assert native["input"] == messages_in
    assert native["output"] == messages_out
    assert "gen_ai.input.messages" not in native["attributes"]
    assert "gen_ai.output.messages" not in native["attributes"]


def test_gen_ai_unparsable_message_string_is_kept_as_text() -> None:
    native = one_span({"gen_ai.input.messages": "hello there"})
    assert native["input"] == "hello there"


def test_gen_ai_structured_messages_become_json_values() -> None:
    message = AnyValue(
        kvlist_value=KeyValueList(
            values=[
                kv("role", string_value="user"),
                kv(
                    "parts",
                    array_value=ArrayValue(
                        values=[
                            AnyValue(
                                kvlist_value=KeyValueList(
                                    values=[
                                        kv("type", string_value="text"),
                                        kv("content", string_value="hi"),
                                    ]
                                )
                            )
                        ]
                    ),
                ),
            ]
        )
    )
    span = raw_span(
        attributes=[
            KeyValue(
                key="gen_ai.input.messages",
                value=AnyValue(array_value=ArrayValue(values=[message])),
            ),
            KeyValue(key="gen_ai.output.messages", value=message),
        ]
    )
    [(native, errors, _)] = map_raw(span)
    assert errors == []
    expected = {"role": "user", "parts": [{"type": "text", "content": "hi"}]}
    assert native["input"] == [expected]
    assert native["output"] == expected
    assert native["attributes"] == {}


def test_tool_call_arguments_and_result_are_input_and_output() -> None:
    native = one_span(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "crm.lookup",
            "gen_ai.tool.call.arguments": '{"account": 42}',
            "gen_ai.tool.call.result": "plain result",
        }
    )
    assert native["input"] == {"account": 42}
    assert native["output"] == "plain result"
    assert "gen_ai.tool.call.arguments" not in native["attributes"]
    assert "gen_ai.tool.call.result" not in native["attributes"]
    assert native["attributes"]["gen_ai.tool.name"] == "crm.lookup"


def test_gen_ai_messages_win_over_tool_call_arguments() -> None:
    native = one_span({"gen_ai.input.messages": '["m"]', "gen_ai.tool.call.arguments": '{"a": 1}'})
    assert native["input"] == ["m"]
    # Not consumed, so it stays an ordinary attribute.
    assert native["attributes"]["gen_ai.tool.call.arguments"] == '{"a": 1}'


def test_openinference_value_wins_over_gen_ai_messages() -> None:
    native = one_span({SpanAttributes.INPUT_VALUE: "from oi", "gen_ai.input.messages": '["m"]'})
    assert native["input"] == "from oi"
    assert native["attributes"]["gen_ai.input.messages"] == '["m"]'


def test_openinference_llm_flattened_messages_are_rebuilt() -> None:
    inp = SpanAttributes.LLM_INPUT_MESSAGES
    out = SpanAttributes.LLM_OUTPUT_MESSAGES
    role, content = MessageAttributes.MESSAGE_ROLE, MessageAttributes.MESSAGE_CONTENT
    attributes: dict[str, Any] = {
        SpanAttributes.OPENINFERENCE_SPAN_KIND: OpenInferenceSpanKindValues.LLM.value,
        SpanAttributes.LLM_MODEL_NAME: "gpt-4o",
        f"{inp}.0.{role}": "system",
        f"{inp}.0.{content}": "be brief",
        f"{inp}.1.{role}": "user",
        f"{inp}.1.{content}": "hi",
        f"{inp}.10.{role}": "user",
        f"{inp}.10.{content}": "eleventh",
        f"{out}.0.{role}": "assistant",
        f"{out}.0.{content}": "hello",
        f"{out}.0.message.tool_calls.0.tool_call.function.name": "lookup",
    }
    for i in range(2, 10):
        attributes[f"{inp}.{i}.{role}"] = "user"
    native = one_span(attributes)
    assert native["input"][:2] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert native["input"][2] == {"role": "user", "content": None}
    assert native["input"][-1] == {"role": "user", "content": "eleventh"}  # numeric order
    assert len(native["input"]) == 11
    assert native["output"] == [{"role": "assistant", "content": "hello"}]
    attrs = native["attributes"]
    assert not any(k.endswith((".message.role", ".message.content")) for k in attrs)
    assert attrs[f"{out}.0.message.tool_calls.0.tool_call.function.name"] == "lookup"
    assert attrs[SpanAttributes.LLM_MODEL_NAME] == "gpt-4o"


def test_flattened_messages_are_not_rebuilt_for_non_llm_spans() -> None:
    key = f"{SpanAttributes.LLM_INPUT_MESSAGES}.0.{MessageAttributes.MESSAGE_CONTENT}"
    native = one_span({SpanAttributes.OPENINFERENCE_SPAN_KIND: "CHAIN", key: "hi"})
    assert native["input"] is None
    assert native["attributes"][key] == "hi"


def test_openinference_input_value_wins_over_flattened_messages() -> None:
    key = f"{SpanAttributes.LLM_INPUT_MESSAGES}.0.{MessageAttributes.MESSAGE_CONTENT}"
    native = one_span(
        {SpanAttributes.OPENINFERENCE_SPAN_KIND: "LLM", "input.value": "x", key: "hi"}
    )
    assert native["input"] == "x"
    assert native["attributes"][key] == "hi"


# --------------------------------------------------------------------------- attributes


def test_scalar_and_list_attributes_keep_their_types() -> None:
    native = one_span(
        {
            "s": "text",
            "b": True,
            "i": 7,
            "f": 0.25,
            "ls": ["a", "b"],
            "li": [1, 2],
            "lf": [0.5, 1.5],
            "lb": [True, False],
        }
    )
    attrs = native["attributes"]
    assert attrs["s"] == "text"
    assert attrs["b"] is True
    assert attrs["i"] == 7 and type(attrs["i"]) is int
    assert attrs["f"] == 0.25
    assert attrs["ls"] == ["a", "b"]
    assert attrs["li"] == [1, 2]
    assert attrs["lf"] == [0.5, 1.5]
    assert attrs["lb"] == [True, False]


def test_kriy_attributes_travel_as_ordinary_typed_attributes() -> None:
    native = one_span(
        {
            "kriy.constraints": ["budget<=500", "region=EU"],
            "kriy.context.required": ["account_id"],
            "kriy.context.present": [],
            "kriy.retry.attempt": 2,
            "kriy.retry.reason": "timeout",
            "kriy.result.partial": True,
            "kriy.state.key": "account:42",
            "kriy.state.version": 3,
            "kriy.state.op": "read",
        }
    )
    attrs = native["attributes"]
    assert attrs["kriy.constraints"] == ["budget<=500", "region=EU"]
    assert attrs["kriy.context.required"] == ["account_id"]
    assert attrs["kriy.context.present"] == []
    assert attrs["kriy.retry.attempt"] == 2
    assert attrs["kriy.result.partial"] is True
    assert attrs["kriy.state.version"] == 3
    assert attrs["kriy.state.op"] == "read"


def test_legacy_gen_ai_names_are_kept_as_attributes() -> None:
    native = one_span(
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.prompt_tokens": 100,
            "gen_ai.usage.completion_tokens": 20,
            "gen_ai.request.model": "gpt-4o",
        }
    )
    attrs = native["attributes"]
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.usage.prompt_tokens"] == 100
    assert attrs["gen_ai.usage.completion_tokens"] == 20
    assert attrs["gen_ai.request.model"] == "gpt-4o"


def test_structured_bytes_and_empty_attribute_values() -> None:
    nested = AnyValue(kvlist_value=KeyValueList(values=[kv("k", int_value=1), kv("e")]))
    span = raw_span(
        attributes=[
            kv("bytes", bytes_value=b"\x00\xffab"),
            kv(
                "kvlist",
                kvlist_value=KeyValueList(
                    values=[kv("a", string_value="x"), kv("b", double_value=1.5)]
                ),
            ),
            kv("mixed", array_value=ArrayValue(values=[AnyValue(string_value="x"), nested])),
            kv(
                "nested_arrays",
                array_value=ArrayValue(
                    values=[AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)]))]
                ),
            ),
            kv("with_null", array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue()])),
            kv(
                "doubles",
                array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(double_value=2.5)]),
            ),
            kv("nested_bytes", kvlist_value=KeyValueList(values=[kv("b", bytes_value=b"hi")])),
            kv("empty"),
            kv("nan", double_value=float("nan")),
            kv("inf", double_value=float("-inf")),
        ]
    )
    [(native, errors, _)] = map_raw(span)
    assert errors == []
    attrs = native["attributes"]
    assert attrs["bytes"] == base64.b64encode(b"\x00\xffab").decode()
    assert json.loads(attrs["kvlist"]) == {"a": "x", "b": 1.5}
    assert json.loads(attrs["mixed"]) == ["x", {"k": 1, "e": None}]
    assert json.loads(attrs["nested_arrays"]) == [[1]]
    assert json.loads(attrs["with_null"]) == [1, None]
    assert attrs["doubles"] == [1, 2.5]
    assert json.loads(attrs["nested_bytes"]) == {"b": base64.b64encode(b"hi").decode()}
    assert "empty" not in attrs
    assert attrs["nan"] == "NaN"
    assert attrs["inf"] == "-Infinity"


def test_resource_attributes_are_prefixed_and_scope_is_recorded() -> None:
    native = one_span(
        {"own": 1},
        resource={
            "service.name": "svc",
            "service.version": "2.0",
            "deployment.environment.name": "prod",
        },
    )
    attrs = native["attributes"]
    assert attrs["resource.service.name"] == "svc"
    assert attrs["resource.service.version"] == "2.0"
    assert attrs["resource.deployment.environment.name"] == "prod"
    assert attrs["resource.telemetry.sdk.language"] == "python"
    assert attrs["otel.scope.name"] == "test.scope"
    assert attrs["otel.scope.version"] == "1.2.3"
    assert attrs["own"] == 1
    assert "service.name" not in attrs


def test_scope_attributes_are_absent_when_scope_is_unset() -> None:
    [(native, _, _)] = map_raw(raw_span())
    assert "otel.scope.name" not in native["attributes"]
    assert "otel.scope.version" not in native["attributes"]


def test_resource_attribute_mutations_do_not_leak_between_spans() -> None:
    results = map_raw(
        raw_span(attributes=[kv("a", int_value=1)]),
        raw_span(span_id=bytes.fromhex(PARENT_HEX)),
        resource_attrs=[kv("service.name", string_value="svc")],
    )
    assert results[0][0]["attributes"] == {"resource.service.name": "svc", "a": 1}
    assert results[1][0]["attributes"] == {"resource.service.name": "svc"}


def test_events_map_name_time_and_attributes() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("step") as span:
            span.add_event(
                "retry",
                {"attempt": 2, "reasons": ["timeout", "5xx"]},
                timestamp=1_700_000_000_000_000_123,
            )
            span.add_event("done")

    [(native, _, _)] = sdk_export(build)
    assert native["events"] == [
        {
            "name": "retry",
            "time": 1_700_000_000_000_000_123,
            "attributes": {"attempt": 2, "reasons": ["timeout", "5xx"]},
        },
        {"name": "done", "time": native["events"][1]["time"], "attributes": {}},
    ]
    assert native["events"][1]["time"] > 0


def test_links_become_otel_links_json_text() -> None:
    def build(tracer: Tracer) -> None:
        with tracer.start_as_current_span("other") as other:
            ctx = other.get_span_context()
        with tracer.start_as_current_span("linked", links=[Link(ctx)]):
            pass

    results = sdk_export(build)
    other, linked = results[0][0], results[1][0]
    assert "otel.links" not in other["attributes"]
    assert json.loads(linked["attributes"]["otel.links"]) == [
        {"trace_id": other["trace_id"], "span_id": other["span_id"]}
    ]


# --------------------------------------------------------------------------- ids and per-span errors


def test_bad_ids_reject_only_their_own_span() -> None:
    results = map_raw(
        raw_span(name="good"),
        raw_span(trace_id=bytes(16)),
        raw_span(trace_id=b"\x01" * 15),
        raw_span(span_id=bytes(8)),
        raw_span(span_id=b""),
        raw_span(span_id=b"\x01" * 9),
        raw_span(parent_span_id=b"\x01" * 4),
        raw_span(name=""),
        raw_span(trace_id=b"", span_id=b"", name=""),
    )
    good, *bad = results
    assert good[0]["name"] == "good" and good[1] == []
    assert all(native is None for native, _, _ in bad)
    assert [errors for _, errors, _ in bad] == [
        ["traceId: must be 16 bytes, not all zero"],
        ["traceId: must be 16 bytes, not all zero"],
        ["spanId: must be 8 bytes, not all zero"],
        ["spanId: must be 8 bytes, not all zero"],
        ["spanId: must be 8 bytes, not all zero"],
        ["parentSpanId: must be empty or 8 bytes"],
        ["name: must not be empty"],
        [
            "traceId: must be 16 bytes, not all zero",
            "spanId: must be 8 bytes, not all zero",
            "name: must not be empty",
        ],
    ]
    assert [span_hex for _, _, span_hex in bad] == [
        SPAN_HEX,
        SPAN_HEX,
        "0000000000000000",
        "",
        "01" * 9,
        SPAN_HEX,
        SPAN_HEX,
        "",
    ]


def test_all_zero_parent_span_id_means_root() -> None:
    [(native, errors, _)] = map_raw(raw_span(parent_span_id=bytes(8)))
    assert errors == []
    assert native["parent_span_id"] is None


def test_ids_are_lowercase_hex() -> None:
    [(native, _, span_hex)] = map_raw(
        raw_span(
            parent_span_id=bytes.fromhex(PARENT_HEX), start_time_unix_nano=10, end_time_unix_nano=20
        )
    )
    assert native["trace_id"] == TRACE_HEX
    assert native["span_id"] == SPAN_HEX == span_hex
    assert native["parent_span_id"] == PARENT_HEX
    assert (native["start_time"], native["end_time"]) == (10, 20)


# --------------------------------------------------------------------------- OTLP JSON


def test_reference_json_example_with_uppercase_hex_ids() -> None:
    [(native, errors, span_hex)] = map_json(REFERENCE_EXAMPLE)
    assert errors == []
    assert native["trace_id"] == TRACE_HEX
    assert native["span_id"] == SPAN_HEX == span_hex
    assert native["parent_span_id"] == PARENT_HEX
    assert native["start_time"] == 1544712660000000000
    assert native["end_time"] == 1544712661000000000
    assert native["agent"] == "my.service"
    assert native["name"] == "…"
    assert native["attributes"]["otel.scope.name"] == "my.library"
    assert native["attributes"]["otel.scope.version"] == "1.0.0"


def test_json_ids_are_not_misread_as_base64() -> None:
    req = decode_request(REFERENCE_EXAMPLE.encode(), JSON)
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_HEX)
    assert span.span_id == bytes.fromhex(SPAN_HEX)


def test_json_int64_as_strings_or_numbers_and_int_enums() -> None:
    as_strings = json_request(
        {
            "startTimeUnixNano": "1544712660000000000",
            "endTimeUnixNano": "1544712661000000000",
            "attributes": [{"key": "kriy.retry.attempt", "value": {"intValue": "3"}}],
            "status": {"code": 2, "message": "failed"},
            "kind": 3,
        }
    )
    as_numbers = json_request(
        {
            "startTimeUnixNano": 1544712660000000000,
            "endTimeUnixNano": 1544712661000000000,
            "attributes": [{"key": "kriy.retry.attempt", "value": {"intValue": 3}}],
            "status": {"code": 2, "message": "failed"},
            "kind": 3,
        }
    )
    [(a, _, _)] = map_json(as_strings)
    [(b, _, _)] = map_json(as_numbers)
    assert a == b
    assert a["start_time"] == 1544712660000000000
    assert a["attributes"]["kriy.retry.attempt"] == 3
    assert (a["status"], a["status_message"]) == ("error", "failed")


def test_json_unknown_fields_are_ignored_at_every_level() -> None:
    doc = json_request(
        {
            "futureSpanField": {"x": 1},
            "status": {"code": 1, "futureStatusField": True},
            "attributes": [{"key": "a", "value": {"stringValue": "v"}, "futureKv": 1}],
        }
    )
    doc["futureTopLevel"] = [1, 2]
    doc["resourceSpans"][0]["futureResourceSpansField"] = "x"
    doc["resourceSpans"][0]["resource"]["entityRefs"] = [{"type": "service"}]
    [(native, errors, _)] = map_json(doc)
    assert errors == []
    assert native["status"] == "ok"
    assert native["attributes"] == {"a": "v"}


def test_json_snake_case_keys_are_accepted_with_hex_ids() -> None:
    # OTLP says keys MUST be lowerCamelCase; like json_format and the Collector we still
    # accept proto field names, but their ids must be read as hex too.
    doc = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE_HEX.upper(),
                                "span_id": SPAN_HEX,
                                "parent_span_id": PARENT_HEX,
                                "name": "step",
                                "start_time_unix_nano": "5",
                                "end_time_unix_nano": "6",
                            }
                        ]
                    }
                ]
            }
        ]
    }
    [(native, errors, _)] = map_json(doc)
    assert errors == []
    assert (native["trace_id"], native["span_id"], native["parent_span_id"]) == (
        TRACE_HEX,
        SPAN_HEX,
        PARENT_HEX,
    )
    assert native["start_time"] == 5


def test_json_bytes_values_stay_base64_while_ids_are_hex() -> None:
    doc = json_request(
        {
            "attributes": [
                {"key": "blob", "value": {"bytesValue": base64.b64encode(b"\x01\x02").decode()}}
            ]
        }
    )
    [(native, _, _)] = map_json(doc)
    assert native["attributes"]["blob"] == base64.b64encode(b"\x01\x02").decode()


def test_json_link_ids_are_hex() -> None:
    doc = json_request({"links": [{"traceId": TRACE_HEX.upper(), "spanId": PARENT_HEX.upper()}]})
    [(native, _, _)] = map_json(doc)
    assert json.loads(native["attributes"]["otel.links"]) == [
        {"trace_id": TRACE_HEX, "span_id": PARENT_HEX}
    ]


def test_json_empty_parent_span_id_is_a_root() -> None:
    [(native, errors, _)] = map_json(json_request({"parentSpanId": ""}))
    assert errors == []
    assert native["parent_span_id"] is None


def test_json_all_zero_ids_are_per_span_errors() -> None:
    doc = json_request({"spanId": "0" * 16})
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        {"traceId": TRACE_HEX, "spanId": PARENT_HEX, "name": "ok"}
    )
    (bad, good) = map_json(doc)
    assert bad[0] is None and bad[1] == ["spanId: must be 8 bytes, not all zero"]
    assert good[0]["name"] == "ok"


def test_json_content_type_parameters_and_case_are_ignored() -> None:
    req = decode_request(REFERENCE_EXAMPLE.encode(), "Application/JSON; charset=utf-8")
    assert len(req.resource_spans) == 1


@pytest.mark.parametrize(
    ("span", "message"),
    [
        ({"traceId": "zz" * 16}, "traceId: must be 32 hex characters"),
        ({"traceId": TRACE_HEX[:-2]}, "traceId: must be 32 hex characters"),
        ({"traceId": TRACE_HEX + "00"}, "traceId: must be 32 hex characters"),
        ({"spanId": "W47/95gDgQPS"}, "spanId: must be 16 hex characters"),  # base64, not hex
        ({"spanId": "eee19b7e c3c1b17"}, "spanId: must be 16 hex characters"),
        ({"parentSpanId": "abc"}, "parentSpanId: must be 16 hex characters"),
        ({"spanId": 12345}, "spanId: must be a hex string"),
    ],
)
def test_json_bad_hex_ids_are_decode_errors(span: dict, message: str) -> None:
    with pytest.raises(OtlpDecodeError, match=message) as exc:
        decode_request(json.dumps(json_request(span)).encode(), JSON)
    assert "resourceSpans[0].scopeSpans[0].spans[0]" in str(exc.value)


def test_json_bad_link_id_is_a_decode_error() -> None:
    doc = json_request({"links": [{"traceId": TRACE_HEX, "spanId": "xyz"}]})
    with pytest.raises(OtlpDecodeError, match=r"links\[0\]\.spanId"):
        decode_request(json.dumps(doc).encode(), JSON)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{not json",
        b"[]",
        b'"resourceSpans"',
        b'{"resourceSpans": "nope"}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5, "kind": "x"}]}]}]}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
    ],
)
def test_malformed_json_body_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(OtlpDecodeError):
        decode_request(body, JSON)


def test_malformed_protobuf_body_is_a_decode_error() -> None:
    with pytest.raises(OtlpDecodeError, match="invalid protobuf"):
        decode_request(b"\x0a\xff\xff\xff\xff\x0f garbage", PROTOBUF)


def test_empty_protobuf_body_is_an_empty_request() -> None:
    assert to_native(decode_request(b"", PROTOBUF)) == []


def test_unsupported_content_type_is_a_decode_error() -> None:
    with pytest.raises(OtlpDecodeError, match="unsupported content type"):
        decode_request(b"{}", "text/plain")


def _deep_json_value(depth: int) -> str:
    return '{"arrayValue":{"values":[' * depth + '{"stringValue":"x"}' + "]}}" * depth


def _json_body_with_attribute(value: str) -> bytes:
    span = f'{{"traceId":"{TRACE_HEX}","spanId":"{SPAN_HEX}","name":"n","attributes":[{{"key":"deep","value":{value}}}]}}'
    return f'{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span}]}}]}}]}}'.encode()


@pytest.mark.parametrize("depth", [60, 400, 5000])
def test_deeply_nested_json_value_is_a_decode_error_not_recursion(depth: int) -> None:
    with pytest.raises(OtlpDecodeError):
        decode_request(_json_body_with_attribute(_deep_json_value(depth)), JSON)


def test_moderately_nested_json_value_still_decodes() -> None:
    [(native, errors, _)] = map_json(_json_body_with_attribute(_deep_json_value(20)))
    assert errors == []
    assert json.loads(native["attributes"]["deep"]) == json.loads("[" * 20 + '"x"' + "]" * 20)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_deeply_nested_protobuf_value_is_a_decode_error_not_recursion() -> None:
    value = AnyValue(string_value="x").SerializeToString()
    for _ in range(5000):
        array = b"\x0a" + _varint(len(value)) + value  # ArrayValue.values = 1
        value = b"\x2a" + _varint(len(array)) + array  # AnyValue.array_value = 5
    attribute = b"\x0a\x04deep" + b"\x12" + _varint(len(value)) + value  # KeyValue
    span = raw_span().SerializeToString() + b"\x4a" + _varint(len(attribute)) + attribute
    scope_spans = b"\x12" + _varint(len(span)) + span
    resource_spans = b"\x12" + _varint(len(scope_spans)) + scope_spans
    body = b"\x0a" + _varint(len(resource_spans)) + resource_spans
    with pytest.raises(OtlpDecodeError, match="invalid protobuf"):
        decode_request(body, PROTOBUF)


# --------------------------------------------------------------------------- responses


def test_full_success_response_is_empty_in_both_encodings() -> None:
    assert encode_response(0, "", PROTOBUF) == b""
    assert encode_response(0, "", JSON) == b"{}"
    assert encode_response(0, "", "application/json; charset=utf-8") == b"{}"


def test_partial_success_response_round_trips_in_protobuf() -> None:
    body = encode_response(2, "span 3: spanId: must be 8 bytes, not all zero", PROTOBUF)
    resp = ExportTraceServiceResponse.FromString(body)
    assert resp.HasField("partial_success")
    assert resp.partial_success.rejected_spans == 2
    assert resp.partial_success.error_message == "span 3: spanId: must be 8 bytes, not all zero"


def test_partial_success_response_round_trips_in_camel_case_json() -> None:
    body = encode_response(2, "bad spans", JSON)
    assert json.loads(body) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad spans"}
    }
    resp = json_format.Parse(body, ExportTraceServiceResponse())
    assert resp.partial_success.rejected_spans == 2


def test_warning_only_response_keeps_zero_rejected_spans() -> None:
    resp = ExportTraceServiceResponse.FromString(encode_response(0, "slow down", PROTOBUF))
    assert resp.HasField("partial_success")
    assert resp.partial_success.rejected_spans == 0
    assert resp.partial_success.error_message == "slow down"


def test_huge_error_message_is_trimmed_to_keep_the_response_small() -> None:
    body = encode_response(1, "x" * (5 << 20), PROTOBUF)
    assert len(body) < 4 << 20
    assert ExportTraceServiceResponse.FromString(body).partial_success.rejected_spans == 1


def test_status_round_trips_in_both_encodings() -> None:
    st = status_pb2.Status.FromString(encode_status("invalid protobuf", PROTOBUF))
    assert (st.code, st.message) == (3, "invalid protobuf")
    assert json.loads(encode_status("invalid JSON", JSON)) == {"code": 3, "message": "invalid JSON"}
    st = json_format.Parse(encode_status("busy", JSON, code=14), status_pb2.Status())
    assert (st.code, st.message) == (14, "busy")


# --------------------------------------------------------------------------- purity


def test_module_imports_without_django() -> None:
    root = Path(__file__).resolve().parents[2]
    code = "import sys, apps.ingest.otlp; assert 'django' not in sys.modules, 'django imported'"
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


def _nest_in_place(value: AnyValue, depth: int) -> None:
    for _ in range(depth):
        value = value.array_value.values.add()
    value.string_value = "x"


def test_hand_built_value_nested_beyond_the_limit_is_a_per_span_error() -> None:
    # Parsed requests are depth-limited by the decoders; a message built in memory is not,
    # so to_native guards its own recursion and rejects just that span.
    request = ExportTraceServiceRequest.FromString(raw_request(raw_span(name="ok")))
    spans = request.resource_spans[0].scope_spans[0].spans
    in_attribute = spans.add()
    in_attribute.CopyFrom(raw_span(span_id=b"\x02" * 8))
    _nest_in_place(in_attribute.attributes.add(key="deep").value, 200)
    in_event = spans.add()
    in_event.CopyFrom(raw_span(span_id=b"\x03" * 8))
    _nest_in_place(in_event.events.add(name="e").attributes.add(key="deep").value, 200)
    ok, attr_result, event_result = to_native(request)
    assert ok[0]["name"] == "ok"
    assert attr_result == (None, ["attributes.deep: nested deeper than 64"], "02" * 8)
    assert event_result == (None, ["events.attributes.deep: nested deeper than 64"], "03" * 8)


def test_resource_value_nested_beyond_the_limit_rejects_that_resources_spans() -> None:
    request = ExportTraceServiceRequest.FromString(raw_request(raw_span()))
    _nest_in_place(request.resource_spans[0].resource.attributes.add(key="deep").value, 200)
    other = request.resource_spans.add()
    other.scope_spans.add().spans.append(raw_span(name="other"))
    (rejected, accepted) = to_native(request)
    assert rejected == (None, ["resource.attributes.deep: nested deeper than 64"], SPAN_HEX)
    assert accepted[0]["name"] == "other"


def test_flattened_message_with_non_ascii_digit_index_is_left_alone() -> None:
    key = f"{SpanAttributes.LLM_INPUT_MESSAGES}.\u00b2.{MessageAttributes.MESSAGE_CONTENT}"
    native = one_span({SpanAttributes.OPENINFERENCE_SPAN_KIND: "LLM", key: "hi"})
    assert native["input"] is None
    assert native["attributes"][key] == "hi"
