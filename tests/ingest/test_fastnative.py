"""The native fast path (apps.ingest.fastnative) stores exactly what the detailed path stores,
and declines (hands the request to the detailed path) whenever it cannot be sure."""

from __future__ import annotations

import random

import orjson
import pytest

from apps.ingest.fastnative import decode_native
from apps.ingest.native import Limits, validate_spans
from apps.ingest.rows import encode_columns, rows_to_columns
from tests.factories import BASE_NS, span, trace

LIMITS = Limits()
ENC = {"project_id": 7, "retention_days": 30, "version": 123, "now": 1_767_261_600}


def slow_block(body: bytes, limits: Limits = LIMITS) -> bytes:
    rows, rejected = validate_spans(orjson.loads(body)["spans"], limits)
    assert rejected == []
    return encode_columns(rows_to_columns(rows), len(rows), **ENC)


def fast_block(body: bytes, limits: Limits = LIMITS) -> bytes | None:
    got = decode_native(body, limits, 10_000)
    if got is None:
        return None
    cols, n = got
    return encode_columns(cols, n, **ENC)


def body_of(spans: list) -> bytes:
    return orjson.dumps({"spans": spans})


def assert_same(body: bytes, limits: Limits = LIMITS) -> None:
    fast = fast_block(body, limits)
    assert fast is not None, "the fast path declined a valid request"
    assert fast == slow_block(body, limits)


def test_realistic_traffic_is_taken_by_the_fast_path_and_encoded_identically() -> None:
    from apps.demo.traffic import TrafficGenerator

    gen = TrafficGenerator(seed=3, payload_bytes=300)
    spans = [s for tr in gen.sessions(BASE_NS, BASE_NS + 86_400 * 10**9, 40) for s in tr]
    assert len(spans) > 200
    assert_same(body_of(spans))


@pytest.mark.parametrize(
    "value",
    [
        "hello",
        "",
        'quote " backslash \\ slash / tab \t newline \n nul \x00 del \x7f',
        "unicode é ü ß 漢字 emoji 😀 combining é line-sep \u2028 para-sep \u2029",
        0,
        -1,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        1.5,
        -0.0,
        1e300,
        5e-324,
        True,
        False,
        [],
        {},
        [1, "two", 3.0, None, True, {"nested": [[], {}]}],
        {"role": "user", "content": "hi 😀", "deep": {"a": {"b": {"c": [1, 2, {"d": None}]}}}},
    ],
)
def test_every_kind_of_input_and_output_value_is_stored_as_the_same_text(value) -> None:
    assert_same(body_of([span(input=value, output=value)]))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a" : 1 , "b" : [1, 2.50, 1E2, -0, 1e-7, 0.1e1] }',
        b'"\\u00e9\\/\\ud83d\\ude00\\n\\u0000\\u001f"',
        b"  [ ]  ",
        b"12345678901234567890123",
        b"1E15",
        b'{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":[[[[[[[[[[]]]]]]]]]]}}}}}}}}',
        b'{"dup": 1, "dup": 2}',
    ],
)
def test_non_canonical_json_input_is_stored_in_the_canonical_form_of_the_slow_path(raw) -> None:
    s = span()
    body = orjson.dumps({"spans": [s]})
    body = body[:-3] + b',"input":' + raw + b',"output":' + raw + b"}]}"
    assert_same(body)


def test_deep_input_at_the_encoder_limits_is_stored_or_refused_like_the_slow_path() -> None:
    for depth in (200, 253, 254, 255, 256, 300):
        raw = b"[" * depth + b"]" * depth
        s = span()
        body = orjson.dumps({"spans": [s]})[:-3] + b',"input":' + raw + b"}]}"
        fast = fast_block(body)
        rows, rejected = validate_spans(orjson.loads(body)["spans"], LIMITS)
        if fast is not None:
            assert not rejected
            assert fast == encode_columns(rows_to_columns(rows), len(rows), **ENC)


def test_times_ids_sessions_kinds_and_defaults() -> None:
    tid = "ab" * 16
    root = span(trace_id=tid, span_id="1" * 16, session_id="sess-ü", kind="agent")
    spans = [
        root,
        # RFC 3339 in several spellings, an uppercase parent id, defaults for kind/status.
        {
            "trace_id": tid,
            "span_id": "2" * 16,
            "parent_span_id": "1" * 15 + "1",
            "agent": "a",
            "name": "n",
            "start_time": "2026-01-01T10:00:00.123456789Z",
            "end_time": "2026-01-01T11:00:00.5+01:00",
        },
        {
            "trace_id": tid,
            "span_id": "3" * 16,
            "parent_span_id": "ABCDEF0123456789",
            "agent": "a" * 128,
            "name": "n" * 256,
            "kind": None,
            "status": None,
            "status_message": "m" * 4096,
            "session_id": None,
            "start_time": "2026-01-01t10:00:00z",
            "end_time": "2026-01-01 10:00:01.0000000001Z",
            "attributes": None,
            "events": None,
            "input": None,
        },
        # another trace whose root is absent: no session to inherit
        span(parent_span_id="4" * 16, session_id=""),
        span(start_time=0, end_time=0, status="error", status_message="", kind="handoff"),
        span(start_time=BASE_NS, end_time=2**63 - 1),
        span(start_time="1970-01-01T00:00:00Z", end_time="1970-01-01T00:00:00.000000001Z"),
        span(start_time="2016-12-31T23:59:60Z", end_time="2016-12-31T23:59:60.5Z"),
    ]
    assert_same(body_of(spans))


def test_sessions_are_inherited_from_a_root_in_the_same_request() -> None:
    spans = trace(n_children=3, session_id="sess-1") + trace(n_children=2) + trace(session_id="s2")
    spans[2]["session_id"] = "own-session"
    rows, _ = validate_spans(spans, LIMITS)
    assert {r["session_id"] for r in rows} == {"sess-1", "own-session", "", "s2"}
    assert_same(body_of(spans))


def test_invoke_agent_handoff_resolution() -> None:
    tid = "cd" * 16
    spans = [
        span(trace_id=tid, span_id="1" * 16, agent="router", kind="agent"),
        span(
            trace_id=tid,
            span_id="2" * 16,
            parent_span_id="1" * 16,
            agent="billing",
            kind="agent",
            _invoke_agent=True,
        ),
        span(
            trace_id=tid,
            span_id="3" * 16,
            parent_span_id="1" * 16,
            agent="router",
            kind="agent",
            _invoke_agent=True,
        ),
        span(
            trace_id=tid,
            span_id="4" * 16,
            parent_span_id="9" * 16,
            agent="x",
            kind="agent",
            _invoke_agent=True,
        ),
        span(
            trace_id=tid,
            span_id="5" * 16,
            parent_span_id="1" * 16,
            agent="y",
            kind="tool",
            _invoke_agent=True,
        ),
        span(
            trace_id=tid,
            span_id="6" * 16,
            parent_span_id="1" * 16,
            agent="z",
            kind="agent",
            _invoke_agent=1,
        ),
    ]
    rows, _ = validate_spans(spans, LIMITS)
    assert [r["kind"] for r in rows] == ["agent", "handoff", "agent", "agent", "tool", "agent"]
    assert_same(body_of(spans))


def test_kriy_attributes_usage_attributes_and_events() -> None:
    spans = [
        span(
            attributes={
                "kriy.result.partial": True,
                "kriy.retry.attempt": 2,
                "kriy.retry.reason": "timeout ⏱",
                "kriy.constraints": ["budget<=500", "region=EU"],
                "kriy.context.required": ["a", "b"],
                "kriy.context.present": [],
                "kriy.state.key": "account:42",
                "kriy.state.version": -3,
                "kriy.state.op": "write",
                "gen_ai.response.model": "",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.system": "openai",
                "gen_ai.usage.input_tokens": True,
                "gen_ai.usage.prompt_tokens": 12.9,
                "llm.token_count.completion": 7,
                "llm.cost.total": 1,
                "float": 1.25,
                "neg": -(2**63),
                "big": 2**63 - 1,
                "mixed": ["s", 1, 2.5, False],
                "empty": "",
                "é": "ü",
            },
            events=[
                {"name": "exception", "time": BASE_NS, "attributes": {"exception.type": "E"}},
                {"name": "e2", "time": "2026-01-01T10:00:00.5Z"},
                {"name": "e3", "time": 5, "attributes": None},
            ],
        ),
        span(
            attributes={
                "kriy.result.partial": False,
                "kriy.state.op": "read",
                "llm.cost.total": 0.5,
            }
        ),
        span(attributes={"llm.model_name": "m", "llm.provider": "p", "embedding.model_name": "e"}),
        span(attributes={}, events=[]),
    ]
    assert_same(body_of(spans))


def test_limits_at_their_edges_are_accepted_like_the_slow_path() -> None:
    limits = Limits(max_attributes=3, max_attribute_bytes=512, max_io_bytes=2048, max_events=2)
    spans = [
        span(
            attributes={"a": "x" * 512, "b": "é" * 512, "k" * 256: ["y" * 2] * 256},
            input="z" * 2000,
            output=[{"t": "é" * 100}] * 5,
            events=[{"name": "e", "time": 1, "attributes": {"a": 1, "b": 2, "c": 3}}] * 2,
        )
    ]
    assert_same(body_of(spans), limits)


def refused_by_slow_path(body: bytes, limits: Limits = LIMITS) -> bool:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return True
    if type(doc) is not dict or type(doc.get("spans")) is not list:
        return True
    return bool(validate_spans(doc["spans"], limits)[1])


@pytest.mark.parametrize(
    "over",
    [
        {"trace_id": "A" * 32},
        {"trace_id": "0" * 32},
        {"trace_id": "a" * 31},
        {"trace_id": 5},
        {"span_id": "0" * 16},
        {"span_id": "G" * 16},
        {"span_id": "ab" * 8 + "\n"},
        {"parent_span_id": "xyz"},
        {"parent_span_id": "1" * 17},
        {"parent_span_id": 5},
        {"session_id": "s" * 257},
        {"agent": ""},
        {"agent": "a" * 129},
        {"name": "n" * 257},
        {"kind": "robot"},
        {"status": "fine"},
        {"status_message": "m" * 4097},
        {"start_time": "yesterday"},
        {"start_time": -1},
        {"end_time": -5},
        {"start_time": True},
        {"start_time": 1.5},
        {"end_time": 2**63},
        {"start_time": "2026-02-30T00:00:00Z"},
        {"start_time": 5000, "end_time": 100},
        {"attributes": {"nested": {"a": 1}}},
        {"attributes": {"n": None}},
        {"attributes": {"": 1}},
        {"attributes": {"k" * 257: 1}},
        {"attributes": {"l": [[1]]}},
        {"attributes": {"s": "x" * (64 * 1024 + 1)}},
        {"attributes": [1]},
        {"attributes": {"kriy.retry.attempt": "two"}},
        {"attributes": {"kriy.retry.attempt": -1}},
        {"attributes": {"kriy.retry.attempt": True}},
        {"attributes": {"kriy.result.partial": 1}},
        {"attributes": {"kriy.constraints": "a"}},
        {"attributes": {"kriy.constraints": [1]}},
        {"attributes": {"kriy.state.op": "delete"}},
        {"attributes": {"kriy.state.version": 1.0}},
        {"attributes": {"kriy.retry.reason": 5}},
        {"attributes": {"kriy.state.key": []}},
        {"events": {}},
        {"events": [{"name": "", "time": 1}]},
        {"events": [{"name": "e"}]},
        {"events": [{"name": "e", "time": 1, "attributes": {"x": {}}}]},
        {"events": [{"name": "e", "time": 1}] * 129},
        {"events": ["e"]},
        {"input": "x" * (1024 * 1024)},
    ],
)
def test_invalid_spans_are_left_to_the_detailed_path(over) -> None:
    bad = span()
    bad.update(over)
    body = body_of([span(), bad])
    assert refused_by_slow_path(body)
    assert decode_native(body, LIMITS, 10_000) is None


@pytest.mark.parametrize(
    "over",
    [
        {"attributes": {"big": 2**64 - 1}},  # orjson's int, beyond msgspec's int64 bound
        {"attributes": {"long": ["x"] * 300}},  # the size rule of lists is a sum
        {"attributes": {"long": ["x" * 300]}},
        {"extra_field": {"anything": [1]}},
    ],
)
def test_valid_spans_the_fast_path_cannot_vouch_for_go_to_the_detailed_path(over) -> None:
    ok = span()
    ok.update(over)
    body = body_of([span(), ok])
    assert not refused_by_slow_path(body)
    assert decode_native(body, LIMITS, 10_000) is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'{"spans": {}}',
        b'{"spans": [1]}',
        b'{"spans": []}',
        b'{"spans": [], "extra": 1}',
        b'{"items": []}',
        b"\xef\xbb\xbf" + body_of([span()]),
        body_of([span()]) + b"x",
    ],
)
def test_misshapen_bodies_are_left_to_the_detailed_path(body) -> None:
    assert decode_native(body, LIMITS, 10_000) is None


def test_what_the_fast_parser_would_skip_unchecked_is_left_to_the_detailed_path() -> None:
    base = orjson.dumps({"spans": [span()]})
    for field in (b'"trace_id"', b'"agent"', b'"name"', b'"kind"', b'"status"'):
        body = base.replace(field + b':"', field + b':"\xff\xfe', 1)
        assert body != base
        assert decode_native(body, LIMITS, 10_000) is None
    assert decode_native(b'{"spans": [{"trace_id": "\xff\xfe"}]}', LIMITS, 10_000) is None
    for extra in (
        b'"unknown": "\xff"',
        b'"unknown": 1E400',
        b'"unknown": 1',
        b'"input": "\xff"',
        b'"input": 1E400',
        b'"input": "\\ud800"',
    ):
        body = base[:-3] + b"," + extra + b"}]}"
        assert decode_native(body, LIMITS, 10_000) is None


def test_repeated_spans_and_too_many_spans_are_left_to_the_detailed_path() -> None:
    s = span()
    assert decode_native(body_of([s, dict(s)]), LIMITS, 10_000) is None
    spans = trace(n_children=4)
    assert decode_native(body_of(spans), LIMITS, 4) is None
    assert decode_native(body_of(spans), LIMITS, 5) is not None


def _random_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice(["", "x", 'é😀\n"\\', 0, -5, 2**62, 1.5, -0.0, 1e-9, True, False, None])
    if r < 0.65:
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {
        rng.choice(["a", "b", "ü", ""]): _random_value(rng, depth + 1)
        for _ in range(rng.randint(0, 3))
    }


def _random_span(rng: random.Random, tid: str, ids: list[str]) -> dict:
    sid = f"{rng.getrandbits(64) | 1:016x}"
    s = span(trace_id=tid, span_id=sid)
    if ids and rng.random() < 0.8:
        s["parent_span_id"] = rng.choice(ids) if rng.random() < 0.9 else rng.choice(ids).upper()
    ids.append(sid)
    choices = {
        "session_id": lambda: rng.choice([None, "", "s1", "s" * 256, "s" * 257, 5]),
        "kind": lambda: rng.choice([None, "llm", "tool", "agent", "robot"]),
        "status": lambda: rng.choice([None, "ok", "error", "unset", "bad"]),
        "status_message": lambda: rng.choice([None, "", "m", 3]),
        "input": lambda: _random_value(rng),
        "output": lambda: _random_value(rng),
        "start_time": lambda: rng.choice(
            [BASE_NS, "2026-01-01T10:00:00Z", "2026-01-01T09:00:00-01:00", -1]
        ),
        "attributes": lambda: rng.choice(
            [
                None,
                {},
                {
                    "gen_ai.request.model": "m",
                    "gen_ai.usage.input_tokens": rng.choice([1, 2.5, True, "x"]),
                },
                {
                    "kriy.retry.attempt": rng.choice([0, 3, -1, "x"]),
                    "kriy.retry.reason": rng.choice(["r", 1]),
                },
                {"kriy.constraints": rng.choice([["a"], [], [1], "a"]), "l": [1, "a", 2.5, True]},
                {"x": _random_value(rng)},
            ]
        ),
        "events": lambda: rng.choice(
            [None, [], [{"name": "e", "time": 1}], [{"name": "", "time": 1}]]
        ),
        "_invoke_agent": lambda: rng.choice([True, False, 1, None]),
    }
    for key, make in choices.items():
        if rng.random() < 0.3:
            s[key] = make()
    return s


def test_random_requests_agree_with_the_detailed_path() -> None:
    rng = random.Random(20261126)
    accepted = 0
    for _ in range(400):
        spans = []
        for _t in range(rng.randint(1, 3)):
            tid, ids = f"{rng.getrandbits(128) | 1:032x}", []
            spans += [_random_span(rng, tid, ids) for _ in range(rng.randint(1, 4))]
        body = body_of(spans)
        fast = fast_block(body)
        if fast is None:
            continue
        accepted += 1
        assert not refused_by_slow_path(body)
        assert fast == slow_block(body)
    assert accepted > 20
