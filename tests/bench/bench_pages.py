"""Page speed with 1,000,000 spans stored: the project overview and the trace list.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python tests/bench/bench_pages.py [--spans 1000000]

Stores realistic traffic (~125k traces over 8 weeks), judges it and computes the rollups, then
renders each page N times through Django's full request stack (middleware, tenancy, span-store
queries, templates) and reports p50/p95. Target: p95 < 300 ms for both pages.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kriyplatform.settings")
os.environ.setdefault("KRIY_DATA_DIR", tempfile.mkdtemp(prefix="kriy-bench-pages-"))
os.environ.setdefault("KRIY_DEMO", "0")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from apps.accounts.models import User  # noqa: E402
from apps.demo.traffic import CONTRACTS, TrafficGenerator  # noqa: E402
from apps.detection.models import JudgeWatermark  # noqa: E402
from apps.detection.services import contracts_put, judge_pending  # noqa: E402
from apps.ingest.native import Limits, validate_spans  # noqa: E402
from apps.ingest.services import rows_insert  # noqa: E402
from apps.metrics.services import rollup_pending  # noqa: E402
from apps.orgs.models import Membership, Role  # noqa: E402
from apps.orgs.services import organization_get_or_create, project_get_or_create  # noqa: E402
from kriyplatform.clickhouse.migrator import migrate  # noqa: E402
from tests.bench.harness import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "pages.json"


def store(project_id: int, n_spans: int) -> int:
    gen = TrafficGenerator(seed=42, payload_bytes=200)
    now = time.time_ns()
    batch: list[dict] = []
    stored = 0
    for tr in gen.sessions(now - 56 * 86_400 * 10**9, now - 3_600 * 10**9, n_spans // 8):
        batch.extend(tr)
        if len(batch) >= 20_000:
            rows, _ = validate_spans(batch, Limits())
            rows_insert(rows, project_id=project_id, retention_days=90)
            stored += len(rows)
            batch = []
            print(f"\rstored {stored:,} spans", end="", flush=True)
            if stored >= n_spans:
                break
    print()
    return stored


def timed(client: Client, url: str, n: int) -> dict:
    client.get(url)  # warm: template compilation, connections
    times = []
    for _ in range(n):
        t = time.perf_counter()
        resp = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        assert resp.status_code == 200, (url, resp.status_code)
    times.sort()
    return {
        "url": url,
        "n": n,
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (n - 1))], 1),
        "max_ms": round(times[-1], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spans", type=int, default=1_000_000)
    p.add_argument("-n", type=int, default=40)
    a = p.parse_args()
    call_command("migrate", verbosity=0)
    migrate()
    org = organization_get_or_create(slug=f"bench-pages-{int(time.time())}")
    project = project_get_or_create(organization=org, slug="agents")
    contracts_put(project=project, document=CONTRACTS)
    JudgeWatermark.objects.update_or_create(key="spans", defaults={"version": time.time_ns()})
    stored = store(project.pk, a.spans)
    t = time.perf_counter()
    judge_pending(settle_seconds=0)
    rollup_pending()
    print(f"judged and rolled up in {time.perf_counter() - t:.1f} s")
    user = User.objects.create_user(f"bench-{int(time.time())}@example.com", "bench password 123")
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    client = Client()
    client.force_login(user)
    base = f"/o/{org.slug}/p/{project.slug}"
    results = [
        timed(client, f"{base}/", a.n),
        timed(client, f"{base}/traces/", a.n),
        timed(client, f"{base}/traces/?outcome=defective&agent=support", a.n),
        timed(client, f"{base}/issues/", a.n),
        timed(client, f"{base}/report/", a.n),
    ]
    out = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "spans": stored,
        "pages": results,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(f"{r['url']:<70} p50 {r['p50_ms']:>7} ms   p95 {r['p95_ms']:>7} ms")


if __name__ == "__main__":
    main()
