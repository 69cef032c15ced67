"""manage.py detect: offline judging, and agreement with ingest + judge on the same corpus."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from google.protobuf import json_format

from apps.demo.traffic import CONTRACTS, TrafficGenerator, to_otlp
from apps.detection.services import judge_pending
from tests.factories import BASE_NS, post_spans

ROOT = Path(__file__).resolve().parents[2]


def corpus(n_traces: int = 120, seed: int = 3) -> list[dict]:
    gen = TrafficGenerator(seed=seed, payload_bytes=40)
    gen.rates = gen.rates.scaled(2.5)  # plenty of every defect
    return [s for tr in gen.sessions(BASE_NS, BASE_NS + 3 * 86_400 * 10**9, n_traces) for s in tr]


def run_detect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "detect", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_jsonl(path: Path, spans: list[dict]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(s) for s in spans) + b"\n")
    return path


def otlp_json(spans: list[dict]) -> bytes:
    doc = json_format.MessageToDict(to_otlp(spans))
    import base64

    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for sp in ss["spans"]:
                for k in ("traceId", "spanId", "parentSpanId"):
                    if k in sp:
                        sp[k] = base64.b64decode(sp[k]).hex()
    return orjson.dumps(doc)


def test_detect_prints_sorted_findings_with_messages_for_native_lines(tmp_path: Path) -> None:
    spans = corpus()
    contracts = tmp_path / "contracts.json"
    contracts.write_bytes(orjson.dumps(CONTRACTS))
    res = run_detect(
        str(write_jsonl(tmp_path / "spans.jsonl", spans)), "--contracts", str(contracts)
    )
    assert res.returncode == 0, res.stderr
    findings = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert findings == sorted(findings, key=lambda f: (f["trace_id"], f["span_id"], f["type"]))
    assert {f["type"] for f in findings} == {
        "swallowed_error",
        "partial_result_used",
        "retry_reason_lost",
        "handoff_constraint_dropped",
        "context_missing",
        "stale_state",
        "tool_loop",
        "required_step_skipped",
        "latency_slo_breach",
    }
    assert all(
        set(f) == {"trace_id", "span_id", "type", "message"} and f["message"] for f in findings
    )


def test_detect_reads_an_otlp_json_export_the_same_way(tmp_path: Path) -> None:
    spans = corpus(seed=5)
    native = run_detect(str(write_jsonl(tmp_path / "spans.jsonl", spans)))
    path = tmp_path / "export.json"
    path.write_bytes(otlp_json(spans))
    otlp = run_detect(str(path))
    assert otlp.returncode == 0, otlp.stderr
    assert otlp.stdout == native.stdout and native.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"trace_id": "abc"}\n', "line 1: trace_id"),
        (
            b'{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","agent":"a","name":"n","start_time":1,"end_time":2}\n{oops\n',
            "line 2: not valid JSON",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00f067aa0ba902b7"}]}]}]}',
            "OTLP",
        ),
    ],
)
def test_unreadable_input_exits_2_naming_the_line_or_field(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / ("bad.json" if b"resourceSpans" in content else "bad.jsonl")
    path.write_bytes(content)
    res = run_detect(str(path))
    assert res.returncode == 2
    assert message in res.stderr
    assert res.stdout == ""


def test_bad_contracts_file_exits_2(tmp_path: Path) -> None:
    spans = write_jsonl(tmp_path / "s.jsonl", corpus(n_traces=5))
    c = tmp_path / "c.json"
    c.write_text('{"support": {"latency_slo_ms": "fast"}}')
    res = run_detect(str(spans), "--contracts", str(c))
    assert res.returncode == 2 and "latency_slo_ms" in res.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", ["native", "otlp"])
def test_ingest_and_judge_agree_with_offline_detect(tenant_a, tmp_path: Path, fmt: str) -> None:
    spans = corpus(n_traces=150, seed=9)
    contracts = tmp_path / "contracts.json"
    contracts.write_bytes(orjson.dumps(CONTRACTS))
    offline = run_detect(
        str(write_jsonl(tmp_path / "spans.jsonl", spans)), "--contracts", str(contracts)
    )
    expected = sorted(
        (f["trace_id"], f["span_id"], f["type"], f["message"])
        for f in map(orjson.loads, offline.stdout.splitlines())
    )

    api = tenant_a.api()
    assert (
        api.put("/api/v1/contracts", CONTRACTS, content_type="application/json").status_code == 200
    )
    for i in range(0, len(spans), 300):
        chunk = spans[i : i + 300]
        if fmt == "native":
            assert post_spans(api, chunk).status_code == 200
        else:
            resp = api.post(
                "/v1/traces",
                data=to_otlp(chunk).SerializeToString(),
                content_type="application/x-protobuf",
            )
            assert resp.status_code == 200, resp.content
    judge_pending(settle_seconds=0)
    got = []
    cursor = None
    while True:
        page = api.get(
            "/api/v1/traces", {"limit": 500, **({"cursor": cursor} if cursor else {})}
        ).json()
        for t in page["traces"]:
            for f in api.get(f"/api/v1/traces/{t['trace_id']}").json()["findings"]:
                got.append((t["trace_id"], f["span_id"], f["type"], f["message"]))
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(got) == expected
    assert len(expected) > 50


def test_a_span_repeated_in_the_file_is_judged_once_with_its_later_copy(tmp_path: Path) -> None:
    spans = corpus(n_traces=20, seed=8)
    once = run_detect(str(write_jsonl(tmp_path / "once.jsonl", spans)))
    resent = [{**s, "status": "ok"} if i % 3 == 0 else s for i, s in enumerate(spans)]
    twice = run_detect(str(write_jsonl(tmp_path / "twice.jsonl", spans + resent)))
    again = run_detect(str(write_jsonl(tmp_path / "again.jsonl", resent)))
    assert once.returncode == twice.returncode == again.returncode == 0
    assert twice.stdout == again.stdout  # the later copies replaced the earlier ones
