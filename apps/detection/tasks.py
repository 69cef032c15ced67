from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from django.conf import settings

from kriyplatform.locks import task_lock

_deferring_since: float | None = None


def _defer_for_ingest() -> str:
    """Embedded default: let a burst of ingest through before judging (bounded by a maximum wait).

    The judge and the web server share one process there; judging while spans pour in competes
    for the same CPU, and one pass over the backlog afterwards is cheaper than many small ones.
    """
    global _deferring_since
    threshold = settings.KRIY_JUDGE_DEFER_ABOVE
    if not threshold:
        return ""
    from apps.ingest.batcher import current_batcher

    batcher = current_batcher()
    rate = batcher.recent_rate() if batcher is not None else 0.0
    now = time.monotonic()
    if rate <= threshold:
        _deferring_since = None
        return ""
    if _deferring_since is None:
        _deferring_since = now
    if now - _deferring_since >= settings.KRIY_JUDGE_MAX_DEFER_SECONDS:
        _deferring_since = now  # judge now; the next burst may wait again
        return ""
    return f"ingest is running at {rate:,.0f} spans/s; judging within {settings.KRIY_JUDGE_MAX_DEFER_SECONDS:.0f} s"


@shared_task(
    name="detection.judge_pending",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=600,
    time_limit=660,
)
def judge_pending_task() -> dict[str, Any]:
    """Periodic: judge traces with new spans. Idempotent; the lock only saves duplicate work."""
    from apps.detection.services import judge_pending

    deferred = _defer_for_ingest()
    if deferred:
        return {"deferred": deferred}
    with task_lock("judge-pending", ttl=660) as held:
        if not held:
            return {"skipped": "another judge pass is running"}
        stats = judge_pending()
    if stats.traces:
        # fresh judgements: bring the rollups (and with them alerts and pages) up to date now
        from apps.metrics.tasks import rollup_recent_task

        rollup_recent_task.delay()
    return stats.as_dict()


@shared_task(
    name="detection.rejudge_agents",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=1800,
    time_limit=1900,
)
def rejudge_agents_task(project_id: int, agents: list[str]) -> dict[str, Any]:
    from apps.detection.services import rejudge_agents

    return rejudge_agents(project_id=project_id, agents=agents).as_dict()
