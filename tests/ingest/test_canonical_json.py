"""JSON text already in canonical form is stored as sent (``_otlpwire.canonical_json``).

An OTLP ``input.value`` / ``output.value`` with a JSON mime type (and a GenAI messages
attribute sent as text), and a native span's ``input``/``output``, are stored as
``orjson.dumps(orjson.loads(text))``. The scanner may hand
back the text itself only when that round trip would give exactly the same bytes; anything else
it declines and the text is parsed as before."""

from __future__ import annotations

import json
import random

import orjson
import pytest
from apps.ingest._otlpwire import canonical_json

from apps.ingest import fastnative, fastotlp
from tests.ingest import test_fastnative as native
from tests.ingest.test_fastotlp import assert_same, request, sp

ALPHABET = [
    "a",
    "Z",
    " ",
    '"',
    "\\",
    "/",
    "\n",
    "\t",
    "\x01",
    "\x7f",
    "é",
    "\u2028",
    "😀",
    "{",
    ":",
]


def random_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth < 4 and r < 0.25:
        return {random_string(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 4 and r < 0.45:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if r < 0.6:
        return rng.choice([0, -1, 7, 10**17, -(10**17), 10**18, 2**63 - 1, 2**64 - 1])
    if r < 0.7:
        return rng.choice([0.5, -0.0, 1e21, 1e-7, 3.0])
    if r < 0.8:
        return rng.choice([True, False, None])
    return random_string(rng)


def random_string(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 6)))


def spellings(value) -> list[str]:
    """The same JSON written the ways agents write it."""
    return [
        orjson.dumps(value).decode(),
        json.dumps(value),  # spaces after separators, \\uXXXX escapes
        json.dumps(value, ensure_ascii=False, separators=(",", ":")),
        json.dumps(value, indent=1),
    ]


def roundtrip(text: str) -> bytes | None:
    try:
        return orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError:
        return None


def test_taken_only_when_the_round_trip_gives_the_same_bytes() -> None:
    rng = random.Random(11)
    taken = 0
    for _ in range(3000):
        for text in spellings(random_value(rng)):
            got = canonical_json(text)
            if got is not None:
                taken += 1
                assert got == roundtrip(text) == text.encode(), text
    assert taken > 1000  # and it does take ordinary compact JSON


def test_orjson_output_of_message_lists_is_taken() -> None:
    messages = [
        {"role": "user", "content": 'ship it — "today"\n\\ok', "n": 3, "ok": True, "x": None},
        {"role": "assistant", "tool_calls": [{"id": "c1", "args": {"q": [1, -2, 0]}}]},
    ]
    text = orjson.dumps(messages).decode()
    assert canonical_json(text) == text.encode()
    assert canonical_json("{}") == b"{}" and canonical_json("[]") == b"[]"


@pytest.mark.parametrize(
    "text",
    [
        '{"a":1,"a":2}',  # orjson keeps one of the two
        '{"a":{"b":1,"b":1}}',
        "[1.5]",  # fractions and exponents: orjson may write them differently
        "[1e3]",
        "[-0]",  # read as 0
        "[1234567890123456789]",  # 19 digits
        "[123456789012345678901234567890]",  # read as a float
        "[01]",  # not JSON
        "[ 1]",
        '{"a": 1}',
        '["\\u00e9"]',  # orjson writes é itself
        '["\\/"]',
        '["a\tb"]',  # a raw control character: not JSON
        "[tru]",
        "[1,]",
        '{"a":1',
        '"text"',  # a top-level scalar goes the usual way
        "7",
        "[" * 65 + "]" * 65,  # deeper than the scanner follows
        "[NaN]",
        "\ufeff[]",
        '["\ud800"]',  # a lone surrogate
    ],
)
def test_declined(text: str) -> None:
    assert canonical_json(text) is None


def test_bytes_are_scanned_as_utf8_like_orjson_reads_them() -> None:
    rng = random.Random(12)
    broken = [b"\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"\xc3", b"\xe2\x82", b"\x80", b"\xf5\x80\x80\x80"]  # fmt: skip
    taken = 0
    for _ in range(3000):
        data = orjson.dumps(random_value(rng))
        if rng.random() < 0.5 and len(data) > 2:  # a broken or truncated sequence somewhere
            at = rng.randrange(1, len(data) - 1)
            data = data[:at] + rng.choice(broken) + data[at:]
        got = canonical_json(data)
        if got is not None:
            taken += 1
            assert got == roundtrip(data) == data, data
        assert canonical_json(memoryview(data)) == got
    assert taken > 200  # and it does take valid compact JSON


def test_only_text_and_buffers_are_scanned() -> None:
    assert canonical_json(None) is None
    assert canonical_json(7) is None
    assert canonical_json(b"[]") == b"[]"


@pytest.mark.parametrize(
    "text",
    [
        '[{"role":"user","content":"hi"}]',  # taken as is
        '[{"role": "user", "content": "hi"}]',  # parsed and written compact
        '{"a":1,"a":2}',  # parsed: the last one wins
        '{"q":"caf\\u00e9","n":1.50}',
        '{"broken":',  # not JSON: stored as the text
    ],
)
def test_stored_like_the_detailed_path(text: str) -> None:
    assert_same(
        request(
            sp(1, attributes={"input.value": text, "input.mime_type": "application/json"}),
            sp(
                2,
                1,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.input.messages": text,
                    "output.value": text,
                    "output.mime_type": "application/json",
                },
            ),
        )
    )


@pytest.mark.parametrize(
    "value",
    [
        '[{"role":"user","content":"caf\u00e9 \\"ok\\""}]',  # a JSON string, and compact JSON inside
        [{"role": "user", "content": 'café "ok"\n'}],
        {"a": 1, "b": [True, None, -3], "c": {}},
        {"n": 1.5, "big": 10**18},  # left to orjson
    ],
)
def test_native_input_and_output_are_stored_like_the_detailed_path(value) -> None:
    from tests.factories import span

    for text in (orjson.dumps(value), json.dumps(value).encode()):
        body = b'{"spans":[' + orjson.dumps(span())[:-1] + b',"input":' + text + b',"output":'
        body += text + b"}]}"
        native.assert_same(body)


def test_native_values_over_the_size_limit_are_left_to_the_detailed_path() -> None:
    from apps.ingest.native import Limits
    from tests.factories import span

    text = orjson.dumps([{"content": "x" * 100}])
    body = orjson.dumps({"spans": [span(input=orjson.loads(text))]})
    assert native.fast_block(body, Limits(max_io_bytes=len(text))) is not None
    assert native.fast_block(body, Limits(max_io_bytes=len(text) - 1)) is None


def test_the_scanner_is_used() -> None:
    assert fastotlp._canonical_json is canonical_json
    assert fastnative._canonical_json is canonical_json
