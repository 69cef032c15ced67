"""The one way into the span store.

Two transports share one SQL dialect: embedded chDB (``chdb://<dir>``) and a ClickHouse server
through clickhouse-connect (``http(s)://…``). Values are always bound as server-side parameters
(``{name:Type}``) and never formatted into SQL. Tenant queries go through ``ch_select``, which
requires the project id and refuses SQL that does not filter on it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, urlparse

import orjson
from django.conf import settings

from kriyplatform.errors import SpanStoreUnavailable

log = logging.getLogger(__name__)

TENANT_FILTER = "project_id = {project_id:UInt64}"


class ClickHouseError(Exception):
    """A query the span store refused (bad SQL or data), as opposed to the store being down."""


class Transport(Protocol):
    database: str

    def query(self, sql: str, params: Mapping[str, Any], fmt: str) -> bytes: ...

    def insert(self, table: str, data: bytes, fmt: str) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Parameter values in ClickHouse's text format (what clickhouse-connect does for server binding).


# ClickHouse parses parameter values in its "escaped" text format: backslash, tab, newline and the
# other control characters must be escaped, and strings inside arrays are single-quoted.
_ESCAPES = {
    "\\": "\\\\",
    "\t": "\\t",
    "\n": "\\n",
    "\r": "\\r",
    "\0": "\\0",
    "\b": "\\b",
    "\f": "\\f",
}
_ESCAPE_TABLE = str.maketrans(_ESCAPES)
_QUOTED_TABLE = str.maketrans({**_ESCAPES, "'": "\\'"})


def _quote(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.translate(_QUOTED_TABLE) + "'"
    return format_param(value)


def format_param(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return value.translate(_ESCAPE_TABLE)
    if isinstance(value, (list, tuple, set, frozenset)):
        return "[" + ",".join(_quote(v) for v in value) + "]"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)


# The embedded engine shares the process with the web server, so it is sized for that (server
# peak RSS is part of the ingest targets; the engine's own defaults assume a machine of its own):
# - caches: chDB allows 5 GiB each for marks, index marks and primary indexes; a long-running
#   process would grow towards that as queries touch parts.
_CHDB_SERVER_SETTINGS = {
    "mark_cache_size": 128 << 20,
    "index_mark_cache_size": 32 << 20,
    "primary_index_cache_size": 64 << 20,
    # - merges yield the CPU: requests wait for their insert, merges wait for nobody, so merge
    #   threads run at nice 10 and take the cycles that requests and inserts leave.
    "os_threads_nice_value_merge_mutate": 10,
    # - one merge at a time: small packed parts merge horizontally (every column of every source
    #   part read at once), ~100-190 MB per merge of ~12 fresh parts (~55-105 MB with the
    #   compression blocks below), and during an ingest burst two to four of them ran together;
    #   that, not the data, made the server's peak memory. Merges still keep up (300,000 spans
    #   inserted back to back are down to 5-15 parts within a second); throughput is unchanged
    #   on the ingest benchmark.
    "background_pool_size": 1,
    "background_merges_mutations_concurrency_ratio": 1,
}
# - merges: a horizontal merge of the 35-column spans table holds buffers for every column of
#   every source part (~100-190 MB for ~12 small parts); a vertical merge writes one column at
#   a time (~20-75 MB) for about the same CPU. The engine merges vertically only into full
#   (unpacked) parts, so this applies from the 64 MB below.
# - compression blocks of 64 KB (ClickHouse: 1 MB): a merge holds a compression buffer per
#   column, so small-part merges took ~60-190 MB; with 64 KB blocks ~55-105 MB, at the same
#   engine CPU per span and ~1 % more bytes on disk.
# - packed parts: a part below 64 MB is stored as one file instead of ~14. On this VM's
#   filesystem creating (and deleting) files dominated small inserts and merges: packed parts
#   cut the engine's CPU per ingested span by about a quarter (insert ~21 → ~16 µs, merges
#   ~20 → ~14 µs). Larger merged parts are stored normally.
# - merge width: each merge may take twice as many parts as the engine's default
#   (``merge_selector_base`` 10 instead of 5), so a span is rewritten fewer times on its way
#   from a ~700-row group commit to a large part: merges cost ~35 % less CPU per span, for a few
#   more parts alive while spans arrive.
# These are MergeTree defaults of this engine only, so the table DDL (and a ClickHouse server)
# is unchanged; a table setting would still win.
_CHDB_MERGE_TREE_DEFAULTS = {
    "vertical_merge_algorithm_min_rows_to_activate": 1,
    "vertical_merge_algorithm_min_columns_to_activate": 1,
    "min_bytes_for_full_part_storage": 64 << 20,
    "merge_selector_base": 10,
    "max_compress_block_size": 64 << 10,
    "min_compress_block_size": 16 << 10,
}
# An insert of pre-encoded rows has nothing to parallelise: one pipeline thread saves the
# hand-offs between threads (~15 % of a group commit's time on chDB).
_CHDB_INSERT_SETTINGS = "max_threads = 1"
_CHDB_CONFIG_NAME = "kriy-chdb.xml"


_MADV_PAGEOUT = 21  # Linux 5.4+


def release_startup_pages(library_suffix: str = "_chdb.abi3.so") -> int:
    """Hand chDB's start-up-only code pages back to the kernel; returns the bytes advised.

    Loading the engine runs static initialisers spread over ~190 MB of its 555 MB library, and
    those pages are never touched again. ``MADV_PAGEOUT`` on the library's read-only mappings
    lets the kernel reclaim them: they are clean file pages (nothing is lost, a page needed later
    is read back from the file), and private pages that were written are left alone. The server's
    resident memory drops by ~150 MB. A no-op where the call is unknown (not Linux, old kernel).
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        advised = 0
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) < 6 or not fields[5].endswith(library_suffix):
                    continue
                if fields[1] not in ("r-xp", "r--p"):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                if madvise(start, end - start, _MADV_PAGEOUT) == 0:
                    advised += end - start
        return advised
    except (OSError, AttributeError, ValueError):
        return 0


def chdb_connection_string(path: str) -> str:
    """``chdb.connect`` argument: the data directory with the engine settings above (startup
    settings take effect when the first connection opens the engine)."""
    import os

    directory, _, query = path.partition("?")
    os.makedirs(directory, exist_ok=True)
    config = os.path.join(directory, _CHDB_CONFIG_NAME)
    xml = (
        "<clickhouse><merge_tree>"
        + "".join(f"<{k}>{v}</{k}>" for k, v in _CHDB_MERGE_TREE_DEFAULTS.items())
        + "</merge_tree></clickhouse>\n"
    )
    try:
        with open(config) as f:
            current = f.read()
    except OSError:
        current = None
    if current != xml:
        tmp = f"{config}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(xml)
        os.replace(tmp, config)
    params = [p for p in query.split("&") if p]
    given = {p.split("=", 1)[0] for p in params}
    params += [f"{k}={v}" for k, v in _CHDB_SERVER_SETTINGS.items() if k not in given]
    if "config-file" not in given:
        params.append(f"config-file={config}")
    return f"{directory}?{'&'.join(params)}"


def _with_settings(target: str) -> str:
    """``INSERT INTO target`` plus this engine's insert settings (after the target's own)."""
    joiner = ", " if " SETTINGS " in target else " SETTINGS "
    return f"INSERT INTO {target}{joiner}{_CHDB_INSERT_SETTINGS}"


class ChdbTransport:
    """Embedded chDB. The engine is opened lazily, once per process, only when spans are served.

    chDB locks its data directory to one process, so nothing opens it at import time: management
    commands that do not touch spans keep working while the server runs.
    """

    _lock = threading.Lock()
    _released = False  # start-up pages handed back (once per process)

    def __init__(self, path: str, database: str):
        self.path = path
        self.database = database
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import chdb

            with self._lock:
                try:
                    conn = chdb.connect(chdb_connection_string(self.path))
                except (
                    Exception
                ) as exc:  # the directory is locked by another process, or unreadable
                    raise SpanStoreUnavailable(f"cannot open chDB at {self.path}: {exc}") from exc
                try:
                    conn.query(f"CREATE DATABASE IF NOT EXISTS {self.database}")
                except Exception as exc:
                    raise SpanStoreUnavailable(str(exc)) from exc
                if not ChdbTransport._released and settings.KRIY_CHDB_RELEASE_STARTUP_PAGES:
                    ChdbTransport._released = True
                    release_startup_pages()
            self._local.conn = conn
        return conn

    def query(self, sql: str, params: Mapping[str, Any], fmt: str) -> bytes:
        conn = self._conn()
        try:
            res = conn.query(
                sql, fmt, params={k: format_param(v) for k, v in params.items()} if params else None
            )
        except Exception as exc:
            raise ClickHouseError(str(exc)) from exc
        return res.bytes() if hasattr(res, "bytes") else (res or b"")

    def insert(self, table: str, data: bytes, fmt: str) -> None:
        conn = self._conn()
        try:
            with conn.send_insert(_with_settings(f"{self.database}.{table}"), fmt) as ins:
                ins.append(data)
                ins.finish()
        except Exception as exc:
            raise ClickHouseError(str(exc)) from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class HttpTransport:
    """A ClickHouse server through clickhouse-connect; inserts use async inserts that wait."""

    def __init__(self, url: str, database: str):
        u = urlparse(url)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.database = (u.path or "").strip("/") or database
        self._kwargs = {
            "host": u.hostname or "localhost",
            "port": u.port or (8443 if u.scheme == "https" else 8123),
            "username": u.username or "default",
            "password": u.password or "",
            "secure": u.scheme == "https",
            "connect_timeout": float(q.get("connect_timeout", 5)),
            "send_receive_timeout": float(q.get("timeout", 60)),
        }
        self._local = threading.local()

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import clickhouse_connect

            try:
                client = clickhouse_connect.get_client(
                    **self._kwargs, autogenerate_session_id=False
                )
            except Exception as exc:
                raise SpanStoreUnavailable(str(exc)) from exc
            self._local.client = client
        return client

    def query(self, sql: str, params: Mapping[str, Any], fmt: str) -> bytes:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        try:
            return self._client().raw_query(sql, parameters=dict(params or {}), fmt=fmt)
        except OperationalError as exc:
            raise SpanStoreUnavailable(str(exc)) from exc
        except DatabaseError as exc:
            raise ClickHouseError(str(exc)) from exc

    def insert(self, table: str, data: bytes, fmt: str) -> None:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        try:
            self._client().raw_insert(
                f"{self.database}.{table}",
                insert_block=data,
                fmt=fmt,
                settings={"async_insert": 1, "wait_for_async_insert": 1},
            )
        except OperationalError as exc:
            raise SpanStoreUnavailable(str(exc)) from exc
        except DatabaseError as exc:
            raise ClickHouseError(str(exc)) from exc

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


_transport: Transport | None = None
_transport_lock = threading.Lock()
# Test hook: when set, every call raises SpanStoreUnavailable (fault injection without mocks of
# the engine: the transport is never reached).
_outage: str | None = None


def transport() -> Transport:
    global _transport
    if _transport is None:
        with _transport_lock:
            if _transport is None:
                url = settings.CLICKHOUSE_URL
                if url.startswith("chdb://"):
                    _transport = ChdbTransport(url[len("chdb://") :], settings.CLICKHOUSE_DATABASE)
                elif url.startswith(("http://", "https://")):
                    _transport = HttpTransport(url, settings.CLICKHOUSE_DATABASE)
                else:
                    raise ValueError(
                        f"CLICKHOUSE_URL: expected chdb://<dir> or http(s)://…, got {url!r}"
                    )
    return _transport


def set_outage(reason: str | None) -> None:
    """Make the span store unavailable (``reason``) or available again (None)."""
    global _outage
    _outage = reason


def _check() -> Transport:
    if _outage is not None:
        raise SpanStoreUnavailable(_outage)
    return transport()


def db() -> str:
    return transport().database


def _render(sql: str) -> str:
    # Table names are code constants, never user input: ``{db}`` is the database placeholder.
    return sql.replace("{db}", db())


def ch_select(
    sql: str, *, project_id: int, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Rows of a tenant query. The SQL must filter on ``project_id = {project_id:UInt64}``."""
    return orjson_rows(ch_raw(sql, project_id=project_id, params=params, fmt="JSONEachRow"))


def ch_raw(
    sql: str, *, project_id: int, params: Mapping[str, Any] | None = None, fmt: str = "JSONEachRow"
) -> bytes:
    if not isinstance(project_id, int) or isinstance(project_id, bool):
        raise TypeError("ch_select needs the project id")
    if TENANT_FILTER not in sql:
        raise ValueError("tenant query without the project filter: " + sql[:120])
    bound = dict(params or {})
    bound["project_id"] = project_id
    return _check().query(_render(sql), bound, fmt)


def ch_system(
    sql: str, params: Mapping[str, Any] | None = None, fmt: str = "JSONEachRow"
) -> list[dict[str, Any]]:
    """A query that is not about one tenant: DDL, migrations, the judge's new-trace scan.

    Callers are listed in tests/test_clickhouse_tenancy.py; anything new must be justified there.
    """
    data = _check().query(_render(sql), dict(params or {}), fmt)
    return orjson_rows(data) if fmt == "JSONEachRow" else [{"raw": data}]


def ch_insert(table: str, data: bytes, fmt: str = "JSONEachRow") -> None:
    """Insert pre-encoded rows. Rows carry their own project id; nothing is interpolated."""
    if not data:
        return
    _check().insert(table, data, fmt)


def orjson_rows(data: bytes) -> list[dict[str, Any]]:
    if not data:
        return []
    return [orjson.loads(line) for line in data.splitlines() if line]


def reset_transport_for_tests() -> None:
    global _transport
    _transport = None


__all__: Sequence[str] = [
    "ClickHouseError",
    "ch_insert",
    "ch_raw",
    "ch_select",
    "ch_system",
    "set_outage",
    "transport",
]
