"""Execution-defect detectors: the judge of spans.md §3-4, in pure Python.

The module takes normalized spans of any number of traces and sessions, in any order, and
returns one verdict per judged trace. It holds no state and imports nothing from Django, so
the ingest worker, ``manage.py detect`` and offline tools all judge the same way.

Performance notes (the judge sees ~1M spans per run): spans are grouped once with dicts, each
detector runs only when its trigger attribute occurs in a trace (most spans carry none), and
every "is there a later/earlier span …" question is answered from per-group maxima or a sorted
list + bisect, so a trace of thousands of spans stays linear-ish.
"""

from __future__ import annotations

import gc
import json
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from operator import attrgetter

__all__ = [
    "FINDING_TYPES",
    "Contract",
    "Finding",
    "Span",
    "TraceVerdict",
    "canonical_json",
    "detect",
    "judge",
    "parse_contracts",
]

SWALLOWED_ERROR = "swallowed_error"
PARTIAL_RESULT_USED = "partial_result_used"
RETRY_REASON_LOST = "retry_reason_lost"
HANDOFF_CONSTRAINT_DROPPED = "handoff_constraint_dropped"
CONTEXT_MISSING = "context_missing"
STALE_STATE = "stale_state"
TOOL_LOOP = "tool_loop"
REQUIRED_STEP_SKIPPED = "required_step_skipped"
LATENCY_SLO_BREACH = "latency_slo_breach"

FINDING_TYPES: tuple[str, ...] = (
    SWALLOWED_ERROR,
    PARTIAL_RESULT_USED,
    RETRY_REASON_LOST,
    HANDOFF_CONSTRAINT_DROPPED,
    CONTEXT_MISSING,
    STALE_STATE,
    TOOL_LOOP,
    REQUIRED_STEP_SKIPPED,
    LATENCY_SLO_BREACH,
)

OUTCOME_FAILED = "failed"
OUTCOME_DEFECTIVE = "defective"
OUTCOME_CLEAN = "clean"


@dataclass(slots=True)
class Span:
    """One span, already validated and normalized (spans.md §1-2)."""

    trace_id: str
    span_id: str
    parent_span_id: str
    session_id: str
    agent: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    input: str = ""
    result_partial: bool = False
    retry_attempt: int = 0
    retry_reason: str = ""
    constraints: tuple[str, ...] = ()
    context_required: tuple[str, ...] = ()
    context_present: tuple[str, ...] = ()
    state_key: str = ""
    state_version: int | None = None
    state_op: str = ""
    invoke_agent: bool = False


@dataclass(frozen=True, slots=True)
class Contract:
    required_steps: tuple[str, ...] = ()
    latency_slo_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    trace_id: str
    span_id: str
    type: str
    message: str
    span_name: str


@dataclass(slots=True)
class TraceVerdict:
    trace_id: str
    root: Span
    session_id: str
    spans: list[Span]
    findings: list[Finding]
    outcome: str


# --------------------------------------------------------------------------- contracts

_CONTRACT_FIELDS = ("required_steps", "latency_slo_ms")


def parse_contracts(obj: Mapping) -> dict[str, Contract]:
    """Validate the ``--contracts`` JSON object ``{agent: {"required_steps": [...], "latency_slo_ms": n}}``.

    Both fields are optional (``null`` counts as absent); unknown fields are rejected so that a
    typo cannot silently switch a contract off.
    """
    if not isinstance(obj, Mapping):
        raise ValueError("contracts must be a JSON object mapping agent names to contracts")
    out: dict[str, Contract] = {}
    for agent, spec in obj.items():
        if not isinstance(agent, str) or not agent:
            raise ValueError(f"contracts: agent name {agent!r} must be a non-empty string")
        if not isinstance(spec, Mapping):
            raise ValueError(
                f"contracts[{agent!r}]: must be an object with required_steps and/or latency_slo_ms"
            )
        for field in spec:
            if field not in _CONTRACT_FIELDS:
                raise ValueError(
                    f"contracts[{agent!r}].{field}: unknown field "
                    "(allowed: required_steps, latency_slo_ms)"
                )
        steps = spec.get("required_steps")
        if steps is None:
            steps = ()
        elif not isinstance(steps, list | tuple) or not all(
            isinstance(s, str) and s for s in steps
        ):
            raise ValueError(
                f"contracts[{agent!r}].required_steps: must be a list of non-empty strings"
            )
        slo = spec.get("latency_slo_ms")
        # bool is an int subclass; `true` is not a latency.
        if slo is not None and (not isinstance(slo, int) or isinstance(slo, bool) or slo < 0):
            raise ValueError(
                f"contracts[{agent!r}].latency_slo_ms: must be a non-negative integer, got {slo!r}"
            )
        out[agent] = Contract(required_steps=tuple(dict.fromkeys(steps)), latency_slo_ms=slo)
    return out


# --------------------------------------------------------------------------- JSON equality


def _reject_constant(name: str) -> None:
    # NaN / Infinity are Python extensions, not JSON.
    raise ValueError(f"{name} is not JSON")


# Numbers parse as Decimal so equality is exact (1 == 1.0 == 1e0, but 0.1 != 0.1000000000000000055).
_DECODER = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, parse_constant=_reject_constant)


def _number(d: Decimal) -> str:
    # One spelling per value: strip trailing zeros from the coefficient by hand (Decimal.normalize
    # would round to the context's 28 digits and make distinct numbers equal).
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)  # finite: the decoder never produces NaN/Infinity
    n = len(digits)
    while n > 1 and digits[n - 1] == 0:
        n -= 1
        exp += 1
    coef = "".join(map(str, digits[:n]))
    if coef == "0":
        return "0"
    minus = "-" if sign else ""
    if 0 <= exp <= 20:
        return f"{minus}{coef}{'0' * exp}"
    if -20 <= exp < 0:
        point = len(coef) + exp
        if point > 0:
            return f"{minus}{coef[:point]}.{coef[point:]}"
        return f"{minus}0.{'0' * -point}{coef}"
    return f"{minus}{coef}e{exp}"


def _dump(v: object, out: list[str]) -> None:
    if isinstance(v, str):
        out.append(json.dumps(v))
    elif isinstance(v, Decimal):
        out.append(_number(v))
    elif isinstance(v, dict):
        out.append("{")
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(json.dumps(k))
            out.append(":")
            _dump(v[k], out)
        out.append("}")
    elif isinstance(v, list):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    else:
        out.append("null")


def canonical_json(text: str) -> str:
    """The canonical form under which two ``input`` texts are JSON-equal.

    Keys sorted, no whitespace, numbers compared by exact value (``1 == 1.0``), booleans distinct
    from numbers. Text that is not valid JSON is returned unchanged, so it compares as the raw
    string (a canonical form is always valid JSON, so the two never collide).
    """
    try:
        value = _DECODER.decode(text)
        out: list[str] = []
        _dump(value, out)
    except (ValueError, RecursionError):
        return text
    return "".join(out)


# --------------------------------------------------------------------------- messages


def _ms(ns: int) -> str:
    if ns % 1_000_000 == 0:
        return str(ns // 1_000_000)
    return f"{ns / 1_000_000:.3f}".rstrip("0").rstrip(".")


def _list(items: Iterable[str]) -> str:
    return ", ".join(items)


# --------------------------------------------------------------------------- the judge

_by_start = attrgetter("start_ns", "span_id")
_by_end = attrgetter("end_ns")
_name = attrgetter("name")


def _root_of(spans: Iterable[Span]) -> Span | None:
    root = None
    for s in spans:
        if not s.parent_span_id and (
            root is None
            or s.start_ns < root.start_ns
            or (s.start_ns == root.start_ns and s.span_id < root.span_id)
        ):
            root = s
    return root


class _Read:
    __slots__ = ("session", "span", "trace_id")

    def __init__(self, span: Span, trace_id: str, session: str) -> None:
        self.span = span
        self.trace_id = trace_id
        self.session = session


def _judge_trace(
    trace_id: str,
    by_id: dict[str, Span],
    contracts: Mapping[str, Contract] | None,
    reads: list[_Read],
    writes: list[tuple[Span, str]],
) -> TraceVerdict | None:
    spans = sorted(by_id.values(), key=_by_start)
    root = None
    for s in spans:  # sorted by (start, span_id): the first parentless span is the root
        if not s.parent_span_id:
            root = s
            break
    if root is None:
        return None
    session = root.session_id
    completed = root.status != "error"
    findings: list[Finding] = []

    # One pass that only notes which detectors have something to look at.
    errors: list[Span] | None = None
    partials: list[Span] | None = None
    retries: list[Span] | None = None
    tools: list[Span] | None = None
    handoffs: list[Span] | None = None
    needs_context: list[Span] | None = None
    for i, s in enumerate(spans):
        if s.status == "error":
            if errors is None:
                errors = []
            errors.append(s)
        elif s.result_partial:
            if partials is None:
                partials = []
            partials.append(s)
        if s.retry_attempt >= 1 and not s.retry_reason:
            if retries is None:
                retries = []
            retries.append(s)
        kind = s.kind
        if s.invoke_agent and kind != "handoff":
            # spans.md §1: invoke_agent is a handoff when the invoked agent differs from the
            # parent span's. Copy rather than mutate the caller's span.
            parent = by_id.get(s.parent_span_id)
            if parent is not None and parent.agent != s.agent:
                kind = "handoff"
                s = spans[i] = replace(s, kind=kind)
        if kind == "tool":
            if s.input:
                if tools is None:
                    tools = []
                tools.append(s)
        elif kind == "handoff":
            if handoffs is None:
                handoffs = []
            handoffs.append(s)
        if s.context_required and s.status != "error":
            if needs_context is None:
                needs_context = []
            needs_context.append(s)
        if s.state_op:
            if s.state_op == "read":
                if s.state_key and s.state_version is not None:
                    reads.append(_Read(s, trace_id, s.session_id or session))
            elif s.state_op == "write" and s.state_key and s.state_version is not None:
                writes.append((s, s.session_id or session))

    if errors is not None and completed:
        _swallowed_errors(trace_id, spans, errors, findings)
    if partials is not None and completed:
        _partial_results(trace_id, spans, partials, findings)
    if retries is not None and errors is not None:
        _lost_retry_reasons(trace_id, errors, retries, findings)
    if handoffs is not None:
        for s in handoffs:
            parent = by_id.get(s.parent_span_id)
            if parent is None or not parent.constraints:
                continue
            kept = set(s.constraints)
            dropped = [c for c in dict.fromkeys(parent.constraints) if c not in kept]
            if dropped:
                findings.append(
                    Finding(
                        trace_id,
                        s.span_id,
                        HANDOFF_CONSTRAINT_DROPPED,
                        f"handoff `{s.name}` dropped constraint(s) {_list(dropped)} from its parent",
                        s.name,
                    )
                )
    if needs_context is not None:
        for s in needs_context:
            present = set(s.context_present)
            missing = [f for f in dict.fromkeys(s.context_required) if f not in present]
            if missing:
                findings.append(
                    Finding(
                        trace_id,
                        s.span_id,
                        CONTEXT_MISSING,
                        f"`{s.name}` lacks required context: {_list(missing)}",
                        s.name,
                    )
                )
    if tools is not None and len(tools) >= 3:
        _tool_loops(trace_id, tools, findings)
    if contracts:
        contract = contracts.get(root.agent)
        if contract is not None:
            _contract_findings(trace_id, root, spans, contract, completed, findings)

    return TraceVerdict(
        trace_id=trace_id,
        root=root,
        session_id=session,
        spans=spans,
        findings=findings,
        outcome=(
            OUTCOME_FAILED if not completed else OUTCOME_DEFECTIVE if findings else OUTCOME_CLEAN
        ),
    )


def _swallowed_errors(
    trace_id: str, spans: list[Span], errors: list[Span], findings: list[Finding]
) -> None:
    # Latest start of an ok span per (parent, name): an error is recovered iff that start is
    # no earlier than the error's end. The error span itself is never ok, so never counted.
    keys = {(s.parent_span_id, s.name) for s in errors}
    latest_ok: dict[tuple[str, str], int] = {}
    for o in spans:
        if o.status == "ok":
            k = (o.parent_span_id, o.name)
            if k in keys:
                prev = latest_ok.get(k)
                if prev is None or o.start_ns > prev:
                    latest_ok[k] = o.start_ns
    for s in errors:
        ok_start = latest_ok.get((s.parent_span_id, s.name))
        if ok_start is None or ok_start < s.end_ns:
            findings.append(
                Finding(
                    trace_id,
                    s.span_id,
                    SWALLOWED_ERROR,
                    f"`{s.name}` failed and the trace completed without a successful retry",
                    s.name,
                )
            )


def _partial_results(
    trace_id: str, spans: list[Span], partials: list[Span], findings: list[Finding]
) -> None:
    starts = [s.start_ns for s in spans]  # spans are sorted by start
    names = {s.name for s in partials}
    # Latest start of a complete (non-partial) span per name: a re-fetch after S repairs S.
    latest_full: dict[str, int] = {}
    for o in spans:
        if not o.result_partial and o.name in names:
            prev = latest_full.get(o.name)
            if prev is None or o.start_ns > prev:
                latest_full[o.name] = o.start_ns
    for s in partials:
        later = len(starts) - bisect_left(starts, s.end_ns)
        if s.start_ns >= s.end_ns:
            later -= 1  # a zero-length S starts at its own end; it is not later than itself
        if later <= 0:
            continue
        full_start = latest_full.get(s.name)
        if full_start is not None and full_start >= s.end_ns:
            continue
        findings.append(
            Finding(
                trace_id,
                s.span_id,
                PARTIAL_RESULT_USED,
                f"`{s.name}` returned a partial result and {later} later step(s) used it",
                s.name,
            )
        )


def _lost_retry_reasons(
    trace_id: str, errors: list[Span], retries: list[Span], findings: list[Finding]
) -> None:
    errors_by_key: dict[tuple[str, str], list[Span]] = {}
    for o in errors:
        errors_by_key.setdefault((o.parent_span_id, o.name), []).append(o)
    for group in errors_by_key.values():
        group.sort(key=_by_end)
    for s in retries:
        group = errors_by_key.get((s.parent_span_id, s.name))
        if group is None:
            continue
        # The earliest-ending errored sibling other than S decides; it is among the first two.
        for o in group[:2]:
            if o.span_id == s.span_id:
                continue
            if o.end_ns <= s.start_ns:
                findings.append(
                    Finding(
                        trace_id,
                        s.span_id,
                        RETRY_REASON_LOST,
                        f"`{s.name}` retry #{s.retry_attempt} carries no reason after `{o.name}` failed",
                        s.name,
                    )
                )
            break


def _tool_loops(trace_id: str, tools: list[Span], findings: list[Finding]) -> None:
    by_name: dict[str, list[Span]] = {}
    for s in tools:
        by_name.setdefault(s.name, []).append(s)
    for name, calls in by_name.items():
        if len(calls) < 3:
            continue  # cheap skip: canonicalizing inputs is the expensive part
        # Canonicalize each distinct text once; most repeated calls repeat the text verbatim.
        by_text: dict[str, list[Span]] = {}
        for s in calls:
            by_text.setdefault(s.input, []).append(s)
        by_input: dict[str, list[Span]] = {}
        for text, same_text in by_text.items():
            by_input.setdefault(canonical_json(text), []).extend(same_text)
        for same in by_input.values():
            if len(same) < 3:
                continue
            same.sort(key=_by_start)
            for n, s in enumerate(same[2:], start=3):
                findings.append(
                    Finding(
                        trace_id,
                        s.span_id,
                        TOOL_LOOP,
                        f"`{name}` called {n} times with the same input",
                        name,
                    )
                )


def _contract_findings(
    trace_id: str,
    root: Span,
    spans: list[Span],
    contract: Contract,
    completed: bool,
    findings: list[Finding],
) -> None:
    if completed and contract.required_steps:
        seen = set(map(_name, spans))
        missing = [step for step in contract.required_steps if step not in seen]
        if missing:
            findings.append(
                Finding(
                    trace_id,
                    root.span_id,
                    REQUIRED_STEP_SKIPPED,
                    f"`{root.name}` skipped required step(s): {_list(missing)}",
                    root.name,
                )
            )
    slo = contract.latency_slo_ms
    if slo is not None:
        took = root.end_ns - root.start_ns
        if took > slo * 1_000_000:
            findings.append(
                Finding(
                    trace_id,
                    root.span_id,
                    LATENCY_SLO_BREACH,
                    f"`{root.name}` took {_ms(took)} ms, over its {slo} ms SLO",
                    root.name,
                )
            )


# A write as the stale-state index keeps it; the max of these over a prefix is the write to name
# (highest version, then latest end, then ids), the same whatever order spans arrived in.
_WriteKey = tuple[int, int, str, str, str]


class _WriteIndex:
    """Writes of one (session or trace, state key), sorted by end: "some write ending no later
    than t with version > v" is a bisect plus a prefix maximum."""

    __slots__ = ("best", "ends")

    def __init__(self, writes: list[tuple[int, _WriteKey]]) -> None:
        writes.sort(key=lambda w: w[0])
        self.ends = [end for end, _ in writes]
        self.best: list[_WriteKey] = []
        top: _WriteKey | None = None
        for _, w in writes:
            if top is None or w > top:
                top = w
            self.best.append(top)

    def newest_before(self, t: int) -> _WriteKey | None:
        i = bisect_right(self.ends, t)
        return self.best[i - 1] if i else None


def _stale_reads(
    reads: list[_Read], writes: list[tuple[Span, str]], out: dict[str, list[Finding]]
) -> None:
    by_session: dict[tuple[str, str], list[tuple[int, _WriteKey]]] = {}
    by_trace: dict[tuple[str, str], list[tuple[int, _WriteKey]]] = {}
    for w, w_session in writes:
        assert w.state_version is not None
        entry = (w.end_ns, (w.state_version, w.end_ns, w.trace_id, w.span_id, w.name))
        by_trace.setdefault((w.trace_id, w.state_key), []).append(entry)
        if w_session:
            by_session.setdefault((w_session, w.state_key), []).append(entry)
    session_index = {k: _WriteIndex(v) for k, v in by_session.items()}
    trace_index = {k: _WriteIndex(v) for k, v in by_trace.items()}
    for r in reads:
        s = r.span
        assert s.state_version is not None
        # A read with no session (own or inherited) only sees writes of its own trace.
        index = (
            session_index.get((r.session, s.state_key))
            if r.session
            else trace_index.get((r.trace_id, s.state_key))
        )
        if index is None:
            continue
        w = index.newest_before(s.start_ns)
        if w is None or w[0] <= s.state_version:
            continue
        out[r.trace_id].append(
            Finding(
                r.trace_id,
                s.span_id,
                STALE_STATE,
                f"`{s.name}` read {s.state_key} at version {s.state_version} "
                f"after version {w[0]} was written by `{w[4]}`",
                s.name,
            )
        )


def _finding_order(f: Finding) -> tuple[str, str]:
    return (f.span_id, f.type)


def judge(
    spans: Iterable[Span],
    contracts: Mapping[str, Contract] | None = None,
    *,
    only_traces: Collection[str] | None = None,
) -> list[TraceVerdict]:
    """Judge every trace whose root has arrived (or only those in ``only_traces``).

    Spans may belong to many traces and sessions and arrive in any order; a re-sent
    (trace_id, span_id) replaces the earlier one. With ``only_traces`` the other spans are
    context only (e.g. the writes of other traces of a session for ``stale_state``).
    Verdicts are sorted by trace_id, each verdict's findings by (span_id, type).
    """
    # The judge allocates millions of small acyclic objects; the cyclic collector would walk
    # them over and over for nothing (measured: ~35 % of the run). Pause it, then restore.
    if not gc.isenabled():
        return _judge(spans, contracts, only_traces)
    gc.disable()
    try:
        return _judge(spans, contracts, only_traces)
    finally:
        gc.enable()


def _judge(
    spans: Iterable[Span],
    contracts: Mapping[str, Contract] | None,
    only_traces: Collection[str] | None,
) -> list[TraceVerdict]:
    traces: dict[str, dict[str, Span]] = {}
    get = traces.get
    for s in spans:
        by_id = get(s.trace_id)
        if by_id is None:
            traces[s.trace_id] = {s.span_id: s}
        else:
            by_id[s.span_id] = s  # the last one given wins

    if only_traces is None:
        judged_ids: Iterable[str] = traces
    else:
        wanted = set(only_traces)
        judged_ids = [t for t in traces if t in wanted]

    reads: list[_Read] = []
    writes: list[tuple[Span, str]] = []
    verdicts: dict[str, TraceVerdict] = {}
    for trace_id in judged_ids:
        verdict = _judge_trace(trace_id, traces[trace_id], contracts, reads, writes)
        if verdict is not None:
            verdicts[trace_id] = verdict

    if reads:
        # Writes of traces not judged here (not asked for, or root still missing) still count.
        for trace_id, by_id in traces.items():
            if trace_id in verdicts:
                continue
            root_session: str | None = None
            for w in by_id.values():
                if w.state_op == "write" and w.state_key and w.state_version is not None:
                    w_session = w.session_id
                    if not w_session:
                        if root_session is None:
                            root = _root_of(by_id.values())
                            root_session = root.session_id if root is not None else ""
                        w_session = root_session
                    writes.append((w, w_session))
        _stale_reads(reads, writes, {t: v.findings for t, v in verdicts.items()})

    result = [verdicts[t] for t in sorted(verdicts)]
    for v in result:
        if v.findings:
            if len(v.findings) > 1:
                v.findings.sort(key=_finding_order)
            if v.outcome == OUTCOME_CLEAN:
                v.outcome = OUTCOME_DEFECTIVE  # a stale read found after the trace's own pass
    return result


def detect(spans: Iterable[Span], contracts: Mapping[str, Contract] | None = None) -> list[Finding]:
    """All findings of all judged traces, sorted by (trace_id, span_id, type)."""
    return [f for v in judge(spans, contracts) for f in v.findings]
