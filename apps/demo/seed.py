"""First-run demo: an organization with eight weeks of realistic traffic, sent through the real
ingest API by the server to itself, judged by the real judge. Idempotent; off with KRIY_DEMO=0."""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlparse

from django.db import close_old_connections, connection, transaction
from django.utils import timezone

log = logging.getLogger(__name__)
WEEKS = 8
TRACES_PER_WEEK = 600


def _wait_ready(base_url: str, timeout: float = 120) -> bool:
    u = urlparse(base_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def seed_demo(
    base_url: str, out: Callable[[str], None] = print, traces_per_week: int = TRACES_PER_WEEK
) -> bool:
    """Seed the demo organization once. Returns True when it seeded now."""
    from apps.accounts.models import User
    from apps.apikeys.services import api_key_create
    from apps.demo.models import DemoSeed
    from apps.demo.services import DEMO_EMAIL, DEMO_ORG, DEMO_PASSWORD
    from apps.demo.simulate import WEEK_NS, Sender, backfill
    from apps.demo.traffic import CONTRACTS
    from apps.detection.services import contracts_put, judge_pending
    from apps.metrics.services import rollup_pending
    from apps.orgs.models import Membership, Organization, Role
    from apps.orgs.services import project_get_or_create

    with transaction.atomic():
        org = Organization.objects.filter(slug=DEMO_ORG).first()
        if org is None:
            org = Organization.objects.create(name="Demo: Acme Support AI", slug=DEMO_ORG)
        seed, _ = DemoSeed.objects.get_or_create(organization=org)
        if seed.completed_at:
            return False
        user = User.objects.filter(email=DEMO_EMAIL).first() or User.objects.create_user(
            DEMO_EMAIL, DEMO_PASSWORD, name="Demo"
        )
        Membership.objects.get_or_create(organization=org, user=user, defaults={"role": Role.OWNER})
        project = project_get_or_create(organization=org, slug="agents")
        project.name = "Production agents"
        project.save(update_fields=["name"])
        contracts_put(project=project, document=CONTRACTS)
        _key, raw = api_key_create(
            project=project, scopes=["ingest", "read"], name="demo traffic (seeded)"
        )
    out(f"Seeding the demo organization: {WEEKS} weeks of agent traffic through the ingest API…")
    sender = Sender(base_url, raw, fmt="native")
    end = time.time_ns()
    start = end - WEEKS * WEEK_NS

    def week_done(w: int) -> None:
        if w != WEEKS - 2:
            return
        # Before the last week: judge, and record the fixes the team made (so the last week
        # shows a regression of the tool loop and a resolved handoff issue).
        judge_pending(settle_seconds=0)
        _resolve_fixed(project.pk, start)

    stats = backfill(
        sender,
        weeks=WEEKS,
        traces_per_week=traces_per_week,
        until_ns=end,
        seed=11,
        week_done=week_done,
    )
    judge_pending(settle_seconds=0)
    rollup_pending()
    DemoSeed.objects.filter(pk=seed.pk).update(completed_at=timezone.now(), spans=stats.accepted)
    out(
        f"Demo ready: {stats.accepted:,} spans. Sign in at {base_url}/ as {DEMO_EMAIL} / {DEMO_PASSWORD} (or click “Explore the demo”)."
    )
    return True


def _resolve_fixed(project_id: int, start_ns: int) -> None:
    """Mark the issues of the defects the demo team fixed as resolved at the time of the fix."""
    from apps.demo.simulate import WEEK_NS
    from apps.issues.models import Issue, IssueEvent, IssueStatus

    fixes = {"handoff_constraint_dropped": int(WEEKS * 2 / 3), "tool_loop": int(WEEKS * 0.35)}
    for issue_type, week in fixes.items():
        at = datetime.fromtimestamp((start_ns + week * WEEK_NS) / 1e9, tz=UTC)
        for issue in Issue.objects.filter(
            project_id=project_id, type=issue_type, status=IssueStatus.OPEN
        ):
            Issue.objects.filter(pk=issue.pk).update(status=IssueStatus.RESOLVED, resolved_at=at)
            IssueEvent.objects.create(
                issue=issue,
                project_id=project_id,
                kind=IssueEvent.Kind.RESOLVED,
                actor="demo team",
                at=at,
            )


def seed_in_background(base_url: str, out: Callable[[str], None] = print) -> threading.Thread:
    def run() -> None:
        try:
            if _wait_ready(base_url) and not seed_demo(base_url, out):
                from apps.demo.services import demo_sign_in_hint

                out(f"Demo organization ready. {demo_sign_in_hint()}")
        except Exception:
            log.exception(
                "demo seeding failed; the platform works without it (KRIY_DEMO=0 turns it off)"
            )
        finally:
            close_old_connections()
            connection.close()

    t = threading.Thread(target=run, name="demo-seed", daemon=True)
    t.start()
    return t
