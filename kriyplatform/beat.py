"""Every periodic task, in one place."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab
from django.conf import settings


def beat_schedule() -> dict[str, dict[str, Any]]:
    return {
        "judge-pending": {
            "task": "detection.judge_pending",
            "schedule": settings.KRIY_DETECT_INTERVAL,
            "options": {"expires": max(settings.KRIY_DETECT_INTERVAL * 2, 10)},
        },
        "metrics-rollup": {
            "task": "metrics.rollup_recent",
            "schedule": settings.KRIY_ROLLUP_INTERVAL,
            "options": {"expires": settings.KRIY_ROLLUP_INTERVAL * 2},
        },
        "alerts-evaluate": {
            "task": "alerts.evaluate_all",
            "schedule": settings.KRIY_ALERT_INTERVAL,
            "options": {"expires": settings.KRIY_ALERT_INTERVAL * 2},
        },
        "weekly-digest": {
            "task": "alerts.weekly_digests",
            "schedule": crontab(minute=0, hour=8, day_of_week="mon"),
        },
    }
