from __future__ import annotations

from typing import Any

from celery import shared_task

from kriyplatform.locks import task_lock


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
