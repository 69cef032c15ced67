"""Shared pieces of the benchmarks: a real server started like `make run`, keys, peak RSS."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = (
    str(ROOT / ".venv" / "bin" / "python")
    if (ROOT / ".venv" / "bin" / "python").exists()
    else sys.executable
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """``manage.py serve`` (what `make run` runs) on a fresh data directory.

    A data directory it made itself is removed on exit (``KRIY_BENCH_KEEP=1`` keeps it).
    """

    def __init__(
        self, port: int = 8765, env: dict[str, str] | None = None, data_dir: str | None = None
    ):
        self.port = port or free_port()
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="kriy-bench-")
        self.env = {
            **os.environ,
            "KRIY_DATA_DIR": self.data_dir,
            "KRIY_DEMO": "0",
            "PORT": str(self.port),
            **(env or {}),
        }
        self.env.pop("DATABASE_URL", None) if "DATABASE_URL" not in (env or {}) else None
        self.proc: subprocess.Popen | None = None
        self.log = open(Path(self.data_dir) / "server.log", "wb")  # noqa: SIM115

    def __enter__(self) -> Server:
        if _port_taken(self.port):
            # Another server answering there would be measured instead of ours.
            raise RuntimeError(f"port {self.port} is already in use")
        self.proc = subprocess.Popen(
            [PY, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self._stop()  # never leave a server behind; its log stays for the reader
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc: Any) -> None:
        self._stop()
        if self.own_dir and exc[0] is None and not os.environ.get("KRIY_BENCH_KEEP"):
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def manage(self, *args: str) -> str:
        return subprocess.check_output(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, text=True
        ).strip()

    def key(self, scopes: str = "ingest,read,admin") -> str:
        return self.manage(
            "create_api_key", "--org", "bench", "--project", "bench", "--scopes", scopes
        )

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far (all its threads)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def cpu_by_thread(self) -> dict[str, float]:
        """CPU seconds used so far per thread name (chDB names its pools; Python threads are
        "python"), to see where the server's time goes."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended meanwhile
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat.rsplit(")", 1)[1].split()
            name = name.rstrip("0123456789") or name
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return out

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def get(self, path: str, key: str) -> Any:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        r = c.getresponse()
        return json.loads(r.read())


def machine() -> str:
    cpus = os.cpu_count()
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    return f"{cpus} cores, {mem} GB RAM, Python {sys.version.split()[0]}"


def _cpu_busy_fraction(interval: float = 1.0) -> float:
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_until_quiet(threshold: float = 0.1, max_wait: float = 120.0) -> float:
    """Wait until the machine's CPUs are idle (a previous run's server and its judge workers have
    finished), so one measurement does not pay for the last one. Returns the busy fraction seen."""
    deadline = time.monotonic() + max_wait
    busy = _cpu_busy_fraction()
    while busy > threshold and time.monotonic() < deadline:
        busy = _cpu_busy_fraction()
    return busy
