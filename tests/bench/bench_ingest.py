"""Ingest throughput: realistic agent traffic over HTTP to a running server (what `make run` starts).

    .venv/bin/python tests/bench/bench_ingest.py [--spans 300000] [--connections 4]
        [--server-env KRIY_BATCH_MAX_WAIT_MS=3] [--server-env KRIY_DETECT_INTERVAL=100000]

Sends requests of 200-500 spans over 4 concurrent keep-alive connections, native JSON and OTLP
protobuf, and reports spans/s from the first send until every span is queryable through
/api/v1/usage, plus the server's peak RSS and the CPU it used per span (steadier than the rate
when other work shares the machine). Client and server share this machine. The server runs as
`make run` starts it, in-process judge included; ``--server-env`` changes its environment (the
results record it).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import sys
import threading
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from apps.demo.traffic import TrafficGenerator, to_otlp
from tests.bench.harness import Server, machine, wait_until_quiet

RESULTS = Path(__file__).parent / "results" / "ingest.json"


def make_requests(n_spans: int, fmt: str, seed: int) -> tuple[list[bytes], int]:
    gen = TrafficGenerator(seed=seed, payload_bytes=900)
    now = time.time_ns()
    spans: list[dict] = []
    for tr in gen.sessions(now - 86_400 * 10**9, now, n_spans // 8):
        spans.extend(tr)
        if len(spans) >= n_spans:
            break
    spans = spans[:n_spans]
    rng = random.Random(seed)
    bodies, i = [], 0
    while i < len(spans):
        n = rng.randint(200, 500)
        chunk = spans[i : i + n]
        i += n
        bodies.append(
            orjson.dumps({"spans": chunk})
            if fmt == "native"
            else to_otlp(chunk).SerializeToString()
        )
    return bodies, len(spans)


def run(
    fmt: str, n_spans: int, connections: int, port: int, env: dict[str, str] | None = None
) -> dict:
    bodies, total = make_requests(n_spans, fmt, seed=11 if fmt == "native" else 12)
    avg = sum(map(len, bodies)) / total
    path, ctype = (
        ("/api/v1/spans", "application/json")
        if fmt == "native"
        else ("/v1/traces", "application/x-protobuf")
    )
    with Server(port=port, env=env) as server:
        port = server.port
        key = server.key()
        work: queue.Queue[bytes] = queue.Queue()
        for b in bodies:
            work.put(b)
        errors: list[str] = []

        def client() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            while True:
                try:
                    body = work.get_nowait()
                except queue.Empty:
                    return
                for _attempt in range(10):
                    conn.request(
                        "POST",
                        path,
                        body=body,
                        headers={"Authorization": f"Bearer {key}", "Content-Type": ctype},
                    )
                    resp = conn.getresponse()
                    data = resp.read()
                    if resp.status == 200:
                        break
                    if resp.status in (429, 503):
                        time.sleep(float(resp.getheader("Retry-After", "1")))
                        continue
                    errors.append(f"{resp.status}: {data[:200]!r}")
                    break

        busy = wait_until_quiet()  # measure this run, not the previous one's tail
        load = os.getloadavg()[0]
        cpu0 = server.cpu_seconds()
        threads0 = server.cpu_by_thread()
        client_cpu0 = time.process_time()
        start = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(connections)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent = time.perf_counter() - start
        while True:
            stored = server.get("/api/v1/usage", key)["spans"]
            if stored >= total:
                break
            if time.perf_counter() - start > 600:
                raise RuntimeError(f"only {stored} of {total} spans queryable after 600 s")
            time.sleep(0.05)
        elapsed = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu0
        cpu = server.cpu_seconds() - cpu0
        threads1 = server.cpu_by_thread()
        rss = server.peak_rss_mb()
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return {
        "format": fmt,
        "spans": total,
        "requests": len(bodies),
        "avg_span_bytes": round(avg),
        "connections": connections,
        "seconds_to_acknowledged": round(sent, 2),
        "seconds_to_queryable": round(elapsed, 2),
        "spans_per_sec": round(total / elapsed),
        "server_peak_rss_mb": round(rss),
        # CPU the server used (all its threads, chDB's included) per span: steadier than the
        # rate on a shared machine, where ``load_before`` says how busy the machine already was.
        "server_cpu_us_per_span": round(cpu / total * 1e6, 1),
        # the same per thread name (µs per span), largest first
        "server_cpu_us_per_span_by_thread": {
            name: round(us, 1)
            for name, us in sorted(
                (
                    (name, (t - threads0.get(name, 0.0)) / total * 1e6)
                    for name, t in threads1.items()
                ),
                key=lambda kv: -kv[1],
            )
            if us >= 0.5
        },
        # the same for this benchmark's own process (its 4 connections and the usage polls):
        # client and server share the machine's two cores
        "client_cpu_us_per_span": round(client_cpu / total * 1e6, 1),
        "load_before": round(load, 2),
        "cpu_busy_before": round(busy, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--spans", type=int, default=300_000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--formats", default="native,otlp")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="environment for the server (e.g. KRIY_BATCH_MAX_WAIT_MS=3); recorded in the results",
    )
    a = p.parse_args()
    env = dict(kv.split("=", 1) for kv in a.server_env)
    results = [run(fmt, a.spans, a.connections, a.port, env) for fmt in a.formats.split(",")]
    out = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "server_env": env,
        "results": results,
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for r in results:
        print(
            f"{r['format']:>6}: {r['spans']} spans ({r['avg_span_bytes']} B avg) in {r['seconds_to_queryable']} s "
            f"→ {r['spans_per_sec']} spans/s, server peak RSS {r['server_peak_rss_mb']} MB, "
            f"server CPU {r['server_cpu_us_per_span']} µs/span, client CPU {r['client_cpu_us_per_span']} µs/span "
            f"(load before {r['load_before']})"
        )


if __name__ == "__main__":
    main()
