"""Engine and cluster clauses, so each table's DDL is written once for both layouts.

Single node: ``<table>`` is a (Replacing)MergeTree.
Cluster (``CLICKHOUSE_CLUSTER`` set): ``<table>_local`` is a Replicated*MergeTree on every replica
and ``<table>`` a Distributed table over it, sharded by the given key so that every version of a
row lands on the same shard (ReplacingMergeTree dedupes within a shard).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    cluster: str = ""

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER '{self.cluster}'" if self.cluster else ""

    def local(self, table: str) -> str:
        """Name of the table that holds the data on a node."""
        return f"{table}_local" if self.cluster else table

    def engine(
        self,
        table: str,
        family: str = "ReplacingMergeTree",
        version: str | None = None,
        sharded: bool = True,
    ) -> str:
        """``sharded=False``: one copy on every node of the cluster (no {shard} in the path)."""
        args = [version] if version else []
        if self.cluster:
            shard = "{shard}" if sharded else "all"
            path = f"'/clickhouse/tables/{shard}/{{database}}/{self.local(table)}'"
            replica = "'{replica}'"
            joined = ", ".join([path, replica, *args])
            return f"Replicated{family}({joined})"
        return f"{family}({', '.join(args)})"

    def distributed(self, table: str, shard_key: str) -> list[str]:
        """The Distributed table in front of ``<table>_local`` (nothing on a single node)."""
        if not self.cluster:
            return []
        return [
            f"CREATE TABLE IF NOT EXISTS {{db}}.{table}{self.on_cluster} AS {{db}}.{self.local(table)} "
            f"ENGINE = Distributed('{self.cluster}', currentDatabase(), '{self.local(table)}', {shard_key})"
        ]

    def drop(self, table: str) -> list[str]:
        names = [self.local(table), table] if self.cluster else [table]
        return [f"DROP TABLE IF EXISTS {{db}}.{n}{self.on_cluster}" for n in names]
