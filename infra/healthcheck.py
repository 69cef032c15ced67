"""Container health check for the web process: exit 0 when GET /healthz answers 200.

Standard library only (the slim image has no curl). The request carries a Host header from
DJANGO_ALLOWED_HOSTS, because Django answers 400 to a host it does not serve, and
X-Forwarded-Proto is irrelevant: /healthz is exempt from the HTTPS redirect.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def allowed_host() -> str:
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(","):
        host = host.strip().lstrip(".")
        if host and host != "*":
            return host
    return "localhost"


def main() -> int:
    port = os.environ.get("PORT") or "8000"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz", headers={"Host": allowed_host()}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - fixed http URL
            return 0 if resp.status == 200 else 1
    except Exception as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
