"""Realistic agent traffic with the kriy.* conventions and injected execution defects.

Used by the demo seeding, ``manage.py simulate`` and the benchmarks. No Django imports: a
generator of native span dicts (spans.md §1) and their OTLP protobuf equivalent.

Four agents, each with its typical failure modes:
- ``support``: a ticket flow over a customer session (CRM lookups that come back partial, stale
  account state between turns, a required ``verify`` step that gets skipped);
- ``planner``: a trip planner (missing context, retries without their reason, tool loops,
  swallowed booking errors);
- ``orchestrator``: a multi-agent router whose handoffs must carry the budget/region constraints;
- ``research``: long research runs with a latency SLO, sometimes failing outright.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

AGENTS = ("support", "planner", "orchestrator", "research")

# Contracts the demo project uses (spans.md §3 contract format).
CONTRACTS: dict[str, dict[str, Any]] = {
    "support": {"required_steps": ["crm.lookup", "verify"], "latency_slo_ms": 20_000},
    "planner": {"required_steps": ["plan"], "latency_slo_ms": 30_000},
    "research": {"latency_slo_ms": 45_000},
}

MS = 1_000_000
_WORDS = [
    "account",
    "order",
    "refund",
    "invoice",
    "shipping",
    "delay",
    "customer",
    "premium",
    "plan",
    "upgrade",
    "region",
    "budget",
    "flight",
    "hotel",
    "itinerary",
    "policy",
    "warranty",
    "replacement",
    "address",
    "billing",
    "cycle",
    "discount",
    "contract",
    "renewal",
    "escalation",
    "priority",
    "summary",
    "evidence",
    "source",
    "citation",
    "market",
    "report",
    "quarterly",
    "analysis",
    "forecast",
]


@dataclass
class Rates:
    """Probability of each injected defect per trace (scaled by ``Rates.scaled``)."""

    partial: float = 0.12
    stale: float = 0.08
    skip_verify: float = 0.06
    context: float = 0.08
    retry_reason: float = 0.10
    tool_loop: float = 0.06
    swallowed: float = 0.07
    handoff_drop: float = 0.10
    slow: float = 0.06
    failed: float = 0.04

    def scaled(self, k: float) -> Rates:
        return Rates(**{name: min(1.0, v * k) for name, v in self.__dict__.items()})


@dataclass
class TrafficGenerator:
    seed: int = 7
    rates: Rates = field(default_factory=Rates)
    payload_bytes: int = 400  # text in each input/output, to make spans ~1 KB like real ones

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._session_state: dict[str, int] = {}

    # ------------------------------------------------------------------ ids and text
    def _tid(self) -> str:
        return f"{self.rng.getrandbits(128) | 1:032x}"

    def _sid(self) -> str:
        return f"{self.rng.getrandbits(64) | 1:016x}"

    def _text(self, n: int | None = None) -> str:
        n = n or self.payload_bytes
        words, size = [], 0
        while size < n:
            w = self.rng.choice(_WORDS)
            words.append(w)
            size += len(w) + 1
        return " ".join(words)

    def _span(
        self,
        trace_id: str,
        parent: str | None,
        agent: str,
        name: str,
        kind: str,
        start: int,
        dur_ms: float,
        **extra: Any,
    ) -> dict[str, Any]:
        s: dict[str, Any] = {
            "trace_id": trace_id,
            "span_id": self._sid(),
            "parent_span_id": parent,
            "agent": agent,
            "name": name,
            "kind": kind,
            "start_time": start,
            "end_time": start + int(dur_ms * MS),
            "status": extra.pop("status", "ok"),
        }
        s.update(extra)
        return s

    def _llm(
        self, tid: str, parent: str, agent: str, name: str, start: int, dur_ms: float
    ) -> dict[str, Any]:
        model = self.rng.choice(("gpt-4o", "claude-sonnet-4", "gpt-4o-mini"))
        tin, tout = self.rng.randint(400, 3000), self.rng.randint(60, 600)
        return self._span(
            tid,
            parent,
            agent,
            name,
            "llm",
            start,
            dur_ms,
            input=[{"role": "user", "content": self._text()}],
            output=[{"role": "assistant", "content": self._text(self.payload_bytes // 2)}],
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai" if model.startswith("gpt") else "anthropic",
                "gen_ai.request.model": model,
                "gen_ai.response.model": model,
                "gen_ai.usage.input_tokens": tin,
                "gen_ai.usage.output_tokens": tout,
                "gen_ai.response.finish_reasons": ["stop"],
                "llm.cost.total": round(tin * 2.5e-6 + tout * 1e-5, 6),
            },
        )

    # ------------------------------------------------------------------ agents
    def support(self, start: int, session: str) -> list[dict[str, Any]]:
        r, rng = self.rates, self.rng
        tid = self._tid()
        account = f"account:{session[-4:]}"
        failed = rng.random() < r.failed
        root = self._span(
            tid,
            None,
            "support",
            "handle_ticket",
            "agent",
            start,
            0,
            session_id=session,
            input={"ticket": self._text(120)},
        )
        spans = [root]
        t = start + 5 * MS
        spans.append(
            self._llm(tid, root["span_id"], "support", "classify", t, rng.uniform(300, 900))
        )
        t = spans[-1]["end_time"] + MS
        partial = rng.random() < r.partial
        lookup = self._span(
            tid,
            root["span_id"],
            "support",
            "crm.lookup",
            "tool",
            t,
            rng.uniform(80, 400),
            input={"customer": session[-6:]},
            output={"orders": self.rng.randint(0, 9), "truncated": partial},
            attributes={"kriy.result.partial": partial, "gen_ai.tool.name": "crm.lookup"},
        )
        spans.append(lookup)
        t = lookup["end_time"] + MS
        if partial and rng.random() < 0.3:  # recovered: a complete re-fetch follows
            spans.append(
                self._span(
                    tid,
                    root["span_id"],
                    "support",
                    "crm.lookup",
                    "tool",
                    t,
                    rng.uniform(80, 300),
                    input={"customer": session[-6:], "page": 2},
                    attributes={"kriy.result.partial": False},
                )
            )
            t = spans[-1]["end_time"] + MS
        version = self._session_state.get(session, 1)
        stale = rng.random() < r.stale
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "support",
                "account.read",
                "tool",
                t,
                rng.uniform(20, 80),
                attributes={
                    "kriy.state.key": account,
                    "kriy.state.op": "read",
                    "kriy.state.version": version - 1 if stale and version > 1 else version,
                },
            )
        )
        t = spans[-1]["end_time"] + MS
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "support",
                "kb.search",
                "retrieval",
                t,
                rng.uniform(100, 500),
                input={"query": self._text(60)},
                output={"documents": 5},
            )
        )
        t = spans[-1]["end_time"] + MS
        spans.append(
            self._llm(tid, root["span_id"], "support", "draft_reply", t, rng.uniform(1500, 6000))
        )
        t = spans[-1]["end_time"] + MS
        if not (rng.random() < r.skip_verify):
            spans.append(
                self._span(
                    tid, root["span_id"], "support", "verify", "step", t, rng.uniform(50, 300)
                )
            )
            t = spans[-1]["end_time"] + MS
        # this turn updates the account: later turns of the session must read the new version
        self._session_state[session] = version + 1
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "support",
                "account.update",
                "tool",
                t,
                rng.uniform(20, 80),
                attributes={
                    "kriy.state.key": account,
                    "kriy.state.op": "write",
                    "kriy.state.version": version + 1,
                },
            )
        )
        t = spans[-1]["end_time"] + MS
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "support",
                "send_reply",
                "tool",
                t,
                rng.uniform(30, 120),
                status="error" if failed else "ok",
                status_message="smtp relay refused" if failed else None,
            )
        )
        t = spans[-1]["end_time"] + MS
        if rng.random() < r.slow:
            t += int(rng.uniform(20_000, 40_000) * MS)
        root["end_time"] = t
        if failed:
            root["status"], root["status_message"] = "error", "reply not delivered"
        return spans

    def planner(self, start: int, session: str) -> list[dict[str, Any]]:
        r, rng = self.rates, self.rng
        tid = self._tid()
        root = self._span(
            tid,
            None,
            "planner",
            "plan_trip",
            "agent",
            start,
            0,
            session_id=session,
            input={"request": self._text(100)},
        )
        spans = [root]
        t = start + 3 * MS
        need = ["destination", "dates", "budget"]
        have = need[:-1] if rng.random() < r.context else need
        spans.append(self._llm(tid, root["span_id"], "planner", "plan", t, rng.uniform(800, 2500)))
        spans[-1]["attributes"].update(
            {"kriy.context.required": need, "kriy.context.present": have}
        )
        t = spans[-1]["end_time"] + MS
        # flights: the first attempt times out, the retry should carry why
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "planner",
                "search_flights",
                "tool",
                t,
                rng.uniform(200, 900),
                status="error",
                status_message="upstream timeout",
                input={"to": "LIS"},
                attributes={"kriy.retry.attempt": 0},
            )
        )
        t = spans[-1]["end_time"] + MS
        attrs: dict[str, Any] = {"kriy.retry.attempt": 1}
        if not (rng.random() < r.retry_reason):
            attrs["kriy.retry.reason"] = "upstream timeout on attempt 0"
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "planner",
                "search_flights",
                "tool",
                t,
                rng.uniform(200, 900),
                input={"to": "LIS"},
                attributes=attrs,
            )
        )
        t = spans[-1]["end_time"] + MS
        loops = 3 if rng.random() < r.tool_loop else 1
        for _ in range(loops):
            spans.append(
                self._span(
                    tid,
                    root["span_id"],
                    "planner",
                    "search_hotels",
                    "tool",
                    t,
                    rng.uniform(150, 600),
                    input={"city": "Lisbon", "nights": 3},
                    output={"hotels": 12},
                )
            )
            t = spans[-1]["end_time"] + MS
        book_failed = rng.random() < r.swallowed
        spans.append(
            self._span(
                tid,
                root["span_id"],
                "planner",
                "book",
                "tool",
                t,
                rng.uniform(300, 1200),
                status="error" if book_failed else "ok",
                status_message="card declined" if book_failed else None,
            )
        )
        t = spans[-1]["end_time"] + MS
        spans.append(
            self._llm(tid, root["span_id"], "planner", "summarize", t, rng.uniform(500, 1500))
        )
        t = spans[-1]["end_time"] + MS
        if rng.random() < r.slow:
            t += int(rng.uniform(30_000, 50_000) * MS)
        root["end_time"] = t
        if rng.random() < r.failed:
            root["status"], root["status_message"] = "error", "planning aborted"
        return spans

    def orchestrator(self, start: int, session: str) -> list[dict[str, Any]]:
        r, rng = self.rates, self.rng
        tid = self._tid()
        constraints = ["budget<=500", "region=EU"]
        root = self._span(
            tid,
            None,
            "orchestrator",
            "route_request",
            "agent",
            start,
            0,
            session_id=session,
            attributes={"kriy.constraints": constraints},
        )
        spans = [root]
        t = start + 2 * MS
        spans.append(
            self._llm(tid, root["span_id"], "orchestrator", "route", t, rng.uniform(300, 800))
        )
        t = spans[-1]["end_time"] + MS
        for target in rng.sample(("billing", "shipping", "returns"), 2):
            carried = constraints[:1] if rng.random() < r.handoff_drop else constraints
            h = self._span(
                tid,
                root["span_id"],
                "orchestrator",
                f"handoff to {target}",
                "handoff",
                t,
                0,
                attributes={"kriy.constraints": carried},
            )
            spans.append(h)
            c = t + MS
            spans.append(
                self._llm(tid, h["span_id"], target, f"{target}.answer", c, rng.uniform(500, 2000))
            )
            c = spans[-1]["end_time"] + MS
            spans.append(
                self._span(
                    tid,
                    h["span_id"],
                    target,
                    f"{target}.lookup",
                    "tool",
                    c,
                    rng.uniform(50, 300),
                    input={"ref": self._text(20)},
                )
            )
            h["end_time"] = spans[-1]["end_time"] + MS
            t = h["end_time"] + MS
        root["end_time"] = t
        if rng.random() < r.failed:
            root["status"] = "error"
        return spans

    def research(self, start: int, session: str) -> list[dict[str, Any]]:
        r, rng = self.rates, self.rng
        tid = self._tid()
        root = self._span(
            tid,
            None,
            "research",
            "research_question",
            "agent",
            start,
            0,
            session_id=session,
            input={"question": self._text(150)},
        )
        spans = [root]
        t = start + 2 * MS
        for i in range(rng.randint(2, 4)):
            spans.append(
                self._span(
                    tid,
                    root["span_id"],
                    "research",
                    "web.search",
                    "retrieval",
                    t,
                    rng.uniform(300, 1500),
                    input={"q": self._text(40), "page": i},
                )
            )
            t = spans[-1]["end_time"] + MS
            spans.append(
                self._llm(
                    tid, root["span_id"], "research", "read_source", t, rng.uniform(1000, 4000)
                )
            )
            t = spans[-1]["end_time"] + MS
        spans.append(
            self._llm(tid, root["span_id"], "research", "write_report", t, rng.uniform(3000, 9000))
        )
        t = spans[-1]["end_time"] + MS
        if rng.random() < r.slow:
            t += int(rng.uniform(40_000, 60_000) * MS)
        root["end_time"] = t
        if rng.random() < r.failed * 1.5:
            root["status"], root["status_message"] = "error", "source quota exhausted"
        return spans

    def trace(self, agent: str, start: int, session: str) -> list[dict[str, Any]]:
        return getattr(self, agent)(start, session)

    def sessions(
        self, start: int, end: int, n_traces: int, agents: tuple[str, ...] = AGENTS
    ) -> Iterator[list[dict[str, Any]]]:
        """``n_traces`` traces spread over [start, end): sessions of 1-4 turns per agent."""
        made = 0
        span_ns = max(1, end - start)
        while made < n_traces:
            agent = self.rng.choice(agents)
            session = f"{agent[:3]}-{self.rng.getrandbits(40):010x}"
            turns = self.rng.randint(1, 4)
            t = start + int(self.rng.random() * span_ns)
            for _ in range(min(turns, n_traces - made)):
                spans = self.trace(agent, t, session)
                yield spans
                made += 1
                t = spans[0]["end_time"] + int(self.rng.uniform(5, 120) * 1e9)


# ---------------------------------------------------------------------- OTLP


def to_otlp(spans: list[dict[str, Any]], service_name: str = "kriy-simulator") -> Any:
    """The same spans as an OTLP ExportTraceServiceRequest (GenAI conventions for agent and
    session, kriy.* attributes as typed OTLP values)."""
    import orjson
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    def any_value(v: Any) -> AnyValue:
        if isinstance(v, bool):
            return AnyValue(bool_value=v)
        if isinstance(v, int):
            return AnyValue(int_value=v)
        if isinstance(v, float):
            return AnyValue(double_value=v)
        if isinstance(v, list):
            av = AnyValue()
            av.array_value.values.extend(any_value(x) for x in v)
            return av
        return AnyValue(string_value=str(v))

    op = {"llm": "chat", "tool": "execute_tool", "agent": "invoke_agent"}
    oi = {"retrieval": "RETRIEVER", "step": "CHAIN", "handoff": "TOOL"}
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(
        KeyValue(key="service.name", value=AnyValue(string_value=service_name))
    )
    ss = rs.scope_spans.add()
    ss.scope.name = "kriyplatform.simulator"
    status_code = {
        "ok": Status.STATUS_CODE_OK,
        "error": Status.STATUS_CODE_ERROR,
        "unset": Status.STATUS_CODE_UNSET,
    }
    for s in spans:
        sp: Span = ss.spans.add()
        sp.trace_id = bytes.fromhex(s["trace_id"])
        sp.span_id = bytes.fromhex(s["span_id"])
        if s.get("parent_span_id"):
            sp.parent_span_id = bytes.fromhex(s["parent_span_id"])
        sp.name = s["name"]
        sp.kind = Span.SPAN_KIND_INTERNAL
        sp.start_time_unix_nano = s["start_time"]
        sp.end_time_unix_nano = s["end_time"]
        sp.status.code = status_code[s.get("status", "unset")]
        if s.get("status_message"):
            sp.status.message = s["status_message"]
        attrs = dict(s.get("attributes") or {})
        attrs["gen_ai.agent.name"] = s["agent"]
        if s.get("session_id"):
            attrs["gen_ai.conversation.id"] = s["session_id"]
        kind = s.get("kind", "step")
        if kind in op:
            attrs["gen_ai.operation.name"] = op[kind]
        else:
            attrs.pop("gen_ai.operation.name", None)
            attrs["openinference.span.kind"] = oi[kind]
        if s.get("input") is not None:
            attrs["input.value"] = orjson.dumps(s["input"]).decode()
            attrs["input.mime_type"] = "application/json"
        if s.get("output") is not None:
            attrs["output.value"] = orjson.dumps(s["output"]).decode()
            attrs["output.mime_type"] = "application/json"
        for k, v in attrs.items():
            sp.attributes.append(KeyValue(key=k, value=any_value(v)))
    return req
