"""The example agents, run as their own processes against a real platform server, produce the
traces and the execution defects their docstrings promise."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.bench.harness import PY, ROOT
from tests.examples.conftest import Platform

TRACE_LINE = re.compile(
    r"^(?P<agent>[\w.-]+): trace (?P<trace>[0-9a-f]{32}) session (?P<session>\S+)"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any OTLP exporter or kriy client settings, plus
    ``extra``; ``kriy_client`` importable from the checkout."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "KRIY_ENDPOINT", "KRIY_API_KEY"))
    }
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run_example(script: str, env: dict[str, str]) -> re.Match[str]:
    proc = subprocess.run(
        [PY, str(ROOT / "examples" / script)],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    match = TRACE_LINE.search(proc.stdout.strip().splitlines()[-1])
    assert match, proc.stdout
    return match


def otel_env(platform: Platform) -> dict[str, str]:
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": platform.url,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {platform.key}",
    }


def finding_types(trace: dict) -> dict[str, str]:
    names = {s["span_id"]: s["name"] for s in trace["spans"]}
    return {f["type"]: names[f["span_id"]] for f in trace["findings"]}


def test_otel_genai_agent_partial_crm_record_is_reported_as_partial_result_used(
    platform: Platform,
) -> None:
    run = run_example("otel_agent.py", otel_env(platform))
    trace = platform.judged_trace(run["agent"], run["trace"])

    assert trace["outcome"] == "defective"
    assert finding_types(trace) == {"partial_result_used": "execute_tool crm.lookup"}
    by_name = {s["name"]: s for s in trace["spans"]}
    root = by_name["invoke_agent support-agent"]
    assert root["kind"] == "agent" and root["session_id"] == run["session"]
    assert by_name["execute_tool crm.lookup"]["kind"] == "tool"
    assert by_name["chat gpt-4o-mini"]["kind"] == "llm"
    assert {s["agent"] for s in trace["spans"]} == {"support-agent"}


def test_openinference_agent_tool_loop_and_dropped_handoff_constraint_are_reported(
    platform: Platform,
) -> None:
    run = run_example("openinference_agent.py", otel_env(platform))
    trace = platform.judged_trace(run["agent"], run["trace"])

    assert trace["outcome"] == "defective"
    assert finding_types(trace) == {
        "tool_loop": "search_orders",
        "handoff_constraint_dropped": "handoff to billing",
    }
    kinds = {s["name"]: s["kind"] for s in trace["spans"]}
    assert kinds["handoff to billing"] == "handoff"
    assert kinds["search_orders"] == "tool"
    assert kinds["ChatCompletion"] == "llm"
    assert kinds["refund_policy"] == "step"
    assert {s["session_id"] for s in trace["spans"]} == {run["session"]}


def test_native_agent_retry_without_reason_is_reported_as_retry_reason_lost(
    platform: Platform,
) -> None:
    run = run_example(
        "native_agent.py", {"KRIY_ENDPOINT": platform.url, "KRIY_API_KEY": platform.key}
    )
    trace = platform.judged_trace(run["agent"], run["trace"])

    assert trace["outcome"] == "defective"
    assert finding_types(trace) == {"retry_reason_lost": "payment.capture"}
    captures = sorted(
        (s for s in trace["spans"] if s["name"] == "payment.capture"), key=lambda s: s["start_time"]
    )
    assert [c["status"] for c in captures] == ["error", "ok"]
    assert captures[0]["status_message"].startswith("GatewayTimeout: ")


@pytest.mark.parametrize("script", ["otel_agent.py", "openinference_agent.py", "native_agent.py"])
def test_examples_without_configuration_explain_what_to_set(script: str) -> None:
    proc = subprocess.run(
        [PY, str(ROOT / "examples" / script)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Set " in proc.stderr
