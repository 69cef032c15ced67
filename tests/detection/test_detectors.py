"""Detector behaviour, one rule of spans.md §3-4 at a time, with the near misses its words imply."""

from __future__ import annotations

import dataclasses
import gc
import time

import pytest

from apps.detection.detectors import (
    FINDING_TYPES,
    Contract,
    Finding,
    Span,
    canonical_json,
    detect,
    judge,
    parse_contracts,
)

TRACE = "a" * 32
OTHER_TRACE = "b" * 32
MS = 1_000_000


def sid(n: int) -> str:
    return f"{n:016x}"


def root(
    *,
    status: str = "ok",
    start: int = 0,
    end: int = 1000,
    session: str = "",
    agent: str = "support",
    name: str = "support",
    trace: str = TRACE,
    n: int = 1,
    **attrs,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=sid(n),
        parent_span_id="",
        session_id=session,
        agent=agent,
        name=name,
        kind="agent",
        start_ns=start,
        end_ns=end,
        status=status,
        **attrs,
    )


def span(
    n: int,
    name: str,
    start: int,
    end: int,
    *,
    parent: int | None = 1,
    status: str = "ok",
    kind: str = "step",
    trace: str = TRACE,
    agent: str = "support",
    session: str = "",
    **attrs,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=sid(n),
        parent_span_id=sid(parent) if parent else "",
        session_id=session,
        agent=agent,
        name=name,
        kind=kind,
        start_ns=start,
        end_ns=end,
        status=status,
        **attrs,
    )


def found(spans: list[Span], contracts: dict[str, Contract] | None = None) -> set[tuple[str, str]]:
    """(span name, finding type) of every finding."""
    return {(f.span_name, f.type) for f in detect(spans, contracts)}


def only(
    spans: list[Span], type_: str, contracts: dict[str, Contract] | None = None
) -> list[Finding]:
    return [f for f in detect(spans, contracts) if f.type == type_]


# --------------------------------------------------------------------------- swallowed_error


def test_error_without_a_later_ok_sibling_is_swallowed() -> None:
    spans = [root(), span(2, "crm.lookup", 10, 20, status="error"), span(3, "reply", 30, 40)]
    [f] = only(spans, "swallowed_error")
    assert (f.trace_id, f.span_id, f.span_name) == (TRACE, sid(2), "crm.lookup")
    assert "`crm.lookup`" in f.message
    assert f.message == "`crm.lookup` failed and the trace completed without a successful retry"


def test_error_recovered_by_later_ok_sibling_is_not_swallowed() -> None:
    spans = [root(), span(2, "crm.lookup", 10, 20, status="error"), span(3, "crm.lookup", 30, 40)]
    assert only(spans, "swallowed_error") == []


def test_ok_sibling_starting_exactly_at_the_error_end_recovers_it() -> None:
    spans = [root(), span(2, "crm.lookup", 10, 20, status="error"), span(3, "crm.lookup", 20, 40)]
    assert only(spans, "swallowed_error") == []


def test_ok_sibling_overlapping_the_error_does_not_recover_it() -> None:
    spans = [root(), span(2, "crm.lookup", 10, 20, status="error"), span(3, "crm.lookup", 19, 40)]
    assert len(only(spans, "swallowed_error")) == 1


def test_earlier_ok_sibling_does_not_recover_a_later_error() -> None:
    spans = [root(), span(2, "crm.lookup", 0, 5), span(3, "crm.lookup", 10, 20, status="error")]
    assert [f.span_id for f in only(spans, "swallowed_error")] == [sid(3)]


def test_later_ok_span_with_another_name_does_not_recover_an_error() -> None:
    spans = [root(), span(2, "crm.lookup", 10, 20, status="error"), span(3, "crm.search", 30, 40)]
    assert len(only(spans, "swallowed_error")) == 1


def test_later_ok_span_of_the_same_name_under_another_parent_does_not_recover_an_error() -> None:
    spans = [
        root(),
        span(2, "step", 0, 100),
        span(3, "crm.lookup", 10, 20, parent=2, status="error"),
        span(4, "crm.lookup", 30, 40, parent=1),
    ]
    assert [f.span_id for f in only(spans, "swallowed_error")] == [sid(3)]


def test_later_unset_sibling_does_not_recover_an_error() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, status="error"),
        span(3, "crm.lookup", 30, 40, status="unset"),
    ]
    assert len(only(spans, "swallowed_error")) == 1


def test_errors_in_a_failed_trace_are_not_swallowed() -> None:
    spans = [root(status="error"), span(2, "crm.lookup", 10, 20, status="error")]
    verdicts = judge(spans)
    assert verdicts[0].findings == []
    assert verdicts[0].outcome == "failed"


def test_extra_parentless_span_is_a_sibling_of_the_root_and_can_recover_it() -> None:
    # Two parentless spans: the earliest is the root, the other its sibling.
    spans = [
        root(start=0, end=10),
        span(2, "job", 20, 30, parent=None, status="error"),
        span(3, "job", 40, 50, parent=None),
    ]
    [v] = judge(spans)
    assert v.root.span_id == sid(1)
    assert v.findings == []


# --------------------------------------------------------------------------- partial_result_used


def test_partial_result_followed_by_later_steps_is_used() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, result_partial=True),
        span(3, "plan", 20, 30),
        span(4, "reply", 40, 50),
    ]
    [f] = only(spans, "partial_result_used")
    assert f.span_id == sid(2)
    # the root (0..1000) is not later than the partial span, "plan" (starts at its end) is.
    assert f.message == "`crm.lookup` returned a partial result and 2 later step(s) used it"


def test_complete_refetch_after_a_partial_result_repairs_it() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, result_partial=True),
        span(3, "crm.lookup", 30, 40),
        span(4, "reply", 50, 60),
    ]
    assert only(spans, "partial_result_used") == []


def test_refetch_that_is_partial_again_does_not_repair_it() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, result_partial=True),
        span(3, "crm.lookup", 30, 40, result_partial=True),
        span(4, "reply", 50, 60),
    ]
    assert {f.span_id for f in only(spans, "partial_result_used")} == {sid(2), sid(3)}


def test_overlapping_complete_fetch_does_not_repair_a_partial_result() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, result_partial=True),
        span(3, "crm.lookup", 15, 40),
        span(4, "reply", 50, 60),
    ]
    assert len(only(spans, "partial_result_used")) == 1


def test_complete_refetch_anywhere_in_the_trace_repairs_it_not_only_siblings() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, result_partial=True),
        span(3, "retry block", 25, 50),
        span(4, "crm.lookup", 30, 40, parent=3),
    ]
    assert only(spans, "partial_result_used") == []


def test_partial_result_with_no_later_span_is_not_used() -> None:
    spans = [
        root(end=20),
        span(2, "plan", 0, 5),
        span(3, "crm.lookup", 10, 20, result_partial=True),
    ]
    assert only(spans, "partial_result_used") == []


def test_zero_length_partial_span_is_not_later_than_itself() -> None:
    spans = [root(end=20), span(2, "crm.lookup", 20, 20, result_partial=True)]
    assert only(spans, "partial_result_used") == []


def test_partial_result_in_a_failed_trace_is_not_reported() -> None:
    spans = [
        root(status="error"),
        span(2, "crm.lookup", 10, 20, result_partial=True),
        span(3, "plan", 30, 40),
    ]
    assert only(spans, "partial_result_used") == []


def test_errored_partial_span_is_not_a_used_partial_result() -> None:
    spans = [
        root(),
        span(2, "crm.lookup", 10, 20, result_partial=True, status="error"),
        span(3, "plan", 30, 40),
    ]
    assert found(spans) == {("crm.lookup", "swallowed_error")}


# --------------------------------------------------------------------------- retry_reason_lost


def test_retry_without_reason_after_an_errored_sibling_lost_its_reason() -> None:
    spans = [
        root(),
        span(2, "book", 10, 20, status="error"),
        span(3, "book", 30, 40, retry_attempt=2),
    ]
    [f] = only(spans, "retry_reason_lost")
    assert f.span_id == sid(3)
    assert f.message == "`book` retry #2 carries no reason after `book` failed"


def test_retry_that_carries_its_reason_is_fine() -> None:
    spans = [
        root(),
        span(2, "book", 10, 20, status="error"),
        span(3, "book", 30, 40, retry_attempt=1, retry_reason="HTTP 503 from booking API"),
    ]
    assert only(spans, "retry_reason_lost") == []


def test_retry_without_an_earlier_errored_sibling_is_not_reported() -> None:
    spans = [root(), span(2, "book", 10, 20), span(3, "book", 30, 40, retry_attempt=1)]
    assert only(spans, "retry_reason_lost") == []


def test_retry_overlapping_the_errored_attempt_is_not_reported() -> None:
    spans = [
        root(),
        span(2, "book", 10, 20, status="error"),
        span(3, "book", 15, 40, retry_attempt=1),
    ]
    assert only(spans, "retry_reason_lost") == []


def test_retry_after_an_errored_span_of_another_name_is_not_reported() -> None:
    spans = [
        root(),
        span(2, "pay", 10, 20, status="error"),
        span(3, "book", 30, 40, retry_attempt=1),
    ]
    assert only(spans, "retry_reason_lost") == []


def test_first_attempt_without_reason_is_not_a_retry() -> None:
    spans = [root(), span(2, "book", 10, 20, status="error"), span(3, "book", 30, 40)]
    assert only(spans, "retry_reason_lost") == []


def test_retry_reason_lost_is_reported_in_failed_traces_too() -> None:
    spans = [
        root(status="error"),
        span(2, "book", 10, 20, status="error"),
        span(3, "book", 30, 40, retry_attempt=1, status="error"),
    ]
    assert found(spans) == {("book", "retry_reason_lost")}


def test_zero_length_errored_retry_is_not_its_own_earlier_sibling() -> None:
    spans = [root(), span(2, "book", 30, 30, retry_attempt=1, status="error")]
    assert only(spans, "retry_reason_lost") == []


# --------------------------------------------------------------------------- handoff_constraint_dropped


def test_handoff_that_drops_parent_constraints_is_reported() -> None:
    spans = [
        root(constraints=("budget<=500", "region=EU", "lang=de")),
        span(2, "handoff to billing", 10, 20, kind="handoff", constraints=("lang=de",)),
    ]
    [f] = only(spans, "handoff_constraint_dropped")
    assert f.span_id == sid(2)
    assert f.message == (
        "handoff `handoff to billing` dropped constraint(s) budget<=500, region=EU from its parent"
    )


def test_handoff_that_passes_every_constraint_on_is_fine() -> None:
    spans = [
        root(constraints=("budget<=500", "region=EU")),
        span(2, "handoff", 10, 20, kind="handoff", constraints=("region=EU", "budget<=500", "x")),
    ]
    assert only(spans, "handoff_constraint_dropped") == []


def test_handoff_whose_parent_has_no_constraints_is_fine() -> None:
    spans = [root(), span(2, "handoff", 10, 20, kind="handoff")]
    assert only(spans, "handoff_constraint_dropped") == []


def test_non_handoff_child_may_drop_constraints() -> None:
    spans = [root(constraints=("budget<=500",)), span(2, "plan", 10, 20, kind="llm")]
    assert only(spans, "handoff_constraint_dropped") == []


def test_handoff_whose_parent_has_not_arrived_is_not_judged_for_constraints() -> None:
    spans = [
        root(constraints=("budget<=500",)),
        span(2, "handoff", 10, 20, parent=9, kind="handoff"),
    ]
    assert only(spans, "handoff_constraint_dropped") == []


def test_invoke_agent_of_another_agent_is_a_handoff() -> None:
    child = span(2, "invoke billing", 10, 20, kind="agent", agent="billing", invoke_agent=True)
    spans = [root(constraints=("budget<=500",)), child]
    [v] = judge(spans)
    assert [(f.span_id, f.type) for f in v.findings] == [(sid(2), "handoff_constraint_dropped")]
    assert next(s for s in v.spans if s.span_id == sid(2)).kind == "handoff"
    assert child.kind == "agent"  # the caller's span is not mutated


def test_invoke_agent_of_the_same_agent_stays_an_agent_span() -> None:
    spans = [
        root(constraints=("budget<=500",)),
        span(2, "invoke self", 10, 20, kind="agent", invoke_agent=True),
    ]
    [v] = judge(spans)
    assert v.findings == []
    assert next(s for s in v.spans if s.span_id == sid(2)).kind == "agent"


# --------------------------------------------------------------------------- context_missing


def test_step_lacking_required_context_is_reported() -> None:
    spans = [
        root(),
        span(
            2,
            "plan",
            10,
            20,
            context_required=("customer_id", "locale"),
            context_present=("locale",),
        ),
    ]
    [f] = only(spans, "context_missing")
    assert f.message == "`plan` lacks required context: customer_id"


def test_step_with_all_required_context_present_is_fine() -> None:
    spans = [
        root(),
        span(
            2,
            "plan",
            10,
            20,
            context_required=("customer_id",),
            context_present=("customer_id", "x"),
        ),
    ]
    assert only(spans, "context_missing") == []


def test_errored_step_with_missing_context_is_not_reported_as_context_missing() -> None:
    spans = [root(status="error"), span(2, "plan", 10, 20, status="error", context_required=("a",))]
    assert only(spans, "context_missing") == []


def test_context_missing_is_reported_in_failed_traces_too() -> None:
    spans = [root(status="error"), span(2, "plan", 10, 20, context_required=("a",))]
    assert found(spans) == {("plan", "context_missing")}


# --------------------------------------------------------------------------- stale_state


def write(n: int, start: int, end: int, version: int, **kw) -> Span:
    kw.setdefault("name", "update balance")
    name = kw.pop("name")
    return span(
        n,
        name,
        start,
        end,
        state_op="write",
        state_key=kw.pop("key", "account:42"),
        state_version=version,
        **kw,
    )


def read(n: int, start: int, end: int, version: int, **kw) -> Span:
    return span(
        n,
        "read balance",
        start,
        end,
        state_op="read",
        state_key=kw.pop("key", "account:42"),
        state_version=version,
        **kw,
    )


def test_read_of_an_older_version_than_a_session_write_is_stale() -> None:
    spans = [
        root(trace=OTHER_TRACE, session="s1", n=1),
        write(2, 0, 50, 5, trace=OTHER_TRACE),
        root(session="s1", start=100, end=500),
        read(3, 200, 210, 3),
    ]
    [f] = detect(spans)
    assert (f.trace_id, f.span_id, f.type) == (TRACE, sid(3), "stale_state")
    assert f.message == (
        "`read balance` read account:42 at version 3 after version 5 was written by `update balance`"
    )


def test_write_ending_exactly_when_the_read_starts_makes_it_stale() -> None:
    spans = [root(session="s1"), write(2, 0, 200, 5), read(3, 200, 210, 3)]
    assert found(spans) == {("read balance", "stale_state")}


def test_write_ending_after_the_read_starts_does_not_make_it_stale() -> None:
    spans = [root(session="s1"), write(2, 0, 201, 5), read(3, 200, 210, 3)]
    assert found(spans) == set()


def test_write_at_an_equal_or_lower_version_does_not_make_a_read_stale() -> None:
    spans = [root(session="s1"), write(2, 0, 50, 3), write(4, 0, 50, 2), read(3, 200, 210, 3)]
    assert found(spans) == set()


def test_write_of_another_key_does_not_make_a_read_stale() -> None:
    spans = [root(session="s1"), write(2, 0, 50, 5, key="account:43"), read(3, 200, 210, 3)]
    assert found(spans) == set()


def test_write_of_another_session_does_not_make_a_read_stale() -> None:
    spans = [
        root(trace=OTHER_TRACE, session="s2"),
        write(2, 0, 50, 5, trace=OTHER_TRACE),
        root(session="s1"),
        read(3, 200, 210, 3),
    ]
    assert found(spans) == set()


def test_write_with_its_own_session_id_counts_for_that_session() -> None:
    spans = [
        root(trace=OTHER_TRACE, session="s2"),
        write(2, 0, 50, 5, trace=OTHER_TRACE, session="s1"),
        root(session="s1"),
        read(3, 200, 210, 3),
    ]
    assert found(spans) == {("read balance", "stale_state")}


def test_read_without_session_falls_back_to_writes_of_its_trace() -> None:
    spans = [root(), write(2, 0, 50, 5), read(3, 200, 210, 3)]
    assert found(spans) == {("read balance", "stale_state")}


def test_read_without_session_ignores_writes_of_other_sessionless_traces() -> None:
    spans = [
        root(trace=OTHER_TRACE),
        write(2, 0, 50, 5, trace=OTHER_TRACE),
        root(),
        read(3, 200, 210, 3),
    ]
    assert found(spans) == set()


def test_read_inherits_its_traces_session_and_sees_writes_of_sibling_traces() -> None:
    # Neither span carries a session_id: both take their root's.
    spans = [
        root(trace=OTHER_TRACE, session="s1"),
        write(2, 0, 50, 5, trace=OTHER_TRACE),
        root(session="s1"),
        read(3, 200, 210, 3),
    ]
    [v_read, v_other] = judge(spans)
    assert v_read.session_id == "s1"
    assert [f.type for f in v_read.findings] == ["stale_state"]
    assert v_other.findings == []


def test_write_of_a_trace_whose_root_has_not_arrived_counts_by_its_own_session() -> None:
    spans = [
        write(2, 0, 50, 5, trace=OTHER_TRACE, session="s1", parent=7),
        root(session="s1"),
        read(3, 200, 210, 3),
    ]
    assert found(spans) == {("read balance", "stale_state")}


def test_stale_read_message_names_the_newest_earlier_write() -> None:
    spans = [
        root(session="s1"),
        write(2, 0, 50, 5, name="first"),
        write(4, 60, 70, 9, name="second"),
        write(5, 60, 300, 12, name="too late"),
        read(3, 200, 210, 3),
    ]
    [f] = detect(spans)
    assert "after version 9 was written by `second`" in f.message


def test_read_without_a_version_is_not_judged_for_staleness() -> None:
    spans = [root(session="s1"), write(2, 0, 50, 5), read(3, 200, 210, 3)]
    spans[-1] = dataclasses.replace(spans[-1], state_version=None)
    assert found(spans) == set()


def test_only_traces_still_sees_writes_of_unjudged_traces_of_the_session() -> None:
    spans = [
        root(trace=OTHER_TRACE, session="s1"),
        write(2, 0, 50, 5, trace=OTHER_TRACE),
        root(session="s1"),
        read(3, 200, 210, 3),
    ]
    [v] = judge(spans, only_traces={TRACE})
    assert v.trace_id == TRACE
    assert [f.type for f in v.findings] == ["stale_state"]
    assert v.outcome == "defective"


# --------------------------------------------------------------------------- tool_loop


def tool(n: int, start: int, input: str, name: str = "search", **kw) -> Span:
    return span(n, name, start, start + 5, kind="tool", input=input, **kw)


def test_third_identical_tool_call_is_a_loop() -> None:
    spans = [root(), *(tool(n, n * 10, '{"q":"refund policy"}') for n in range(2, 6))]
    loops = only(spans, "tool_loop")
    assert [f.span_id for f in loops] == [sid(4), sid(5)]
    assert loops[0].message == "`search` called 3 times with the same input"
    assert loops[1].message == "`search` called 4 times with the same input"


def test_two_identical_tool_calls_are_not_a_loop() -> None:
    spans = [root(), tool(2, 10, '{"q":1}'), tool(3, 20, '{"q":1}')]
    assert only(spans, "tool_loop") == []


def test_tool_calls_with_different_inputs_are_not_a_loop() -> None:
    spans = [root(), tool(2, 10, '{"q":1}'), tool(3, 20, '{"q":2}'), tool(4, 30, '{"q":1}')]
    assert only(spans, "tool_loop") == []


def test_tool_inputs_differing_only_in_key_order_and_spacing_are_equal() -> None:
    spans = [
        root(),
        tool(2, 10, '{"q": "x", "page": 1}'),
        tool(3, 20, '{"page":1.0,"q":"x"}'),
        tool(4, 30, '{ "page" : 1 , "q" : "x" }'),
    ]
    assert [f.span_id for f in only(spans, "tool_loop")] == [sid(4)]


def test_true_and_1_are_not_json_equal_tool_inputs() -> None:
    spans = [root(), tool(2, 10, '{"a":true}'), tool(3, 20, '{"a":1}'), tool(4, 30, '{"a":1}')]
    assert only(spans, "tool_loop") == []


def test_tool_calls_without_input_are_never_a_loop() -> None:
    spans = [root(), tool(2, 10, ""), tool(3, 20, ""), tool(4, 30, "")]
    assert only(spans, "tool_loop") == []


def test_identical_calls_of_another_kind_are_not_a_tool_loop() -> None:
    spans = [
        root(),
        *(span(n, "search", n * 10, n * 10 + 5, kind="llm", input="{}") for n in (2, 3, 4)),
    ]
    assert only(spans, "tool_loop") == []


def test_tool_calls_with_other_names_do_not_count_towards_a_loop() -> None:
    spans = [root(), tool(2, 10, "{}"), tool(3, 20, "{}", name="fetch"), tool(4, 30, "{}")]
    assert only(spans, "tool_loop") == []


def test_tool_loop_orders_calls_by_start_then_span_id() -> None:
    # Three calls start together: the one with the largest span id is "the third".
    spans = [root(), tool(4, 10, "{}"), tool(2, 10, "{}"), tool(3, 10, "{}")]
    assert [f.span_id for f in only(spans, "tool_loop")] == [sid(4)]


def test_tool_calls_counted_across_the_whole_trace_not_only_siblings() -> None:
    spans = [
        root(),
        span(2, "sub", 0, 100),
        tool(3, 10, "{}"),
        tool(4, 20, "{}", parent=2),
        tool(5, 30, "{}"),
    ]
    assert [f.span_id for f in only(spans, "tool_loop")] == [sid(5)]


def test_non_json_tool_input_compares_as_the_raw_string() -> None:
    spans = [root(), tool(2, 10, "find x"), tool(3, 20, "find x"), tool(4, 30, "find  x")]
    assert only(spans, "tool_loop") == []
    spans.append(tool(5, 40, "find x"))
    assert [f.span_id for f in only(spans, "tool_loop")] == [sid(5)]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('{"b": 1, "a": [1, 2]}', '{"a":[1,2],"b":1}'),
        ("1", "1.0"),
        ("1", "1e0"),
        ("100", "1E2"),
        ("0.5", "5e-1"),
        ("-0", "0"),
        ('"\\u00e9"', '"é"'),
        ('{"a": 1, "a": 2}', '{"a": 2}'),
    ],
)
def test_canonical_json_makes_equal_values_equal(a: str, b: str) -> None:
    assert canonical_json(a) == canonical_json(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("true", "1"),
        ("false", "0"),
        ("null", "0"),
        ("[1, 2]", "[2, 1]"),
        ('"1"', "1"),
        ("0.1", "0.1000000000000000055511151231257827"),
        ("12345678901234567890123456789012", "12345678901234567890123456789013"),
        ("not json", '"not json"'),
        ("NaN", "null"),
    ],
)
def test_canonical_json_keeps_distinct_values_distinct(a: str, b: str) -> None:
    assert canonical_json(a) != canonical_json(b)


def test_canonical_json_is_compact_with_sorted_keys() -> None:
    assert canonical_json('{ "b" : [1.50, true, null], "a" : {"y": "z"} }') == (
        '{"a":{"y":"z"},"b":[1.5,true,null]}'
    )
    assert canonical_json("not json") == "not json"
    assert [canonical_json(n) for n in ("1.0", "1E2", "-2.50", "1e-30", "1e30")] == [
        "1",
        "100",
        "-2.5",
        "1e-30",
        "1e30",
    ]


# --------------------------------------------------------------------------- contracts

CONTRACTS = {"support": Contract(required_steps=("verify", "reply"), latency_slo_ms=5000)}


def test_root_that_skipped_required_steps_gets_one_finding_listing_them_all() -> None:
    spans = [root(end=10 * MS), span(2, "plan", 0, 5)]
    [f] = only(spans, "required_step_skipped", CONTRACTS)
    assert f.span_id == sid(1)
    assert f.message == "`support` skipped required step(s): verify, reply"


def test_required_steps_found_anywhere_in_the_trace_are_not_skipped() -> None:
    spans = [
        root(end=10 * MS),
        span(2, "plan", 0, 5),
        span(3, "verify", 6, 7, parent=2),
        span(4, "reply", 8, 9, agent="mailer"),
    ]
    assert only(spans, "required_step_skipped", CONTRACTS) == []


def test_required_step_present_only_as_an_errored_span_still_counts_as_present() -> None:
    spans = [
        root(end=10 * MS),
        span(2, "verify", 0, 5, status="error"),
        span(3, "verify", 6, 7),
        span(4, "reply", 8, 9),
    ]
    assert only(spans, "required_step_skipped", CONTRACTS) == []


def test_required_steps_are_not_judged_in_failed_traces() -> None:
    spans = [root(status="error", end=10 * MS)]
    assert only(spans, "required_step_skipped", CONTRACTS) == []


def test_without_a_contract_for_the_roots_agent_no_step_is_required() -> None:
    spans = [root(agent="sales", end=10 * MS)]
    assert detect(spans, CONTRACTS) == []
    assert detect([root(end=10 * MS)]) == []
    assert detect([root(end=10 * MS)], {}) == []


def test_contract_of_a_child_spans_agent_does_not_apply_to_the_trace() -> None:
    spans = [root(agent="router", end=10 * MS), span(2, "plan", 0, 5, agent="support")]
    assert detect(spans, CONTRACTS) == []


def test_contract_without_required_steps_never_reports_skipped_steps() -> None:
    spans = [root(end=10 * MS)]
    assert detect(spans, {"support": Contract(latency_slo_ms=5000)}) == []


def test_root_slower_than_its_agents_slo_breaches_it() -> None:
    spans = [root(end=5400 * MS), span(2, "verify", 0, 5), span(3, "reply", 6, 7)]
    [f] = detect(spans, CONTRACTS)
    assert (f.span_id, f.type) == (sid(1), "latency_slo_breach")
    assert f.message == "`support` took 5400 ms, over its 5000 ms SLO"


def test_sub_millisecond_overrun_breaches_the_slo_and_says_so() -> None:
    [f] = detect([root(end=5000 * MS + 500_000)], {"support": Contract(latency_slo_ms=5000)})
    assert f.message == "`support` took 5000.5 ms, over its 5000 ms SLO"


def test_duration_equal_to_the_slo_does_not_breach_it() -> None:
    assert detect([root(end=5000 * MS)], {"support": Contract(latency_slo_ms=5000)}) == []


def test_slo_breach_is_reported_for_failed_traces_too() -> None:
    spans = [root(status="error", end=6000 * MS)]
    [v] = judge(spans, CONTRACTS)
    assert [f.type for f in v.findings] == ["latency_slo_breach"]
    assert v.outcome == "failed"


def test_contract_without_slo_never_reports_a_breach() -> None:
    spans = [root(end=10**15)]
    assert detect(spans, {"support": Contract(required_steps=("support",))}) == []


def test_parse_contracts_reads_the_contracts_file_shape() -> None:
    parsed = parse_contracts(
        {
            "support": {"required_steps": ["verify", "reply"], "latency_slo_ms": 5000},
            "billing": {"latency_slo_ms": 100},
            "router": {"required_steps": ["route"]},
            "idle": {},
        }
    )
    assert parsed == {
        "support": Contract(("verify", "reply"), 5000),
        "billing": Contract((), 100),
        "router": Contract(("route",), None),
        "idle": Contract(),
    }


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ({"support": {"required_steps": "verify"}}, ["support", "required_steps"]),
        ({"support": {"required_steps": ["verify", 3]}}, ["support", "required_steps"]),
        ({"support": {"required_steps": [""]}}, ["support", "required_steps"]),
        ({"support": {"latency_slo_ms": "5000"}}, ["support", "latency_slo_ms"]),
        ({"support": {"latency_slo_ms": 1.5}}, ["support", "latency_slo_ms"]),
        ({"support": {"latency_slo_ms": True}}, ["support", "latency_slo_ms"]),
        ({"support": {"latency_slo_ms": -1}}, ["support", "latency_slo_ms"]),
        ({"support": {"latency_slo": 5000}}, ["support", "latency_slo"]),
        ({"support": ["verify"]}, ["support"]),
        ({"": {}}, ["agent"]),
        (["support"], ["contracts"]),
    ],
)
def test_parse_contracts_rejects_bad_shapes_naming_agent_and_field(obj, words: list[str]) -> None:
    with pytest.raises(ValueError) as exc:
        parse_contracts(obj)
    for word in words:
        assert word in str(exc.value)


# --------------------------------------------------------------------------- verdicts


def test_outcome_is_failed_defective_or_clean() -> None:
    failed = [root(trace="1" * 32, status="error")]
    defective = [root(trace="2" * 32), span(2, "x", 1, 2, trace="2" * 32, status="error")]
    clean = [root(trace="3" * 32), span(2, "x", 1, 2, trace="3" * 32)]
    verdicts = judge(failed + defective + clean)
    assert [(v.trace_id[0], v.outcome) for v in verdicts] == [
        ("1", "failed"),
        ("2", "defective"),
        ("3", "clean"),
    ]


def test_failed_outcome_wins_over_findings() -> None:
    spans = [root(status="error"), span(2, "plan", 1, 2, context_required=("a",))]
    [v] = judge(spans)
    assert v.findings and v.outcome == "failed"


def test_trace_whose_root_has_not_arrived_is_not_judged() -> None:
    spans = [span(2, "crm.lookup", 10, 20, status="error"), span(3, "x", 30, 40, parent=2)]
    assert judge(spans) == []
    assert detect(spans) == []


def test_span_whose_parent_is_missing_is_not_a_root() -> None:
    spans = [span(2, "a", 0, 10, parent=9)]
    assert judge(spans) == []


def test_earliest_parentless_span_is_the_root_ties_broken_by_span_id() -> None:
    spans = [
        root(n=5, start=0, session="late"),
        root(n=3, start=0, session="s1"),
        root(n=4, start=-1, session="s0"),
    ]
    [v] = judge(spans)
    assert v.root.span_id == sid(4)
    assert v.session_id == "s0"
    [v] = judge(spans[:2])
    assert v.root.span_id == sid(3)


def test_verdict_session_is_the_roots_session() -> None:
    spans = [root(session="s1"), span(2, "x", 1, 2, session="other")]
    [v] = judge(spans)
    assert v.session_id == "s1"
    [v] = judge([root(), span(2, "x", 1, 2, session="other")])
    assert v.session_id == ""


def test_resent_span_replaces_the_earlier_one() -> None:
    first = span(2, "crm.lookup", 10, 20, status="error")
    resent = dataclasses.replace(first, status="ok")
    assert detect([root(), first, resent]) == []
    [f] = detect([root(), resent, first])
    assert f.type == "swallowed_error"


def test_verdicts_sorted_by_trace_and_findings_by_span_then_type() -> None:
    t1, t2 = "1" * 32, "2" * 32
    spans = [
        root(trace=t2),
        span(3, "x", 1, 2, trace=t2, status="error", context_required=("a",), result_partial=True),
        span(2, "y", 1, 2, trace=t2, context_required=("a",)),
        root(trace=t1, end=6000 * MS),
    ]
    verdicts = judge(spans, {"support": Contract(required_steps=("z",), latency_slo_ms=1)})
    assert [v.trace_id for v in verdicts] == [t1, t2]
    assert [(f.span_id, f.type) for f in verdicts[1].findings] == [
        (sid(1), "required_step_skipped"),
        (sid(2), "context_missing"),
        (sid(3), "swallowed_error"),
    ]
    assert [(f.span_id, f.type) for f in verdicts[0].findings] == [
        (sid(1), "latency_slo_breach"),
        (sid(1), "required_step_skipped"),
    ]
    flat = detect(spans, {"support": Contract(required_steps=("z",), latency_slo_ms=1)})
    assert flat == sorted(flat, key=lambda f: (f.trace_id, f.span_id, f.type))
    assert len(flat) == 5


def test_only_traces_judges_just_those_traces() -> None:
    spans = [root(trace="1" * 32), root(trace="2" * 32), root(trace="3" * 32)]
    assert [v.trace_id for v in judge(spans, only_traces=["3" * 32, "1" * 32, "9" * 32])] == [
        "1" * 32,
        "3" * 32,
    ]
    assert judge(spans, only_traces=[]) == []


def test_verdict_lists_every_span_of_its_trace_in_start_order() -> None:
    spans = [
        span(3, "b", 5, 6),
        root(),
        span(2, "a", 5, 6),
        span(4, "other", 0, 1, trace=OTHER_TRACE),
    ]
    [v] = judge(spans)
    assert [s.span_id for s in v.spans] == [sid(1), sid(2), sid(3)]


def test_finding_types_are_the_nine_of_the_spec_in_order() -> None:
    assert FINDING_TYPES == (
        "swallowed_error",
        "partial_result_used",
        "retry_reason_lost",
        "handoff_constraint_dropped",
        "context_missing",
        "stale_state",
        "tool_loop",
        "required_step_skipped",
        "latency_slo_breach",
    )


def test_judge_accepts_a_one_shot_iterator() -> None:
    spans = [root(), span(2, "x", 1, 2, status="error")]
    assert [f.type for f in detect(iter(spans))] == ["swallowed_error"]


def test_large_trace_is_judged_without_quadratic_blowup() -> None:
    spans = [root(end=10**12)]
    for n in range(2, 5002):
        spans.append(
            span(
                n,
                "search",
                n * 1000,
                n * 1000 + 500,
                kind="tool",
                input='{"q": 1}',
                status="error" if n % 2 else "ok",
                result_partial=n % 3 == 0,
                retry_attempt=n % 2,
                state_op="read" if n % 5 == 0 else "write" if n % 7 == 0 else "",
                state_key="k",
                state_version=n % 11,
            )
        )
    t0 = time.perf_counter()
    [v] = judge(spans)
    assert time.perf_counter() - t0 < 2.0
    assert {f.type for f in v.findings} >= {"tool_loop", "retry_reason_lost", "stale_state"}


def test_judge_restores_the_garbage_collectors_state() -> None:
    # judge pauses the cyclic collector while it runs; it must leave it as it found it.
    assert gc.isenabled()
    judge([root()])
    assert gc.isenabled()
    gc.disable()
    try:
        judge([root()])
        assert not gc.isenabled()
    finally:
        gc.enable()
