"""A span of the native format (``spans.md`` §1) and the reliability conventions (§2).

Nothing here raises into the agent: a value that does not fit the wire format is coerced (to a
string, or truncated) and the coercion is logged, never thrown.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import secrets
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kriy_client._client import Client

log = logging.getLogger("kriy_client")

KINDS = frozenset({"agent", "llm", "tool", "retrieval", "handoff", "step"})
STATUSES = frozenset({"ok", "error", "unset"})
STATE_OPS = frozenset({"read", "write"})

# Wire limits of spans.md §1, and a per-value cap on input/output below the server's default.
MAX_AGENT = 128
MAX_NAME = 256
MAX_SESSION = 256
MAX_STATUS_MESSAGE_BYTES = 4096
MAX_IO_BYTES = 1024 * 1024
MAX_STRING_ATTRIBUTE_BYTES = 32 * 1024
MAX_STACKTRACE_BYTES = 8 * 1024

_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "kriy_client_current_span", default=None
)


def current_span() -> Span | None:
    """The innermost span entered in this context (thread or asyncio task), if any."""
    return _current.get()


# --- ids and clock ----------------------------------------------------------------------------


def new_trace_id() -> str:
    while True:
        value = secrets.token_hex(16)
        if value.strip("0"):
            return value


def new_span_id() -> str:
    while True:
        value = secrets.token_hex(8)
        if value.strip("0"):
            return value


class _Clock:
    """Wall-clock nanoseconds that never go backwards within the process.

    Spans are compared by time ("a later span starts no earlier than S ends"), so two sequential
    spans must not appear to overlap because NTP stepped the wall clock between them. The clock is
    the wall clock at an anchor plus the monotonic clock since, re-anchored every few seconds to
    follow the wall clock without ever moving back.
    """

    REANCHOR_NS = 5_000_000_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._anchor_wall = time.time_ns()
        self._anchor_mono = time.perf_counter_ns()
        self._last = self._anchor_wall

    def now_ns(self) -> int:
        with self._lock:
            mono = time.perf_counter_ns()
            if mono - self._anchor_mono > self.REANCHOR_NS:
                self._anchor_wall, self._anchor_mono = time.time_ns(), mono
            value = max(self._anchor_wall + (mono - self._anchor_mono), self._last)
            self._last = value
            return value


clock = _Clock()


# --- values -----------------------------------------------------------------------------------


def truncate_utf8(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= max_bytes:
        return text
    return raw[: max_bytes - 3].decode("utf-8", "ignore") + "…"


def _scalar(value: Any) -> str | int | float | bool:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return truncate_utf8(value, MAX_STRING_ATTRIBUTE_BYTES)
    return truncate_utf8(str(value), MAX_STRING_ATTRIBUTE_BYTES)


def attribute_value(value: Any) -> Any:
    """An attribute value as the wire allows it: a scalar or a list of scalars (None: drop)."""
    if value is None:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_scalar(v) for v in items if v is not None]
    return _scalar(value)


def json_text(value: Any, limit: int = MAX_IO_BYTES) -> str:
    """``value`` as JSON text for ``input``/``output``: anything not JSON becomes its ``str``;
    text over ``limit`` bytes is stored as a truncated JSON string."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        text = json.dumps(repr(value), ensure_ascii=False)
    if len(text) > limit // 4 and len(text.encode("utf-8")) > limit:
        text = json.dumps(truncate_utf8(text, limit - 64), ensure_ascii=False)
    return text


# --- the span -----------------------------------------------------------------------------------


class Span:
    """One step of an agent. Use it as a context manager (``with client.span(...) as s:``).

    On entry it becomes the current span of the context, so spans opened inside it are its
    children and share its trace. On exit it records the end time; an exception marks it
    ``error`` with the exception as ``status_message`` (and re-raises); otherwise a span whose
    status was not set ends ``ok``.
    """

    __slots__ = (
        "_client",
        "_ended",
        "_status_set",
        "_token",
        "agent",
        "attributes",
        "end_time",
        "events",
        "input",
        "kind",
        "name",
        "output",
        "parent_span_id",
        "session_id",
        "span_id",
        "start_time",
        "status",
        "status_message",
        "trace_id",
    )

    def __init__(
        self,
        client: Client | None,
        name: str,
        *,
        agent: str | None,
        kind: str = "step",
        session_id: str | None = None,
        attributes: Mapping[str, Any] | None = None,
        input: Any = None,
        parent: Span | None = None,
    ) -> None:
        self._client = client
        self._ended = False
        self._status_set = False
        self._token: contextvars.Token[Span | None] | None = None
        self.parent_span_id = parent.span_id if parent is not None else None
        self.trace_id = parent.trace_id if parent is not None else new_trace_id()
        self.span_id = new_span_id()
        self.name = truncate_utf8(str(name or "span"), MAX_NAME)
        agent = agent or (parent.agent if parent is not None else None)
        if not agent:
            agent = client.agent if client is not None and client.agent else "unknown-agent"
            if parent is None:
                _warn_once("agent", "kriy_client: a root span without agent=…; using %r", agent)
        self.agent = truncate_utf8(str(agent), MAX_AGENT)
        if kind not in KINDS:
            _warn_once(f"kind:{kind}", "kriy_client: unknown span kind %r; using 'step'", kind)
            kind = "step"
        self.kind = kind
        if session_id is None and parent is not None:
            session_id = parent.session_id
        self.session_id = (
            truncate_utf8(str(session_id), MAX_SESSION) if session_id is not None else None
        )
        self.attributes: dict[str, Any] = {}
        if attributes:
            self.set_attributes(attributes)
        self.input: str | None = json_text(input) if input is not None else None
        self.output: str | None = None
        self.events: list[dict[str, Any]] = []
        self.status = "unset"
        self.status_message: str | None = None
        self.start_time = clock.now_ns()
        self.end_time: int | None = None

    # --- context manager ---------------------------------------------------------------------

    def __enter__(self) -> Span:
        try:
            self._token = _current.set(self)
        except Exception:  # pragma: no cover - ContextVar.set does not fail in practice
            log.debug("kriy_client: could not make the span current", exc_info=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            if exc is not None:
                self.record_exception(exc)
                self.set_status("error", f"{type(exc).__name__}: {exc}")
            if self._token is not None:
                try:
                    _current.reset(self._token)
                except ValueError:  # exited in another context (e.g. an async generator)
                    _current.set(None)
                self._token = None
            self.end()
        except Exception:
            log.warning("kriy_client: could not end span %r", self.name, exc_info=True)
        return False  # never swallow the agent's exception

    def end(self) -> None:
        """End the span and queue it for sending (the context manager calls this)."""
        if self._ended:
            return
        self._ended = True
        self.end_time = clock.now_ns()
        if not self._status_set:
            self.status = "ok"
        if self._client is not None:
            self._client._enqueue(self)

    # --- data -------------------------------------------------------------------------------

    def set_attribute(self, key: str, value: Any) -> Span:
        try:
            coerced = attribute_value(value)
            if coerced is None:
                self.attributes.pop(str(key), None)
            else:
                self.attributes[str(key)] = coerced
        except Exception:
            log.warning("kriy_client: attribute %r dropped", key, exc_info=True)
        return self

    def set_attributes(self, attributes: Mapping[str, Any]) -> Span:
        try:
            for key, value in attributes.items():
                self.set_attribute(key, value)
        except Exception:
            log.warning("kriy_client: attributes dropped", exc_info=True)
        return self

    def set_input(self, value: Any) -> Span:
        try:
            self.input = json_text(value)
        except Exception:
            log.warning("kriy_client: input of %r dropped", self.name, exc_info=True)
        return self

    def set_output(self, value: Any) -> Span:
        try:
            self.output = json_text(value)
        except Exception:
            log.warning("kriy_client: output of %r dropped", self.name, exc_info=True)
        return self

    def set_status(self, status: str, message: str | None = None) -> Span:
        """``ok``, ``error`` or ``unset``, with an optional message (kept to 4 KiB)."""
        value = str(status).lower()
        if value not in STATUSES:
            _warn_once(f"status:{value}", "kriy_client: unknown status %r ignored", status)
            return self
        self.status = value
        self._status_set = True
        if message is not None:
            self.status_message = truncate_utf8(str(message), MAX_STATUS_MESSAGE_BYTES)
        return self

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> Span:
        try:
            attrs = {str(k): v for k, v in (attributes or {}).items()}
            attrs = {k: attribute_value(v) for k, v in attrs.items() if v is not None}
            self.events.append({"name": str(name), "time": clock.now_ns(), "attributes": attrs})
        except Exception:
            log.warning("kriy_client: event %r dropped", name, exc_info=True)
        return self

    def record_exception(self, exc: BaseException) -> Span:
        """An ``exception`` event in the OpenTelemetry shape (type, message, stacktrace)."""
        try:
            stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            self.add_event(
                "exception",
                {
                    "exception.type": type(exc).__qualname__,
                    "exception.message": str(exc),
                    "exception.stacktrace": truncate_utf8(stack, MAX_STACKTRACE_BYTES),
                },
            )
        except Exception:
            log.debug("kriy_client: exception event dropped", exc_info=True)
        return self

    # --- reliability conventions (spans.md §2) -----------------------------------------------

    def mark_partial(self, partial: bool = True) -> Span:
        """The step's result is incomplete (truncated, paginated, a partial record)."""
        return self.set_attribute("kriy.result.partial", bool(partial))

    def retry(self, attempt: int, reason: str | None = None) -> Span:
        """Attempt ``attempt`` (0 = first) of an operation, and why it was retried: pass the
        earlier attempt's failure as ``reason``."""
        try:
            self.set_attribute("kriy.retry.attempt", int(attempt))
        except (TypeError, ValueError):
            _warn_once("retry", "kriy_client: retry attempt %r is not an int", attempt)
        if reason:
            self.set_attribute("kriy.retry.reason", str(reason))
        return self

    def constraints(self, items: Iterable[str]) -> Span:
        """Constraints in force for this step (``budget<=500``, ``region=EU``)."""
        return self.set_attribute("kriy.constraints", [str(i) for i in _iterable(items)])

    def context(self, *, required: Iterable[str] = (), present: Iterable[str] = ()) -> Span:
        """Context fields this step needs, and the ones it actually had."""
        self.set_attribute("kriy.context.required", [str(i) for i in _iterable(required)])
        return self.set_attribute("kriy.context.present", [str(i) for i in _iterable(present)])

    def state(self, key: str, version: int, op: str = "read") -> Span:
        """A piece of shared state this step read or wrote, at ``version``."""
        if op not in STATE_OPS:
            _warn_once(f"state:{op}", "kriy_client: state op %r is not read/write; ignored", op)
            return self
        self.set_attribute("kriy.state.key", str(key))
        try:
            self.set_attribute("kriy.state.version", int(version))
        except (TypeError, ValueError):
            _warn_once("state-version", "kriy_client: state version %r is not an int", version)
        return self.set_attribute("kriy.state.op", op)

    # --- wire ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The native span (``spans.md`` §1) with ``input``/``output`` still as JSON text."""
        doc: dict[str, Any] = {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "agent": self.agent,
            "name": self.name,
            "kind": self.kind,
            "start_time": self.start_time,
            "end_time": self.end_time if self.end_time is not None else clock.now_ns(),
            "status": self.status,
        }
        if self.session_id is not None:
            doc["session_id"] = self.session_id
        if self.status_message:
            doc["status_message"] = self.status_message
        if self.attributes:
            doc["attributes"] = self.attributes
        if self.events:
            doc["events"] = self.events
        return doc

    def to_json(self) -> bytes:
        """The span as one JSON object (input/output embedded as already-encoded JSON)."""
        doc = self.to_dict()
        try:
            text = json.dumps(doc, ensure_ascii=False, allow_nan=False, default=str)
        except (TypeError, ValueError):
            doc["attributes"] = {k: str(v) for k, v in self.attributes.items()}
            doc.pop("events", None)
            text = json.dumps(doc, ensure_ascii=False, default=str)
        extra = ""
        if self.input is not None:
            extra += f',"input":{self.input}'
        if self.output is not None:
            extra += f',"output":{self.output}'
        return (text[:-1] + extra + "}").encode("utf-8")

    def __repr__(self) -> str:
        return (
            f"<Span {self.name!r} agent={self.agent!r} trace={self.trace_id} span={self.span_id}>"
        )


def _iterable(items: Iterable[str] | str) -> list[Any]:
    if isinstance(items, str):
        return [items]
    try:
        return list(items)
    except TypeError:
        return [items]


_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str, *args: Any) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)
