"""A named lock in the cache (Redis in production, memory embedded) so two beats or workers do
not run the same periodic work at once. Correctness never rests on it alone: the work it guards
is idempotent, and notifications are deduplicated by a database constraint."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache


@contextmanager
def task_lock(name: str, ttl: int) -> Iterator[bool]:
    """Yields True when this caller holds the lock (expires after ``ttl`` s if never released)."""
    key, token = f"kriy:lock:{name}", secrets.token_hex(8)
    try:
        acquired = cache.add(key, token, ttl)
    except Exception:  # the cache is down: run anyway, the guarded work is idempotent
        acquired, token = True, ""
    try:
        yield acquired
    finally:
        if acquired and token:
            try:
                if cache.get(key) == token:
                    cache.delete(key)
            except Exception:  # noqa: S110 - the lock expires by itself
                pass
