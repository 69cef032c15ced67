"""Judging throughput: 1,000,000 stored spans (~100,000 traces) judged end to end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python tests/bench/bench_detect.py [--spans 1000000]

Stores realistic multi-agent traffic (every defect type) straight into a fresh chDB span store,
then times one `judge_pending` pass: reading the new traces by ingest version, widening them to
their sessions, loading their spans, running the nine detectors, writing the judgements and
refreshing the issues. Target: ≥ 100,000 spans/s on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kriyplatform.settings")
os.environ.setdefault("KRIY_DATA_DIR", tempfile.mkdtemp(prefix="kriy-bench-detect-"))
os.environ.setdefault("KRIY_DEMO", "0")

import django

django.setup()

from django.db import connection  # noqa: E402

from apps.demo.traffic import CONTRACTS, TrafficGenerator  # noqa: E402
from apps.detection.models import JudgeWatermark  # noqa: E402
from apps.detection.services import contracts_put, judge_pending  # noqa: E402
from apps.ingest.native import Limits, validate_spans  # noqa: E402
from apps.ingest.services import rows_insert  # noqa: E402
from apps.orgs.services import organization_get_or_create, project_get_or_create  # noqa: E402
from kriyplatform.clickhouse.client import ch_select  # noqa: E402
from kriyplatform.clickhouse.migrator import migrate  # noqa: E402
from tests.bench.harness import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "detect.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spans", type=int, default=1_000_000)
    a = p.parse_args()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    migrate()
    org = organization_get_or_create(slug=f"bench-{int(time.time())}")
    project = project_get_or_create(organization=org, slug="detect")
    contracts_put(project=project, document=CONTRACTS)
    JudgeWatermark.objects.update_or_create(key="spans", defaults={"version": time.time_ns()})

    gen = TrafficGenerator(seed=42, payload_bytes=200)
    now = time.time_ns()
    t0 = time.perf_counter()
    batch: list[dict] = []
    stored = 0
    for tr in gen.sessions(now - 14 * 86_400 * 10**9, now - 3_600 * 10**9, a.spans // 8):
        batch.extend(tr)
        if len(batch) >= 20_000 or stored + len(batch) >= a.spans:
            rows, rejected = validate_spans(batch, Limits())
            assert not rejected, rejected[:1]
            rows_insert(rows, project_id=project.pk, retention_days=90)
            stored += len(rows)
            batch = []
            print(f"\rstored {stored:,} spans", end="", flush=True)
            if stored >= a.spans:
                break
    print(f"\nstored {stored:,} spans in {time.perf_counter() - t0:.1f} s; judging…", flush=True)

    time.sleep(0.01)
    t0 = time.perf_counter()
    if os.environ.get("PROFILE"):
        import cProfile
        import pstats

        prof = cProfile.Profile()
        stats = prof.runcall(judge_pending, settle_seconds=0)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    else:
        stats = judge_pending(settle_seconds=0)
    elapsed = time.perf_counter() - t0
    traces = ch_select(
        "SELECT count() AS n, countIf(outcome = 'defective') AS d, countIf(outcome = 'failed') AS f, sum(length(finding_types)) AS findings "
        "FROM {db}.trace_judgements FINAL WHERE project_id = {project_id:UInt64}",
        project_id=project.pk,
    )[0]
    result = {
        "spans": stats.spans,
        "traces_judged": stats.traces,
        "findings": int(traces["findings"]),
        "defective": int(traces["d"]),
        "failed": int(traces["f"]),
        "seconds": round(elapsed, 2),
        "spans_per_sec": round(stats.spans / elapsed),
        "database": connection.vendor,
    }
    out = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "result": result,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
