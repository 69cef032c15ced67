"""A refund agent traced with OpenInference attributes (as Arize/Phoenix instrumentations emit).

The triage agent works under two constraints — refunds up to 100 EUR, EU data stays in the EU —
looks the order up, and hands the case to the billing agent. Two execution defects, each of which
a succeeded/failed dashboard shows as green:

* the order search comes back empty and the model asks for the same search again, three times
  with the same JSON input → ``tool_loop`` on the third ``search_orders`` TOOL span;
* the handoff (a TOOL span named ``handoff to billing``, as the openai-agents instrumentation
  emits it) passes only ``region=EU`` on: the refund cap is dropped → ``handoff_constraint_dropped``.

Configuration is the standard OTLP exporter environment:

    export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:8000
    export OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer kp_…"
    python examples/openinference_agent.py
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from openinference.semconv.resource import ResourceAttributes
from openinference.semconv.trace import (
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
)
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, Status, StatusCode, Tracer

TRIAGE = "refund-triage"
BILLING = "billing"
MODEL = "claude-sonnet-4"
CONSTRAINTS = ["refund<=100 EUR", "region=EU"]

JSON = OpenInferenceMimeTypeValues.JSON.value
TEXT = OpenInferenceMimeTypeValues.TEXT.value


def _io(span: Span, key: str, value: Any) -> None:
    """``input.value``/``output.value`` with their mime type, the OpenInference way."""
    if isinstance(value, str):
        span.set_attribute(f"{key}.value", value)
        span.set_attribute(f"{key}.mime_type", TEXT)
    else:
        span.set_attribute(f"{key}.value", json.dumps(value, sort_keys=True))
        span.set_attribute(f"{key}.mime_type", JSON)


@contextmanager
def oi_span(
    tracer: Tracer,
    name: str,
    kind: OpenInferenceSpanKindValues,
    agent: str,
    session_id: str,
    input: Any = None,
) -> Iterator[Span]:
    with tracer.start_as_current_span(name) as span:
        span.set_attribute(SpanAttributes.OPENINFERENCE_SPAN_KIND, kind.value)
        span.set_attribute(SpanAttributes.AGENT_NAME, agent)
        span.set_attribute(SpanAttributes.SESSION_ID, session_id)
        span.set_attribute(SpanAttributes.USER_ID, "customer-C-981")
        if input is not None:
            _io(span, "input", input)
        yield span
        span.set_status(Status(StatusCode.OK))


def llm(tracer: Tracer, agent: str, session_id: str, prompt: str, answer: Any) -> Any:
    """A model call; the answer is canned so the example runs without a provider key."""
    with oi_span(
        tracer, "ChatCompletion", OpenInferenceSpanKindValues.LLM, agent, session_id, prompt
    ) as span:
        prompt_tokens = len(prompt.split()) * 4 // 3 + 120
        completion_tokens = len(json.dumps(answer).split()) * 4 // 3 + 8
        span.set_attributes(
            {
                SpanAttributes.LLM_SYSTEM: "anthropic",
                SpanAttributes.LLM_PROVIDER: "anthropic",
                SpanAttributes.LLM_MODEL_NAME: MODEL,
                SpanAttributes.LLM_INVOCATION_PARAMETERS: json.dumps({"temperature": 0}),
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": prompt,
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": json.dumps(answer),
                SpanAttributes.LLM_TOKEN_COUNT_PROMPT: prompt_tokens,
                SpanAttributes.LLM_TOKEN_COUNT_COMPLETION: completion_tokens,
                SpanAttributes.LLM_TOKEN_COUNT_TOTAL: prompt_tokens + completion_tokens,
            }
        )
        _io(span, "output", answer)
        return answer


def search_orders(tracer: Tracer, session_id: str, query: dict[str, Any]) -> list[dict]:
    with oi_span(
        tracer, "search_orders", OpenInferenceSpanKindValues.TOOL, TRIAGE, session_id, query
    ) as span:
        span.set_attribute(SpanAttributes.TOOL_NAME, "search_orders")
        span.set_attribute(SpanAttributes.TOOL_DESCRIPTION, "Search a customer's orders")
        # The order is filed under status "refund_requested"; this filter never matches.
        result: list[dict] = []
        _io(span, "output", result)
        return result


def run(tracer: Tracer, session_id: str) -> str:
    """One conversation turn; returns the trace id."""
    question = "I returned the blender from order O-5520 (89 EUR). When do I get my money back?"
    with oi_span(
        tracer, TRIAGE, OpenInferenceSpanKindValues.AGENT, TRIAGE, session_id, question
    ) as root:
        root.set_attribute("kriy.constraints", CONSTRAINTS)
        query = {"customer_id": "C-981", "order_id": "O-5520", "status": "refund_pending"}
        for _turn in range(3):
            # The model keeps asking for the same search when it gets nothing back.
            llm(
                tracer,
                TRIAGE,
                session_id,
                f"Find the order. Previous search result: []. Question: {question}",
                {"tool_call": "search_orders", "arguments": query},
            )
            if search_orders(tracer, session_id, query):
                break
        decision = llm(
            tracer,
            TRIAGE,
            session_id,
            "No order found after three searches. Decide the next step.",
            {"handoff": BILLING, "reason": "refund question, order lookup inconclusive"},
        )
        with oi_span(
            tracer,
            f"handoff to {BILLING}",
            OpenInferenceSpanKindValues.TOOL,
            TRIAGE,
            session_id,
            TRIAGE,
        ) as handoff:
            # The defect: the refund cap is not passed on to the billing agent.
            handoff.set_attribute("kriy.constraints", ["region=EU"])
            handoff.set_attribute("metadata", json.dumps({"reason": decision["reason"]}))
            _io(handoff, "output", BILLING)
        with oi_span(
            tracer, BILLING, OpenInferenceSpanKindValues.AGENT, BILLING, session_id, question
        ) as billing:
            billing.set_attribute("kriy.constraints", ["region=EU"])
            with oi_span(
                tracer, "refund_policy", OpenInferenceSpanKindValues.CHAIN, BILLING, session_id
            ) as chain:
                answer = llm(
                    tracer,
                    BILLING,
                    session_id,
                    f"Customer question: {question} Policy: refunds in 5-7 business days.",
                    "Refunds reach your card 5-7 business days after we receive the return.",
                )
                _io(chain, "output", answer)
            _io(billing, "output", answer)
        _io(root, "output", answer)
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
            {"service.name": "refund-service", ResourceAttributes.PROJECT_NAME: "refunds"}
        )
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("examples.openinference_agent", "0.1.0")

    session_id = f"chat-{uuid.uuid4().hex[:8]}"
    trace_id = run(tracer, session_id)
    provider.shutdown()  # flush every span before the process exits
    print(f"{TRIAGE}: trace {trace_id} session {session_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
