"""Numbered ClickHouse migrations: ``kriyplatform/clickhouse/migrations/NNNN_name.py``.

Each module holds ``operations``: functions of the cluster layout returning SQL statements.
Applied migrations are recorded in ``kriy_migrations`` in the span store itself.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from kriyplatform.clickhouse.client import ch_system, db
from kriyplatform.clickhouse.ddl import Layout

PACKAGE = "kriyplatform.clickhouse.migrations"


@dataclass(frozen=True)
class Migration:
    name: str
    operations: list[Callable[[Layout], list[str]]]

    def statements(self, layout: Layout) -> list[str]:
        return [sql for op in self.operations for sql in op(layout)]


def layout() -> Layout:
    return Layout(cluster=settings.CLICKHOUSE_CLUSTER)


def all_migrations() -> list[Migration]:
    pkg = importlib.import_module(PACKAGE)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name[:4].isdigit())
    return [Migration(n, list(importlib.import_module(f"{PACKAGE}.{n}").operations)) for n in names]


def _ensure_ledger(lay: Layout) -> None:
    # chDB creates the database when it opens; a ClickHouse server needs it created here.
    ch_system(f"CREATE DATABASE IF NOT EXISTS {{db}}{lay.on_cluster}", fmt="TabSeparated")
    # One ledger for the whole cluster: replicated to every node, not per shard.
    ch_system(
        f"CREATE TABLE IF NOT EXISTS {{db}}.kriy_migrations{lay.on_cluster} "
        "(name String, applied_at DateTime DEFAULT now()) ENGINE = "
        f"{lay.engine('kriy_migrations', family='ReplacingMergeTree', sharded=False)} ORDER BY name",
        fmt="TabSeparated",
    )


def applied(*, create: bool = True) -> set[str]:
    """Names of the applied migrations; ``create=False`` only looks (for ``--plan``)."""
    lay = layout()
    if create:
        _ensure_ledger(lay)
    else:
        exists = ch_system(
            "SELECT count() AS n FROM system.tables WHERE database = {d:String} AND name = 'kriy_migrations'",
            {"d": db()},
        )
        if not exists[0]["n"]:
            return set()
    return {r["name"] for r in ch_system("SELECT name FROM {db}.kriy_migrations FINAL")}


def plan() -> list[tuple[Migration, list[str]]]:
    """Pending migrations and their SQL, without changing anything."""
    done = applied(create=False)
    lay = layout()
    return [(m, m.statements(lay)) for m in all_migrations() if m.name not in done]


def migrate(progress: Callable[[str], None] = lambda _m: None) -> list[str]:
    names = []
    _ensure_ledger(layout())
    for migration, statements in plan():
        progress(f"applying {migration.name} ({len(statements)} statements)")
        for sql in statements:
            ch_system(sql, fmt="TabSeparated")
        ch_system(
            "INSERT INTO {db}.kriy_migrations (name) VALUES ({name:String})",
            {"name": migration.name},
            fmt="TabSeparated",
        )
        names.append(migration.name)
    return names
