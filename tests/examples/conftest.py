"""One real platform server (``manage.py serve``, what `make run` runs) for the examples package.

It runs as its own process on a fresh data directory (SQLite + chDB there), independent of the
suite's PostgreSQL; the tests talk to it over HTTP only, like an agent would.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bench.harness import ROOT, Server

DEADLINE_S = 60.0
POLL_S = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Platform:
    server: Server
    key: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def get(self, path: str) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.key}"})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, json.loads(body) if body else None
        finally:
            conn.close()

    def log_tail(self, lines: int = 40) -> str:
        path = Path(self.server.data_dir) / "server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_for(self, what: str, probe: Callable[[], Any], deadline_s: float = DEADLINE_S) -> Any:
        """Poll ``probe`` until it returns something truthy, at most ``deadline_s`` seconds."""
        deadline = time.monotonic() + deadline_s
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(POLL_S)
        raise AssertionError(
            f"{what}: not there after {deadline_s:.0f}s\nserver log:\n{self.log_tail()}"
        )

    def judged_trace(self, agent: str, trace_id: str) -> dict[str, Any]:
        """The trace once it is listed for ``agent`` with an outcome, then its detail."""

        def listed() -> dict[str, Any] | None:
            status, body = self.get(f"/api/v1/traces?agent={agent}&limit=50")
            assert status == 200, body
            for item in body["traces"]:
                if item["trace_id"] == trace_id and item["outcome"]:
                    return item
            return None

        self.wait_for(f"trace {trace_id} of {agent} judged", listed)
        status, detail = self.get(f"/api/v1/traces/{trace_id}")
        assert status == 200, detail
        return detail


@pytest.fixture(scope="package")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    env = {
        # The embedded default, whatever the suite's environment says.
        "DJANGO_SETTINGS_MODULE": "kriyplatform.settings",
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CELERY_BROKER_URL": "",
        "CLICKHOUSE_URL": "",
        "REDIS_URL": "",
        "KRIY_DEMO": "0",
    }
    data_dir = tmp_path_factory.mktemp("kriy-platform")
    with Server(port=free_port(), env=env, data_dir=str(data_dir)) as server:
        key = server.manage(
            "create_api_key", "--org", "acme", "--project", "agents", "--scopes", "ingest,read"
        )
        assert key.startswith("kp_"), key
        yield Platform(server, key)


__all__ = ["ROOT", "Platform"]
