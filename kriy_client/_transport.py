"""POST batches to ``{endpoint}/api/v1/spans``: gzip, bearer auth, retries that honour Retry-After.

Retried: 429, 502, 503, 504 and network errors (refused, reset, timed out), with exponential
backoff and jitter, or after the server's ``Retry-After`` (seconds or an HTTP-date) when it
sends one. Not retried: any other answer (a 4xx is a problem with the key or the data, and a
resend would be refused the same way); each such status is logged once per client. A 413 splits
the batch in halves, down to single spans.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import json
import logging
import math
import platform
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from kriy_client._version import __version__

log = logging.getLogger("kriy_client")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
USER_AGENT = f"kriy-client/{__version__} (python {platform.python_version()})"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:  # pragma: no cover - older Pythons returned None
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": half the step is fixed, half is random."""
    step = min(cap, base * (2 ** min(attempt, 30)))
    return step / 2 + random.uniform(0, step / 2)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect of a POST would turn it into a GET and lose the body: surface it instead."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Result:
    """What became of a batch."""

    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Transport:
    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        timeout: float = 5,
        max_retries: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        max_retry_after: float = 120.0,
        wait: Callable[[float], bool] | None = None,
    ) -> None:
        self.url = endpoint.rstrip("/") + "/api/v1/spans"
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        # Sleeps for the given seconds; returns False when the wait was cut short (shutting down).
        self._wait = wait or _sleep
        self._opener = urllib.request.build_opener(_NoRedirect)
        self._logged: set[str] = set()
        self._logged_lock = threading.Lock()

    # --- one request ------------------------------------------------------------------------

    def post(self, body: bytes) -> tuple[int, Any, bytes]:
        """One POST; the status, headers and body of any HTTP answer. Network errors raise."""
        # The client only builds a Transport for http(s):// endpoints.
        request = urllib.request.Request(  # noqa: S310
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Authorization": f"Bearer {self.api_key}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    data = exc.read()
                except (OSError, http.client.HTTPException):
                    data = b""
                return exc.code, exc.headers, data

    # --- a batch, with retries ----------------------------------------------------------------

    def send(self, spans: list[bytes]) -> Result:
        """Send pre-encoded spans; never raises."""
        if not spans:
            return Result()
        try:
            body = gzip.compress(b'{"spans":[' + b",".join(spans) + b"]}", compresslevel=6)
        except Exception as exc:  # pragma: no cover - gzip of bytes does not fail
            log.error("kriy_client: could not encode a batch: %s", exc)
            return Result(failed=len(spans))
        attempt = 0
        while True:
            status: int | None = None
            headers: Any = None
            data = b""
            try:
                status, headers, data = self.post(body)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                problem = f"HTTP {status}"
            if status is not None and 200 <= status < 300:
                return self._accepted(len(spans), data)
            if status is not None and status not in RETRYABLE_STATUSES:
                return self._refused(spans, status, headers, data)
            if attempt >= self.max_retries:
                log.warning(
                    "kriy_client: %d span(s) dropped after %d attempts to %s (%s)",
                    len(spans),
                    attempt + 1,
                    self.url,
                    problem,
                )
                return Result(failed=len(spans), errors=[problem])
            delay = None
            if headers is not None:
                delay = parse_retry_after(headers.get("Retry-After"))
            if delay is None:
                delay = backoff_delay(attempt, self.backoff_base, self.backoff_max)
            else:
                delay = min(delay, self.max_retry_after)
            log.info(
                "kriy_client: %s from %s; retry %d/%d in %.2fs",
                problem,
                self.url,
                attempt + 1,
                self.max_retries,
                delay,
            )
            if not self._wait(delay):
                log.warning(
                    "kriy_client: %d span(s) dropped: the client closed while retrying (%s)",
                    len(spans),
                    problem,
                )
                return Result(failed=len(spans), errors=[problem])
            attempt += 1

    def _accepted(self, n: int, data: bytes) -> Result:
        rejected: list[Any] = []
        accepted = n
        try:
            doc = json.loads(data) if data else {}
            rejected = list(doc.get("rejected") or [])
            accepted = int(doc.get("accepted", n - len(rejected)))
        except (ValueError, TypeError, AttributeError):
            pass
        errors = [_rejection(r) for r in rejected]
        if rejected:
            log.warning(
                "kriy_client: the platform rejected %d of %d span(s); first: %s",
                len(rejected),
                n,
                errors[0],
            )
        return Result(accepted=accepted, rejected=len(rejected), errors=errors)

    def _refused(self, spans: list[bytes], status: int, headers: Any, data: bytes) -> Result:
        if status == 413 and len(spans) > 1:
            half = len(spans) // 2
            self._log_once("413", "kriy_client: batch too large (413); sending it in halves")
            first, second = self.send(spans[:half]), self.send(spans[half:])
            return Result(
                accepted=first.accepted + second.accepted,
                rejected=first.rejected + second.rejected,
                failed=first.failed + second.failed,
                errors=first.errors + second.errors,
            )
        message = _error_message(data)
        if status == 400:
            # The body parsed but no span was valid: the spans themselves are at fault.
            try:
                rejected = json.loads(data).get("rejected") or []
            except (ValueError, TypeError, AttributeError):
                rejected = []
            if rejected:
                errors = [_rejection(r) for r in rejected]
                log.warning(
                    "kriy_client: the platform rejected %d span(s); first: %s",
                    len(spans),
                    errors[0],
                )
                return Result(rejected=len(spans), errors=errors)
        if 300 <= status < 400:
            where = headers.get("Location") if headers is not None else None
            message = f"redirected to {where}; set the endpoint to that URL"
        self._log_once(
            str(status),
            "kriy_client: %s answered %d (%s); these spans are dropped and not retried",
            self.url,
            status,
            message,
        )
        return Result(failed=len(spans), errors=[f"HTTP {status}: {message}"])

    def _log_once(self, key: str, message: str, *args: Any) -> None:
        with self._logged_lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.error(message, *args)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return True


def _error_message(data: bytes) -> str:
    try:
        doc = json.loads(data)
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"])[:500]
    except (ValueError, TypeError):
        pass
    return data[:200].decode("utf-8", "replace") or "no body"


def _rejection(item: Any) -> str:
    if isinstance(item, dict):
        errors = "; ".join(str(e) for e in item.get("errors") or [])
        return f"span {item.get('span_id') or item.get('index')}: {errors}"
    return str(item)
