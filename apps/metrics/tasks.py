from __future__ import annotations

from typing import Any

from celery import shared_task

from kriyplatform.locks import task_lock


@shared_task(
    name="metrics.rollup_recent",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=600,
    time_limit=660,
)
def rollup_recent_task() -> dict[str, Any]:
    """Recompute the rollups of the days recent judge passes touched. Idempotent."""
    from apps.metrics.services import rollup_pending

    with task_lock("rollup-recent", ttl=660) as held:
        if not held:
            return {"skipped": "another rollup is running"}
        return rollup_pending()
