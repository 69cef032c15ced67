"""First-run demo seeding (filled in with the simulator)."""

from __future__ import annotations

from collections.abc import Callable


def seed_in_background(base_url: str, out: Callable[[str], None] = print) -> None:
    return None
