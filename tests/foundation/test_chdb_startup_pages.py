"""The embedded span store hands chDB's start-up-only code pages back to the kernel."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import chdb
from kriyplatform.clickhouse.client import release_startup_pages

def rss_file_mb():
    for line in open("/proc/self/status"):
        if line.startswith("RssFile:"):
            return int(line.split()[1]) // 1024

conn = chdb.connect(":memory:")
assert conn.query("SELECT 40 + 2", "CSV").bytes().strip() == b"42"
before = rss_file_mb()
advised = release_startup_pages()
after = rss_file_mb()
assert conn.query("SELECT sum(number) FROM numbers(10)", "CSV").bytes().strip() == b"45"
print(before, after, advised)
"""


def test_releasing_start_up_pages_shrinks_resident_memory_and_the_engine_keeps_working() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    before, after, advised = (int(x) for x in out)
    assert advised > 100 << 20  # the library's read-only mappings
    assert before - after > 50, f"resident file pages {before} MB → {after} MB"
