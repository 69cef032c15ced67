"""Soak: minutes of steady agent traffic against a running server (what `make run` starts),
proving every acknowledged span is stored exactly once, with the server's peak memory.

    .venv/bin/python tests/bench/soak.py [--seconds 300] [--rate 2000] [--connections 4]

Four connections send realistic traffic at a steady total rate (native and OTLP alternating);
every span of a 200 answer is recorded as acknowledged. Some requests are deliberately sent
twice (a client retry after a lost answer), which must not double-count. At the end the store
must hold exactly the distinct acknowledged spans (GET /api/v1/usage), and the judge must have
judged every trace whose root was acknowledged. Exit status 1 when anything is lost or doubled.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from apps.demo.traffic import TrafficGenerator, to_otlp
from tests.bench.harness import Server, machine

RESULTS = Path(__file__).parent / "results" / "soak.json"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--rate", type=float, default=2000, help="total spans per second")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--port", type=int, default=8766)
    a = p.parse_args()

    acked: set[tuple[str, str]] = set()
    roots: set[str] = set()
    lock = threading.Lock()
    counters = {"requests": 0, "resends": 0, "retries": 0, "errors": 0}
    with Server(port=a.port, env={"KRIY_DETECT_INTERVAL": "3"}) as server:
        key = server.key()
        deadline = time.monotonic() + a.seconds
        per_conn = a.rate / a.connections

        def client(n: int) -> None:
            gen = TrafficGenerator(seed=100 + n, payload_bytes=400)
            rng = random.Random(n)
            conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=60)
            sent, started = 0, time.monotonic()
            while time.monotonic() < deadline:
                now = time.time_ns()
                spans = [
                    s for tr in gen.sessions(now - 90 * 10**9, now - 60 * 10**9, 30) for s in tr
                ]
                otlp = rng.random() < 0.5
                path, ctype = (
                    ("/v1/traces", "application/x-protobuf")
                    if otlp
                    else ("/api/v1/spans", "application/json")
                )
                body = (
                    to_otlp(spans).SerializeToString() if otlp else orjson.dumps({"spans": spans})
                )
                for attempt in range(
                    2 if rng.random() < 0.05 else 1
                ):  # 5 %: the same request twice
                    while True:
                        conn.request(
                            "POST",
                            path,
                            body=body,
                            headers={"Authorization": f"Bearer {key}", "Content-Type": ctype},
                        )
                        resp = conn.getresponse()
                        resp.read()
                        with lock:
                            counters["requests"] += 1
                            counters["resends"] += attempt
                        if resp.status == 200:
                            with lock:
                                acked.update((s["trace_id"], s["span_id"]) for s in spans)
                                roots.update(
                                    s["trace_id"] for s in spans if not s.get("parent_span_id")
                                )
                            break
                        if resp.status in (429, 503):
                            with lock:
                                counters["retries"] += 1
                            time.sleep(float(resp.getheader("Retry-After", "1")))
                            continue
                        with lock:
                            counters["errors"] += 1
                        break
                sent += len(spans)
                ahead = sent / per_conn - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(a.connections)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(5)
            with lock:
                print(
                    f"\r{time.monotonic() - t0:5.0f} s  {len(acked):,} spans acknowledged  {counters}",
                    end="",
                    flush=True,
                )
        for t in threads:
            t.join()
        print()
        usage = server.get("/api/v1/usage", key)
        # the judge catches up within a few passes
        judged, wait_until = 0, time.monotonic() + 120
        while time.monotonic() < wait_until:
            judged = 0
            cursor = None
            while True:
                q = f"/api/v1/traces?limit=500{'&cursor=' + cursor if cursor else ''}"
                page = server.get(q, key)
                judged += len(page["traces"])
                cursor = page["next_cursor"]
                if not cursor:
                    break
            if judged >= len(roots):
                break
            time.sleep(3)
        rss = server.peak_rss_mb()
    result = {
        "seconds": a.seconds,
        "target_rate": a.rate,
        "acknowledged_spans": len(acked),
        "stored_spans": usage["spans"],
        "traces_with_root": len(roots),
        "traces_judged": judged,
        **counters,
        "server_peak_rss_mb": round(rss),
        "ok": usage["spans"] == len(acked) and judged == len(roots) and counters["errors"] == 0,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": machine(),
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "result": result,
            },
            indent=2,
        )
        + "\n"
    )
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
