"""The first-run demo and the traffic simulator, through the real ingest API over HTTP."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from apps.demo.models import DemoSeed
from apps.demo.seed import seed_demo
from apps.demo.services import DEMO_EMAIL
from apps.detection.services import judge_pending
from apps.issues.models import Issue
from apps.metrics.selectors import agents_weeks
from apps.orgs.models import Organization


@pytest.mark.django_db(transaction=True)
def test_demo_is_seeded_once_through_the_api_and_tells_an_improvement_story(
    live_server, settings
) -> None:
    settings.KRIY_DEMO = True
    out: list[str] = []
    assert seed_demo(live_server.url, out.append, traces_per_week=60) is True
    assert any("Demo ready" in line and DEMO_EMAIL in line for line in out)
    org = Organization.objects.get(slug="demo")
    project = org.projects.get(slug="agents")
    seed = DemoSeed.objects.get(organization=org)
    assert seed.completed_at is not None and seed.spans > 1000

    weeks = agents_weeks(project_id=project.pk, weeks=9)
    assert set(weeks) == {"support", "planner", "orchestrator", "research"}
    rates = [
        w["issue_rate"] for rows in weeks.values() for w in rows[:3] if w["issue_rate"] is not None
    ]
    late = [
        w["issue_rate"] for rows in weeks.values() for w in rows[-3:] if w["issue_rate"] is not None
    ]
    assert sum(late) / len(late) < sum(rates) / len(rates)  # the loop improves
    statuses = set(Issue.objects.filter(project=project).values_list("status", flat=True))
    assert {"open", "resolved", "regressed"} <= statuses

    assert seed_demo(live_server.url, out.append, traces_per_week=60) is False  # idempotent
    assert DemoSeed.objects.count() == 1

    # one click from the landing page into the demo
    c = Client()
    assert "Explore the demo" in c.get("/").content.decode()
    resp = c.post("/demo/enter/")
    assert resp.status_code == 302 and resp["Location"] == "/o/demo/p/agents/"


@pytest.mark.django_db(transaction=True)
def test_demo_entry_is_404_when_the_demo_is_off(live_server, settings) -> None:
    settings.KRIY_DEMO = False
    assert "Explore the demo" not in Client().get("/").content.decode()
    assert Client().post("/demo/enter/").status_code == 404


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", ["native", "otlp"])
def test_simulate_backfills_weeks_over_http(live_server, tenant_a, fmt, capsys) -> None:
    call_command(
        "simulate",
        "--url",
        live_server.url,
        "--key",
        tenant_a.ingest_key,
        "--weeks",
        "2",
        "--traces-per-week",
        "30",
        "--format",
        fmt,
    )
    out = capsys.readouterr().out
    assert "done:" in out and "0 failed" in out
    judge_pending(settle_seconds=0)
    traces = tenant_a.api().get("/api/v1/traces", {"limit": 500}).json()["traces"]
    assert len(traces) == 60
    assert {t["agent"] for t in traces} <= {"support", "planner", "orchestrator", "research"}


@pytest.mark.django_db(transaction=True)
def test_simulate_live_traffic_at_a_rate(live_server, tenant_a, capsys) -> None:
    call_command(
        "simulate",
        "--url",
        live_server.url,
        "--key",
        tenant_a.ingest_key,
        "--rate",
        "2000/s",
        "--duration",
        "2",
        "--batch",
        "200",
    )
    out = capsys.readouterr().out
    assert "done:" in out
    usage = tenant_a.api().get("/api/v1/usage").json()
    assert 1000 <= usage["spans"] <= 6000


def test_simulate_refuses_a_bad_url(db) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--url"):
        call_command("simulate", "--url", "ftp://x", "--key", "kp_x")
