"""Alert tasks. Beat runs ``alerts.evaluate_all`` every KRIY_ALERT_INTERVAL and
``alerts.weekly_digests`` on Mondays (kriyplatform/beat.py).

Evaluation fans out one ``alerts.evaluate_rule`` task per rule rather than looping: a slow or
failing span-store query for one project then delays no other project's alerts, workers share
the rules, and each rule gets its own time limit. Duplicates are harmless — every task here is
idempotent and the exactly-once guarantees live in database constraints, not in the queue.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from celery import shared_task
from django.conf import settings

from kriyplatform.errors import SpanStoreUnavailable
from kriyplatform.locks import task_lock

log = logging.getLogger(__name__)


@shared_task(
    name="alerts.evaluate_all",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=50,
    time_limit=60,
)
def evaluate_all_task() -> dict[str, Any]:
    """Queue one evaluation per rule, and re-queue deliveries whose task was lost."""
    from apps.alerts import services

    interval = float(settings.KRIY_ALERT_INTERVAL)
    with task_lock("alerts-evaluate-all", ttl=max(int(interval) - 5, 5)) as held:
        if not held:
            return {"skipped": "another evaluation pass is running"}
        rule_ids = services.rules_to_evaluate()
        for rule_id in rule_ids:
            # an evaluation that waited longer than two intervals is superseded by a newer one
            evaluate_rule_task.apply_async((rule_id,), expires=interval * 2)
        due = services.deliveries_due()
        services.deliveries_enqueue(due)
    return {"rules": len(rule_ids), "deliveries_resumed": len(due)}


@shared_task(
    name="alerts.evaluate_rule",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=50,
    time_limit=60,
)
def evaluate_rule_task(rule_id: int) -> dict[str, Any]:
    from apps.alerts.services import rule_evaluate

    try:
        return rule_evaluate(rule_id=rule_id).as_dict()
    except SpanStoreUnavailable as exc:
        # no retry: the next pass (a minute away) measures again, with fresher data
        log.warning("alert rule %s not evaluated: %s", rule_id, exc)
        return {"rule_id": rule_id, "skipped": "the span store is unavailable"}


@shared_task(
    bind=True,
    name="alerts.deliver",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=30,
    time_limit=40,
    max_retries=None,  # the attempt budget is counted on the Delivery row (MAX_ATTEMPTS)
)
def deliver_task(self: Any, delivery_id: int) -> dict[str, Any]:
    """One notification on one channel; retried with exponential backoff while retryable."""
    from apps.alerts.services import delivery_attempt

    attempt = delivery_attempt(delivery_id=delivery_id)
    if attempt.retry_in is not None:
        raise self.retry(countdown=attempt.retry_in)
    return attempt.as_dict()


@shared_task(
    name="alerts.weekly_digests",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=120,
    time_limit=150,
)
def weekly_digests_task() -> dict[str, Any]:
    """Queue one digest per organization for the last complete ISO week."""
    from apps.alerts.digest import digest_week, organizations_for_digest

    week = digest_week().isoformat()
    orgs = organizations_for_digest()
    for org_id in orgs:
        send_digest_task.delay(org_id, week)
    return {"organizations": len(orgs), "week_start": week}


@shared_task(
    bind=True,
    name="alerts.send_digest",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=300,
    time_limit=330,
    max_retries=5,
)
def send_digest_task(self: Any, org_id: int, week_start: str) -> dict[str, Any]:
    """Idempotent per (organization, week): a DigestSent row is claimed before sending."""
    from apps.alerts.digest import digest_send

    try:
        return digest_send(organization_id=org_id, week_start=date.fromisoformat(week_start))
    except Exception as exc:  # mail server down, span store down: try again later
        raise self.retry(exc=exc, countdown=300 * 2**self.request.retries) from exc
