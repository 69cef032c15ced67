"""The weekly digest: one email per organization and ISO week to its owners and admins.

At most one per (organization, week): a ``DigestSent`` row (unique) is claimed with a lease by one
conditional UPDATE before sending, and marked sent after; a second run, a duplicate task or a
retry finds it sent (or leased) and does nothing.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from django.core.mail import EmailMultiAlternatives, get_connection
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from apps.alerts.models import DigestSent
from apps.alerts.selectors import public_url
from apps.metrics.selectors import weekly_report
from apps.metrics.services import monday
from apps.orgs.models import Membership, Organization, Role

log = logging.getLogger(__name__)
LEASE = timedelta(minutes=10)


def digest_week(today: date | None = None) -> date:
    """The Monday of the last complete ISO week."""
    return monday(today or timezone.now().date()) - timedelta(weeks=1)


def digest_recipients(organization: Organization) -> list[str]:
    return sorted(
        Membership.objects.filter(
            organization=organization,
            role__in=[Role.OWNER, Role.ADMIN],
            user__is_active=True,
        )
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )


def _issue_row(issue: Any, org_slug: str, project_slug: str) -> dict[str, Any]:
    return {
        "type": issue.type,
        "agent": issue.agent,
        "span_name": issue.span_name,
        "url": public_url(reverse("web:issue", args=[org_slug, project_slug, issue.pk])),
    }


def digest_content(*, organization: Organization, week_start: date) -> dict[str, Any]:
    """Per project and agent: last week's issue rate, its change against the week before, new
    and regressed issues, with absolute links to the weekly report and the issues."""
    projects = []
    for project in organization.projects.order_by("name"):
        report = weekly_report(project_id=project.pk, week_start=week_start)
        if not report["agents"] and not report["new_issues"] and not report["regressed_issues"]:
            continue
        path = reverse("web:report", args=[organization.slug, project.slug])
        projects.append(
            {
                "name": project.name,
                "slug": project.slug,
                "report_url": public_url(f"{path}?week={week_start.isoformat()}"),
                "headline": report["headline"],
                "agents": [
                    {
                        "agent": a["agent"],
                        "traces": a["traces"],
                        "issue_rate": a["issue_rate"],
                        "improvement": a["improvement"],
                        "new_issues": a["new_issues"],
                        "regressed_issues": a["regressed_issues"],
                    }
                    for a in report["agents"]
                ],
                "new_issues": [
                    _issue_row(i, organization.slug, project.slug) for i in report["new_issues"]
                ],
                "regressed_issues": [
                    _issue_row(i, organization.slug, project.slug)
                    for i in report["regressed_issues"]
                ],
            }
        )
    return {
        "organization": organization,
        "week_start": week_start,
        "week_end": week_start + timedelta(days=6),
        "projects": projects,
    }


def digest_messages(
    *, organization: Organization, week_start: date, recipients: list[str]
) -> list[EmailMultiAlternatives]:
    ctx = digest_content(organization=organization, week_start=week_start)
    if not ctx["projects"]:
        return []
    subject = (
        f"[kriyplatform] {organization.name}: your agents in the week of {week_start:%d %b %Y}"
    )
    text = render_to_string("alerts/email/digest.txt", ctx)
    html = render_to_string("alerts/email/digest.html", ctx)
    out = []
    for to in recipients:  # one message each: recipients do not see each other's address
        msg = EmailMultiAlternatives(subject=subject, body=text, to=[to])
        msg.attach_alternative(html, "text/html")
        out.append(msg)
    return out


def digest_send(*, organization_id: int, week_start: date) -> dict[str, Any]:
    """Send the digest of this organization and week unless it was sent (or is being sent)."""
    week_start = monday(week_start)
    org = Organization.objects.filter(pk=organization_id).first()
    if org is None:
        return {"skipped": "the organization no longer exists"}
    row, _ = DigestSent.objects.get_or_create(organization=org, week_start=week_start)
    now = timezone.now()
    claimed = (
        DigestSent.objects.filter(pk=row.pk, sent_at__isnull=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE, attempts=F("attempts") + 1)
    )
    if not claimed:
        return {"skipped": "already sent or being sent", "week_start": week_start.isoformat()}
    try:
        recipients = digest_recipients(org)
        messages = digest_messages(organization=org, week_start=week_start, recipients=recipients)
        if messages:
            get_connection(fail_silently=False).send_messages(messages)
    except Exception as exc:
        DigestSent.objects.filter(pk=row.pk).update(lease_until=None, last_error=str(exc)[:500])
        raise
    DigestSent.objects.filter(pk=row.pk).update(
        sent_at=timezone.now(), recipients=len(messages), lease_until=None, last_error=""
    )
    return {
        "organization_id": org.pk,
        "week_start": week_start.isoformat(),
        "recipients": len(messages),
        "note": None if messages else "nothing to report",
    }


def organizations_for_digest() -> list[int]:
    return list(
        Organization.objects.filter(projects__isnull=False)
        .distinct()
        .order_by("pk")
        .values_list("pk", flat=True)
    )
