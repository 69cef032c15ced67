"""A real Celery worker on the Redis of these machines runs the judge and rollup tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker

from apps.detection.tasks import judge_pending_task
from apps.metrics.models import AgentRollup
from apps.metrics.tasks import rollup_recent_task
from kriyplatform.celery import app
from tests.conftest import reset_celery_connections
from tests.factories import post_spans, span, trace_id

REDIS = "redis://127.0.0.1:6379/14"


@pytest.fixture
def redis_worker(settings) -> Iterator[None]:
    settings.KRIY_DETECT_SETTLE_SECONDS = 0
    old = {
        k: app.conf.get(k)
        for k in ("broker_url", "result_backend", "task_always_eager", "task_ignore_result")
    }
    app.conf.update(
        broker_url=REDIS, result_backend=REDIS, task_always_eager=False, task_ignore_result=False
    )
    reset_celery_connections()
    for task in (judge_pending_task, rollup_recent_task):
        task.ignore_result = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            yield
    finally:
        app.conf.update(old)
        for task in (judge_pending_task, rollup_recent_task):
            task.ignore_result = True
        reset_celery_connections()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_on_redis_judges_new_traces_and_rolls_them_up(tenant_a, redis_worker) -> None:
    tid = trace_id()
    root = span(trace_id=tid, agent="support", start_time=0, end_time=1000)
    partial = span(
        trace_id=tid,
        parent_span_id=root["span_id"],
        name="crm.lookup",
        kind="tool",
        start_time=10,
        end_time=20,
        attributes={"kriy.result.partial": True},
    )
    after = span(
        trace_id=tid, parent_span_id=root["span_id"], name="draft", start_time=30, end_time=40
    )
    api = tenant_a.api()
    assert post_spans(api, [root, partial, after]).status_code == 200

    result = judge_pending_task.delay().get(timeout=120)
    assert result["traces"] >= 1 and result["findings"] >= 1
    assert api.get(f"/api/v1/traces/{tid}").json()["outcome"] == "defective"

    rollup_recent_task.delay().get(timeout=120)
    week = AgentRollup.objects.get(project=tenant_a.project, agent="support", period="week")
    assert (week.traces, week.defective, week.findings) == (1, 1, 1)
    # re-running the pass on a real worker changes nothing
    judge_pending_task.delay().get(timeout=120)
    rollup_recent_task.delay().get(timeout=120)
    week.refresh_from_db()
    assert (week.traces, week.defective, week.findings) == (1, 1, 1)
