"""The Celery application. Beat entries live in ``kriyplatform.beat`` (one module)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kriyplatform.settings")

app = Celery("kriyplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _install_beat_schedule(sender: Celery, **_: object) -> None:
    from kriyplatform.beat import beat_schedule

    sender.conf.beat_schedule = beat_schedule()
