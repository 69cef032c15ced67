"""The client: spans are queued in memory and sent in batches by one background thread.

The queue is bounded: when it is full the oldest span is dropped (and counted), so an agent
whose platform is down never grows without limit nor blocks. ``flush()`` waits until everything
queued before the call has been sent or given up on; ``close()`` flushes and stops the thread,
and runs by itself at interpreter exit.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from kriy_client import _span as _span_module
from kriy_client._span import Span, current_span
from kriy_client._transport import Transport

log = logging.getLogger("kriy_client")

F = TypeVar("F", bound=Callable[..., Any])

# Uncompressed bytes per request; far under the server's default limits (16 MiB compressed,
# 64 MiB decompressed, 10 000 spans).
MAX_BATCH_BYTES = 8 * 1024 * 1024

_clients: weakref.WeakSet[Client] = weakref.WeakSet()


class Client:
    """Send spans to a kriyplatform server.

    ``endpoint`` is the server's base URL (``https://kriy.example.com``); ``api_key`` a key with
    the ``ingest`` scope. An empty endpoint or key gives a disabled client: spans still work as
    context managers but go nowhere (handy when the agent runs without the platform).
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        flush_interval: float = 1.0,
        max_batch: int = 500,
        max_queue: int = 10_000,
        timeout: float = 5,
        max_retries: int = 5,
        agent: str | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        close_timeout: float = 10.0,
    ) -> None:
        self.endpoint = (endpoint or "").rstrip("/")
        self.agent = agent
        self.enabled = bool(self.endpoint and api_key)
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            log.warning(
                "kriy_client: endpoint %r is not http(s)://; spans will not be sent", endpoint
            )
            self.enabled = False
        self.flush_interval = max(0.0, float(flush_interval))
        self.max_batch = max(1, int(max_batch))
        self.max_queue = max(1, int(max_queue))
        self.close_timeout = close_timeout
        self._abort = threading.Event()
        self._transport = Transport(
            self.endpoint,
            api_key or "",
            timeout=timeout,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            wait=self._backoff_wait,
        )
        self._init_state()
        self._closed = False
        self.sent = 0
        self.rejected = 0
        self.failed = 0
        self.dropped = 0
        self._last_drop_log = 0.0
        if not (self.endpoint and api_key):
            log.warning("kriy_client: no endpoint or API key; spans will not be sent")
        _clients.add(self)
        atexit.register(self._at_exit)

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client for ``KRIY_ENDPOINT`` and ``KRIY_API_KEY`` (disabled when either is unset)."""
        return cls(
            os.environ.get("KRIY_ENDPOINT", ""), os.environ.get("KRIY_API_KEY", ""), **kwargs
        )

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[tuple[int, float, bytes]] = deque()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._seq = 0  # the sequence number of the last span queued
        self._settled = 0  # every span up to this one is sent, rejected, dropped or given up on
        self._inflight = False
        self._dropped_max = 0
        self._flush_target = 0
        self._closing = False

    # --- spans --------------------------------------------------------------------------------

    def span(
        self,
        name: str,
        *,
        agent: str | None = None,
        kind: str = "step",
        session_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        input: Any = None,
    ) -> Span:
        """A span to use as a context manager. Inside another span it is its child (same trace,
        and the parent's agent and session unless given)."""
        try:
            return Span(
                self,
                name,
                agent=agent,
                kind=kind,
                session_id=session_id,
                attributes=attributes,
                input=input,
                parent=current_span(),
            )
        except Exception:
            log.warning("kriy_client: could not start span %r", name, exc_info=True)
            return Span(None, str(name), agent=agent or "unknown-agent")

    def trace(
        self,
        name: str | None = None,
        *,
        agent: str | None = None,
        kind: str = "step",
        session_id: str | None = None,
        capture_io: bool = False,
    ) -> Callable[[F], F]:
        """Decorate a function (sync or async) so each call is a span. ``capture_io`` records
        the arguments as ``input`` and the return value as ``output``. (For a generator
        function the span covers only creating the generator: open a span inside it instead.)"""

        def decorate(fn: F) -> F:
            span_name = name or getattr(fn, "__qualname__", None) or repr(fn)

            def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Span:
                span = self.span(span_name, agent=agent, kind=kind, session_id=session_id)
                if capture_io:
                    span.set_input(_call_input(fn, args, kwargs))
                return span

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    with start(args, kwargs) as span:
                        result = await fn(*args, **kwargs)
                        if capture_io:
                            span.set_output(result)
                        return result

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with start(args, kwargs) as span:
                    result = fn(*args, **kwargs)
                    if capture_io:
                        span.set_output(result)
                    return result

            return cast(F, wrapper)

        return decorate

    @staticmethod
    def current_span() -> Span | None:
        return current_span()

    # --- queue --------------------------------------------------------------------------------

    def _enqueue(self, span: Span) -> None:
        try:
            if not self.enabled:
                return
            if self._closed:
                _log_closed_once(self)
                return
            data = span.to_json()
            if os.getpid() != self._pid:  # forked: the parent's thread and lock are not ours
                self._init_state()
            with self._cond:
                if len(self._queue) >= self.max_queue:
                    seq, _t, _d = self._queue.popleft()
                    self.dropped += 1
                    self._dropped_max = seq
                    if not self._inflight:
                        self._settled = seq
                    self._log_drop()
                self._seq += 1
                self._queue.append((self._seq, time.monotonic(), data))
                if len(self._queue) >= self.max_batch or self.flush_interval == 0:
                    self._cond.notify_all()
                self._ensure_thread()
        except Exception:
            log.warning("kriy_client: span %r dropped", getattr(span, "name", "?"), exc_info=True)

    def _log_drop(self) -> None:
        now = time.monotonic()
        if now - self._last_drop_log > 60:
            self._last_drop_log = now
            log.warning(
                "kriy_client: queue full (%d spans); dropping the oldest (%d dropped so far)",
                self.max_queue,
                self.dropped,
            )

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="kriy-client-sender", daemon=True
            )
            self._thread.start()

    # --- the sender thread --------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                batch = self._next_batch()
                if batch is None:
                    return
                self._send(batch)
            except Exception:  # the sender must survive anything
                log.exception("kriy_client: sender error")
                time.sleep(0.1)

    def _next_batch(self) -> list[tuple[int, float, bytes]] | None:
        with self._cond:
            while True:
                if self._abort.is_set():
                    self._give_up_queue()
                    return None
                if self._queue:
                    urgent = self._closing or self._flush_target > self._settled
                    due = self._queue[0][1] + self.flush_interval
                    wait = due - time.monotonic()
                    if urgent or len(self._queue) >= self.max_batch or wait <= 0:
                        break
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()
            batch: list[tuple[int, float, bytes]] = []
            size = 0
            while self._queue and len(batch) < self.max_batch:
                item = self._queue[0]
                if batch and size + len(item[2]) > MAX_BATCH_BYTES:
                    break
                batch.append(self._queue.popleft())
                size += len(item[2])
            self._inflight = True
            return batch

    def _send(self, batch: list[tuple[int, float, bytes]]) -> None:
        result = None
        try:
            result = self._transport.send([data for _s, _t, data in batch])
        finally:
            with self._cond:
                if result is not None:
                    self.sent += result.accepted
                    self.rejected += result.rejected
                    self.failed += result.failed
                else:
                    self.failed += len(batch)
                self._inflight = False
                self._settled = max(self._settled, batch[-1][0], self._dropped_max)
                self._cond.notify_all()

    def _give_up_queue(self) -> None:
        if self._queue:
            self.failed += len(self._queue)
            log.warning("kriy_client: %d queued span(s) not sent at close", len(self._queue))
            self._settled = max(self._settled, self._queue[-1][0])
            self._queue.clear()
        self._cond.notify_all()

    def _backoff_wait(self, seconds: float) -> bool:
        return not self._abort.wait(seconds)

    # --- flush and close ------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every span queued before this call is sent (or given up on).
        True when done, False when ``timeout`` seconds passed first."""
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._cond:
                target = self._seq
                if self._settled >= target:
                    return True
                self._flush_target = max(self._flush_target, target)
                if not self._closed:
                    self._ensure_thread()
                self._cond.notify_all()
                while self._settled < target:
                    if self._thread is None or not self._thread.is_alive():
                        return self._settled >= target
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining if remaining is not None else 1.0)
            return True
        except Exception:
            log.warning("kriy_client: flush failed", exc_info=True)
            return False

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout`` seconds, default ``close_timeout``) and stop the sender.
        Spans ended after close are ignored. True when everything queued was sent."""
        try:
            if self._closed:
                return True
            timeout = self.close_timeout if timeout is None else timeout
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            done = self.flush(timeout)
            self._closed = True
            self._abort.set()  # cut short a backoff still in progress
            with self._cond:
                self._cond.notify_all()
                thread = self._thread
            if thread is not None and thread is not threading.current_thread():
                thread.join(1.0)
            atexit.unregister(self._at_exit)
            return done
        except Exception:
            log.warning("kriy_client: close failed", exc_info=True)
            return False

    def _at_exit(self) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Counters: spans ``queued`` now; ``sent`` (accepted), ``rejected`` by the platform's
        validation, ``failed`` (refused or retries exhausted) and ``dropped`` (queue full)."""
        with self._cond:
            return {
                "queued": len(self._queue),
                "sent": self.sent,
                "rejected": self.rejected,
                "failed": self.failed,
                "dropped": self.dropped,
            }

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<kriy_client.Client {self.endpoint or '(disabled)'}>"


def _call_input(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs)
        return {k: v for k, v in bound.arguments.items() if k not in ("self", "cls")}
    except (TypeError, ValueError):
        return {"args": list(args), "kwargs": kwargs}


_closed_logged: weakref.WeakSet[Client] = weakref.WeakSet()


def _log_closed_once(client: Client) -> None:
    if client not in _closed_logged:
        _closed_logged.add(client)
        log.warning("kriy_client: span ended after close(); it is not sent")


def _after_fork_in_child() -> None:
    """A forked child starts with a copy of every lock, possibly held by a thread that does not
    exist in the child: give it fresh locks, an empty queue and no sender thread."""
    _span_module.clock._lock = threading.Lock()
    _span_module._warned_lock = threading.Lock()
    for client in list(_clients):
        try:
            client._init_state()
            client._transport._logged_lock = threading.Lock()
        except Exception:  # pragma: no cover
            log.debug("kriy_client: reset after fork failed", exc_info=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = ["Client"]
