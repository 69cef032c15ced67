"""The embedded span store runs with the engine settings ingest relies on (docs/performance.md)."""

from __future__ import annotations

from kriyplatform.clickhouse.client import _with_settings, ch_system


def _value(table: str, name: str) -> str:
    rows = ch_system(
        f"SELECT value FROM system.{table} WHERE name = {{name:String}}", {"name": name}
    )
    return rows[0]["value"]


def test_merges_are_wide_packed_and_yield_the_cpu() -> None:
    assert _value("merge_tree_settings", "merge_selector_base") == "10"
    assert _value("merge_tree_settings", "min_bytes_for_full_part_storage") == str(64 << 20)
    assert _value("server_settings", "os_threads_nice_value_merge_mutate") == "10"


def test_one_merge_runs_at_a_time() -> None:
    # each merge of small packed parts holds ~100-190 MB: concurrent ones made the peak memory
    assert _value("server_settings", "background_pool_size") == "1"
    assert _value("server_settings", "background_merges_mutations_concurrency_ratio") == "1"
    # and each merge holds a compression buffer per column: small blocks keep those small
    assert _value("merge_tree_settings", "max_compress_block_size") == str(64 << 10)
    assert _value("merge_tree_settings", "min_compress_block_size") == str(16 << 10)


def test_inserts_run_single_threaded_after_the_targets_own_settings() -> None:
    assert _with_settings("kriy.t") == "INSERT INTO kriy.t SETTINGS max_threads = 1"
    assert (
        _with_settings("kriy.spans (a, b) SETTINGS optimize_on_insert = 0")
        == "INSERT INTO kriy.spans (a, b) SETTINGS optimize_on_insert = 0, max_threads = 1"
    )
