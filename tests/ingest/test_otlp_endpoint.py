"""POST /v1/traces with real opentelemetry-sdk output, protobuf and JSON, and its status codes."""

from __future__ import annotations

import gzip

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

pytestmark = pytest.mark.django_db
PROTOBUF = "application/x-protobuf"


def sdk_request(service: str = "planner", conversation: str = "conv-9"):
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "invoke_agent planner",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "planner",
            "gen_ai.conversation.id": conversation,
        },
    ):
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.prompt_tokens": 120,
                "gen_ai.usage.completion_tokens": 30,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool crm.lookup",
            attributes={"gen_ai.operation.name": "execute_tool", "kriy.result.partial": True},
        ) as s:
            s.set_status(Status(StatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span(
            "invoke_agent billing",
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": "billing",
                "kriy.constraints": ["region=EU"],
            },
        ):
            pass
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def test_protobuf_export_is_stored_and_mapped(tenant_a) -> None:
    req = sdk_request()
    api = tenant_a.api()
    resp = api.post("/v1/traces", data=req.SerializeToString(), content_type=PROTOBUF)
    assert resp.status_code == 200
    assert resp["Content-Type"] == PROTOBUF
    assert resp.content == b""  # full success: partial_success unset
    trace_id = req.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
    detail = api.get(f"/api/v1/traces/{trace_id}").json()
    by_name = {s["name"]: s for s in detail["spans"]}
    assert by_name["invoke_agent planner"]["agent"] == "planner"
    assert by_name["invoke_agent planner"]["session_id"] == "conv-9"
    assert by_name["chat gpt-4o"] | {} and by_name["chat gpt-4o"]["kind"] == "llm"
    assert (
        by_name["chat gpt-4o"]["model"],
        by_name["chat gpt-4o"]["tokens_in"],
        by_name["chat gpt-4o"]["tokens_out"],
    ) == ("gpt-4o", 120, 30)
    assert by_name["chat gpt-4o"]["agent"] == "planner"  # resource service.name
    assert by_name["chat gpt-4o"]["session_id"] == "conv-9"  # inherited from the root
    assert by_name["execute_tool crm.lookup"]["status"] == "error"
    assert by_name["execute_tool crm.lookup"]["attributes"]["kriy.result.partial"] is True
    assert (
        by_name["invoke_agent billing"]["kind"] == "handoff"
    )  # invoked agent differs from its parent's


def test_json_export_with_gzip_is_accepted_and_answered_in_json(tenant_a) -> None:
    req = sdk_request()
    doc = json_format.MessageToDict(req)
    # OTLP JSON carries hex ids, not base64
    import base64

    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex().upper()
    import json

    body = gzip.compress(json.dumps(doc).encode())
    resp = tenant_a.api().post(
        "/v1/traces", data=body, content_type="application/json", HTTP_CONTENT_ENCODING="gzip"
    )
    assert resp.status_code == 200, resp.content
    assert resp["Content-Type"] == "application/json"
    assert resp.json() == {}
    trace_id = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"].lower()
    assert len(tenant_a.api().get(f"/api/v1/traces/{trace_id}").json()["spans"]) == 4


def test_partial_success_reports_rejected_spans(tenant_a) -> None:
    req = sdk_request()
    spans = req.resource_spans[0].scope_spans[0].spans
    spans[1].span_id = b"\x00" * 8
    resp = tenant_a.api().post("/v1/traces", data=req.SerializeToString(), content_type=PROTOBUF)
    assert resp.status_code == 200
    out = ExportTraceServiceResponse()
    out.ParseFromString(resp.content)
    assert out.partial_success.rejected_spans == 1
    assert "spanId" in out.partial_success.error_message


def test_garbage_protobuf_is_400_with_a_status_body(tenant_a) -> None:
    resp = tenant_a.api().post(
        "/v1/traces", data=b"\xff\xff\xff not protobuf", content_type=PROTOBUF
    )
    assert resp.status_code == 400
    st = status_pb2.Status()
    st.ParseFromString(resp.content)
    assert "body" in st.message


def test_unsupported_content_type_is_415_and_missing_key_is_401(tenant_a) -> None:
    assert (
        tenant_a.api().post("/v1/traces", data=b"x", content_type="text/plain").status_code == 415
    )
    from django.test import Client

    resp = Client().post(
        "/v1/traces", data=sdk_request().SerializeToString(), content_type=PROTOBUF
    )
    assert resp.status_code == 401
    assert resp["Content-Type"] == PROTOBUF


def test_otlp_rate_limit_is_429_with_retry_after(tenant_a, settings) -> None:
    from apps.ingest.ratelimit import reset_limiter

    settings.KRIY_RATE_LIMIT_SPANS_PER_SEC = 1
    settings.KRIY_RATE_LIMIT_BURST = 4
    reset_limiter()
    api = tenant_a.api()
    assert (
        api.post(
            "/v1/traces", data=sdk_request().SerializeToString(), content_type=PROTOBUF
        ).status_code
        == 200
    )
    resp = api.post("/v1/traces", data=sdk_request().SerializeToString(), content_type=PROTOBUF)
    assert resp.status_code == 429 and int(resp["Retry-After"]) >= 1


def test_children_sent_before_their_root_show_the_roots_session(tenant_a) -> None:
    """An exporter sending each span as it ends (SimpleSpanProcessor) sends children first."""
    req = sdk_request(conversation="conv-late")
    spans = [s for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(spans) == 4 and not spans[-1].parent_span_id  # the root ends, and is sent, last
    for span in spans:
        one = type(req)()
        one.resource_spans.add().CopyFrom(req.resource_spans[0])
        del one.resource_spans[0].scope_spans[0].spans[:]
        one.resource_spans[0].scope_spans[0].spans.append(span)
        resp = tenant_a.api().post(
            "/v1/traces", data=one.SerializeToString(), content_type=PROTOBUF
        )
        assert resp.status_code == 200, resp.content
    trace_id = spans[0].trace_id.hex()
    got = tenant_a.api().get(f"/api/v1/traces/{trace_id}").json()["spans"]
    assert [s["session_id"] for s in got] == ["conv-late"] * 4
