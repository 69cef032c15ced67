"""The embedded span store hands chDB's start-up-only code pages back to the kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import chdb

SCRIPT = """
import chdb
from kriyplatform.clickhouse.client import release_startup_pages

def own_library_pages_mb():
    # resident pages of the engine library's read-only mappings that only this process maps
    own = 0
    mine = False
    for line in open("/proc/self/smaps"):
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
            mine = fields[-1].endswith("_chdb.abi3.so") and fields[1] in ("r-xp", "r--p")
        elif mine and fields[0] == "Private_Clean:":
            own += int(fields[1])
    return own // 1024

assert "/site-packages/" not in chdb.__file__, chdb.__file__  # the private copy
conn = chdb.connect(":memory:")
assert conn.query("SELECT 40 + 2", "CSV").bytes().strip() == b"42"
own_before = own_library_pages_mb()
advised = release_startup_pages()
own_after = own_library_pages_mb()
assert conn.query("SELECT sum(number) FROM numbers(10)", "CSV").bytes().strip() == b"45"
print(own_before, own_after, advised)
"""


def _private_engine_copy(root: Path) -> Path:
    """The chdb package with a copy of its engine library of its own: MADV_PAGEOUT leaves alone
    the pages that another process maps too, and the test process runs chDB from the installed
    file; a server is the only process that maps its engine."""
    installed = Path(chdb.__file__).parent
    package = root / "chdb"
    package.mkdir()
    for entry in installed.iterdir():
        if entry.name == "_chdb.abi3.so":
            shutil.copyfile(entry, package / entry.name)
            with open(package / entry.name, "rb+") as f:
                os.fsync(f.fileno())  # clean pages: the kernel pages out only clean file pages
        else:
            (package / entry.name).symlink_to(entry)
    libs = installed.parent / "chdb_core.libs"  # the library's RPATH: $ORIGIN/../chdb_core.libs
    if libs.exists():
        (root / libs.name).symlink_to(libs)
    return root


def test_releasing_start_up_pages_shrinks_resident_memory_and_the_engine_keeps_working(
    tmp_path: Path,
) -> None:
    site = _private_engine_copy(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.getcwd()])}
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env=env,
        ).stdout.split()
    finally:
        shutil.rmtree(site / "chdb")  # the 555 MB copy: pytest keeps recent temp dirs
    own_before, own_after, advised = (int(x) for x in out)
    assert advised > 100 << 20  # the library's read-only mappings
    assert own_before > 100, f"start-up touched {own_before} MB of the library's own pages"
    assert own_after < own_before // 4, f"library pages {own_before} MB → {own_after} MB"
