"""A support agent traced with the OpenTelemetry SDK and the OTel GenAI semantic conventions.

The agent answers a refund question: a model call classifies the ticket, a CRM lookup fetches
the customer's orders, a second model call drafts the reply and a tool sends it. The CRM answers
with the first page of the orders only (``has_more``), the tool span says so with
``kriy.result.partial = true`` — and the agent drafts and sends the reply anyway. Every status
is green; kriyplatform reports ``partial_result_used`` on ``execute_tool crm.lookup`` and judges
the trace ``defective``.

Configuration is the standard OTLP exporter environment (nothing in the code):

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8000
    export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer kp_…"
    python examples/otel_agent.py
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

AGENT = "support-agent"
PROVIDER = "openai"
MODEL = "gpt-4o-mini"

# --- the outside world, canned so the example runs anywhere -----------------------------------

CRM = {
    "C-4711": {
        "name": "Dana Schmidt",
        "email": "dana@example.com",
        "tier": "gold",
        "orders": [
            {"id": "A-1038", "status": "delivered", "total_eur": 59.0},
            {"id": "A-1040", "status": "delivered", "total_eur": 23.5},
            # page 2, never fetched: {"id": "A-1042", "status": "refund_pending", ...}
        ],
        "has_more": True,
        "next_page": 2,
    }
}


def crm_lookup(customer_id: str, page: int = 1) -> dict[str, Any]:
    return CRM[customer_id]


def model(messages: list[dict[str, str]], task: str) -> tuple[str, int, int]:
    """A stand-in for a chat completion: (text, input tokens, output tokens)."""
    prompt_tokens = sum(len(m["content"].split()) for m in messages) * 4 // 3 + 40
    if task == "classify":
        text = json.dumps({"intent": "refund_status", "order_id": "A-1042"})
    else:
        text = (
            "Hi Dana, I checked your account: orders A-1038 and A-1040 were delivered and have "
            "no open refunds. If you were expecting a refund, reply with the order number."
        )
    return text, prompt_tokens, len(text.split()) * 4 // 3


# --- the agent ------------------------------------------------------------------------------------


def chat(tracer: Tracer, messages: list[dict[str, str]], task: str, session_id: str) -> str:
    with tracer.start_as_current_span(f"chat {MODEL}", kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.request.model": MODEL,
                "gen_ai.agent.name": AGENT,
                "gen_ai.conversation.id": session_id,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.input.messages": json.dumps(
                    [
                        {"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]}
                        for m in messages
                    ]
                ),
            }
        )
        text, tokens_in, tokens_out = model(messages, task)
        span.set_attributes(
            {
                "gen_ai.response.model": f"{MODEL}-2024-07-18",
                "gen_ai.response.finish_reasons": ["stop"],
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [{"type": "text", "content": text}],
                            "finish_reason": "stop",
                        }
                    ]
                ),
            }
        )
        span.set_status(Status(StatusCode.OK))
        return text


def tool(tracer: Tracer, name: str, arguments: dict[str, Any], session_id: str) -> trace.Span:
    span = tracer.start_span(f"execute_tool {name}", kind=SpanKind.INTERNAL)
    span.set_attributes(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.type": "function",
            "gen_ai.tool.call.id": f"call_{uuid.uuid4().hex[:12]}",
            "gen_ai.tool.call.arguments": json.dumps(arguments),
            "gen_ai.agent.name": AGENT,
            "gen_ai.conversation.id": session_id,
        }
    )
    return span


def handle_ticket(tracer: Tracer, customer_id: str, question: str, session_id: str) -> str:
    """Answer one ticket; returns the trace id."""
    with tracer.start_as_current_span(f"invoke_agent {AGENT}", kind=SpanKind.INTERNAL) as root:
        root.set_attributes(
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.provider.name": PROVIDER,
                "gen_ai.agent.name": AGENT,
                "gen_ai.agent.id": "asst_support_v3",
                "gen_ai.conversation.id": session_id,
                "gen_ai.request.model": MODEL,
            }
        )
        intent = json.loads(
            chat(
                tracer,
                [
                    {"role": "system", "content": "Classify the ticket; answer JSON."},
                    {"role": "user", "content": question},
                ],
                "classify",
                session_id,
            )
        )

        span = tool(tracer, "crm.lookup", {"customer_id": customer_id}, session_id)
        with trace.use_span(span, end_on_exit=True):
            record = crm_lookup(customer_id)
            span.set_attribute("gen_ai.tool.call.result", json.dumps(record))
            # The CRM paginates: this is page 1 and the order in question is on page 2.
            span.set_attribute("kriy.result.partial", bool(record.get("has_more")))
            span.set_status(Status(StatusCode.OK))

        # The defect: the reply is drafted from the partial record, without fetching page 2.
        orders = ", ".join(f"{o['id']} ({o['status']})" for o in record["orders"])
        reply = chat(
            tracer,
            [
                {"role": "system", "content": "You are a friendly support agent."},
                {"role": "user", "content": question},
                {"role": "tool", "content": f"intent={intent['intent']}; orders: {orders}"},
            ],
            "draft",
            session_id,
        )

        span = tool(tracer, "email.send", {"to": record["email"], "body": reply}, session_id)
        with trace.use_span(span, end_on_exit=True):
            span.set_attribute("gen_ai.tool.call.result", json.dumps({"queued": True}))
            span.set_status(Status(StatusCode.OK))

        root.set_status(Status(StatusCode.OK))
        return format(root.get_span_context().trace_id, "032x")


def main() -> int:
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        print(
            "Set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://127.0.0.1:8000) and "
            'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <key>".',
            file=sys.stderr,
        )
        return 2
    provider = TracerProvider(
        resource=Resource.create(
            {
                "service.name": AGENT,
                "service.version": "3.2.0",
                "deployment.environment.name": "example",
            }
        )
    )
    # No arguments: endpoint, headers, compression and timeout come from OTEL_EXPORTER_OTLP_*.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("examples.otel_agent", "0.1.0")

    session_id = f"ticket-{uuid.uuid4().hex[:8]}"
    trace_id = handle_ticket(
        tracer,
        "C-4711",
        "Hi, where is my refund for order A-1042? It's been two weeks.",
        session_id,
    )
    provider.shutdown()  # flushes the batch processor: every span is exported before exit
    print(f"{AGENT}: trace {trace_id} session {session_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
