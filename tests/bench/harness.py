"""Shared pieces of the benchmarks: a real server started like `make run`, keys, peak RSS."""

from __future__ import annotations

import http.client
import json
import os
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


class Server:
    """``manage.py serve`` (what `make run` runs) on a fresh data directory."""

    def __init__(
        self, port: int = 8765, env: dict[str, str] | None = None, data_dir: str | None = None
    ):
        self.port = port
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="kriy-bench-")
        self.env = {
            **os.environ,
            "KRIY_DATA_DIR": self.data_dir,
            "KRIY_DEMO": "0",
            "PORT": str(port),
            **(env or {}),
        }
        self.env.pop("DATABASE_URL", None) if "DATABASE_URL" not in (env or {}) else None
        self.proc: subprocess.Popen | None = None
        self.log = open(Path(self.data_dir) / "server.log", "wb")  # noqa: SIM115

    def __enter__(self) -> Server:
        self.proc = subprocess.Popen(
            [PY, "manage.py", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log.name}")
            time.sleep(0.3)
        raise RuntimeError("server did not become ready")

    def __exit__(self, *exc: Any) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)

    def manage(self, *args: str) -> str:
        return subprocess.check_output(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, text=True
        ).strip()

    def key(self, scopes: str = "ingest,read,admin") -> str:
        return self.manage(
            "create_api_key", "--org", "bench", "--project", "bench", "--scopes", scopes
        )

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
