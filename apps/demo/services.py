"""Demo organization seeded on first run (see apps.demo.seed)."""

from __future__ import annotations

DEMO_EMAIL = "demo@kriyplatform.local"
DEMO_PASSWORD = "explore-the-demo"  # noqa: S105 - a published demo credential, not a secret
DEMO_ORG = "demo"


def demo_sign_in_hint() -> str:
    from django.conf import settings

    from apps.accounts.models import User

    if not settings.KRIY_DEMO or not User.objects.filter(email=DEMO_EMAIL).exists():
        return ""
    return (
        f"Sign in as {DEMO_EMAIL} with password {DEMO_PASSWORD} to explore the demo organization."
    )
