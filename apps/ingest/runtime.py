"""Process tuning for a server that ingests: applied once, by the first ingest request.

Ingest allocates many short-lived containers (decoded spans, attribute dicts, column lists).
With CPython's default thresholds a generation-0 collection runs every 700 net allocations and
every tenth of those is a generation-1 collection, and the full collections walk everything the
process has loaded (Django, the apps, chDB's module, …): measured at ~20 % of the ingest
thread's time. So, once the process is warm:
- ``gc.freeze()`` moves what exists (the loaded code and its objects) to the permanent
  generation, which no collection walks again;
- the generation-0 threshold is raised so collections run ~30 times less often. Cycles are still
  collected; each collection just waits for more garbage.

``KRIY_INGEST["GC_FREEZE"]`` (default True) and ``KRIY_INGEST["GC_GEN0_THRESHOLD"]`` (default
20000; 0 keeps CPython's) turn this off or tune it.
"""

from __future__ import annotations

import gc
import threading

_done = False
_lock = threading.Lock()

DEFAULT_GEN0_THRESHOLD = 20_000


def tune_once() -> None:
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        from django.conf import settings

        cfg = getattr(settings, "KRIY_INGEST", {})
        if cfg.get("GC_FREEZE", True):
            gc.collect()
            gc.freeze()
        gen0 = cfg.get("GC_GEN0_THRESHOLD", DEFAULT_GEN0_THRESHOLD)
        if gen0:
            g0, g1, g2 = gc.get_threshold()
            gc.set_threshold(max(g0, gen0), g1, g2)
