"""ClickHouse DDL of the judge's output: one row per judged trace, its findings inline.

Keeping a trace's findings in arrays on its judgement row makes re-judging a plain replace: the
newest ``judged_version`` wins, so findings that no longer hold disappear with the old row. The
row also carries the root's summary, so it is the trace index: lists, sessions and rollups read it.
"""

from __future__ import annotations

from kriyplatform.clickhouse.ddl import Layout


def judgements_table(layout: Layout) -> list[str]:
    t = layout.local("trace_judgements")
    return [
        f"""CREATE TABLE IF NOT EXISTS {{db}}.{t}{layout.on_cluster} (
    project_id UInt64,
    trace_id String,
    root_span_id String,
    session_id String,
    agent LowCardinality(String),
    name String,
    start_time DateTime64(9, 'UTC'),
    duration_ns Int64,
    status LowCardinality(String),
    outcome LowCardinality(String),
    span_count UInt32,
    tokens_in UInt64,
    tokens_out UInt64,
    cost_usd Float64,
    finding_span_ids Array(String),
    finding_types Array(LowCardinality(String)),
    finding_span_names Array(String),
    finding_agents Array(String),
    finding_messages Array(String),
    retention_days UInt16,
    judged_at DateTime,
    judged_version UInt64,
    INDEX idx_start start_time TYPE minmax GRANULARITY 1,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 2,
    INDEX idx_agent agent TYPE set(1024) GRANULARITY 2
) ENGINE = {layout.engine("trace_judgements", version="judged_version")}
ORDER BY (project_id, trace_id)
TTL judged_at + toIntervalDay(retention_days)""",
        *layout.distributed("trace_judgements", "cityHash64(project_id, trace_id)"),
    ]
