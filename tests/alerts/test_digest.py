"""The weekly digest: content per project and agent, absolute links, owners and admins only,
and exactly one email per organization and week even when the task runs twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

from apps.accounts.models import User
from apps.alerts.digest import digest_send, digest_week
from apps.alerts.models import DigestSent
from apps.alerts.tasks import send_digest_task, weekly_digests_task
from apps.issues.models import IssueEvent
from apps.metrics.services import rollup_days
from apps.orgs.models import Membership, Role
from tests.alerts.conftest import ingest, recent_trace

pytestmark = pytest.mark.django_db

EVIL = "<script>alert(1)</script>"


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.KRIY_PUBLIC_URL = "https://kriy.example"


def _at(day) -> float:
    """Seconds ago of 10:00 UTC on ``day``: recent_trace places traces relative to now."""
    t = datetime(day.year, day.month, day.day, 10, tzinfo=UTC)
    return (datetime.now(UTC) - t).total_seconds()


@pytest.fixture
def two_weeks(tenant_a):
    """support: 3 of 4 traces with issues the week before last, 2 of 4 last week (improved by a
    third); an agent with a hostile name; one new issue recorded last week."""
    week = digest_week()
    before = week - timedelta(weeks=1)
    spans = []
    for outcome in ("failed", "failed", "defective", "clean"):
        spans += recent_trace("support", outcome, ago_s=_at(before + timedelta(days=1)))
    for outcome in ("failed", "defective", "clean", "clean"):
        spans += recent_trace("support", outcome, ago_s=_at(week + timedelta(days=2)))
    spans += recent_trace(EVIL, "clean", ago_s=_at(week + timedelta(days=3)))
    ingest(tenant_a, spans)
    rollup_days(
        project_id=tenant_a.project.pk,
        days=[before + timedelta(days=1), week + timedelta(days=2), week + timedelta(days=3)],
    )
    IssueEvent.objects.filter(project=tenant_a.project, kind="new").update(
        at=datetime(week.year, week.month, week.day, 12, tzinfo=UTC) + timedelta(days=2)
    )
    admin = User.objects.create_user("admin@acme.example", "correct horse battery")
    Membership.objects.create(organization=tenant_a.org, user=admin, role=Role.ADMIN)
    viewer = User.objects.create_user("viewer@acme.example", "correct horse battery")
    Membership.objects.create(organization=tenant_a.org, user=viewer, role=Role.VIEWER)
    return tenant_a, week


def test_digest_goes_once_to_owners_and_admins_with_rates_changes_and_links(two_weeks) -> None:
    tenant, week = two_weeks
    weekly_digests_task.delay()
    assert sorted(m.to[0] for m in mail.outbox) == ["admin@acme.example", "owner@acme.example"]
    msg = mail.outbox[0]
    assert msg.subject == f"[kriyplatform] Acme: your agents in the week of {week:%d %b %Y}"
    text = msg.body
    report = f"https://kriy.example/o/acme/p/{tenant.project.slug}/report/?week={week.isoformat()}"
    assert report in text
    assert "- support: issue rate 50.0 % over 4 traces, improved 33.3 %; 1 new" in text
    assert (
        f"- {EVIL}: issue rate 0.0 % over 1 trace, no comparison" in text
    )  # plain text is not HTML
    assert (
        "New issues:\n- partial_result_used on crm.lookup (support): https://kriy.example/o/"
        in text
    )
    html, mime = msg.alternatives[0]
    assert mime == "text/html"
    assert f'href="{report}"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and EVIL not in html
    assert "<td>support</td>" in html and "improved 33.3 %" in html

    weekly_digests_task.delay()  # beat fired twice, or a redelivered message
    send_digest_task.delay(tenant.org.pk, week.isoformat())
    assert len(mail.outbox) == 2
    row = DigestSent.objects.get(organization=tenant.org)
    assert (row.week_start, row.recipients, row.attempts) == (week, 2, 1)
    assert row.sent_at is not None


def test_a_failed_send_is_retried_and_then_sent_once(two_weeks, settings) -> None:
    tenant, week = two_weeks
    settings.EMAIL_BACKEND = "tests.alerts.test_digest.BrokenBackend"
    with pytest.raises(ConnectionError):
        digest_send(organization_id=tenant.org.pk, week_start=week)
    row = DigestSent.objects.get(organization=tenant.org)
    assert row.sent_at is None and row.lease_until is None and "SMTP down" in row.last_error
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert digest_send(organization_id=tenant.org.pk, week_start=week)["recipients"] == 2
    assert digest_send(organization_id=tenant.org.pk, week_start=week)["skipped"]
    assert len(mail.outbox) == 2


def test_an_organization_without_traffic_gets_no_digest(tenant_b) -> None:
    result = digest_send(organization_id=tenant_b.org.pk, week_start=digest_week())
    assert result["note"] == "nothing to report"
    assert mail.outbox == []
    assert DigestSent.objects.get(organization=tenant_b.org).sent_at is not None


class BrokenBackend:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def send_messages(self, messages):
        raise ConnectionError("SMTP down")
