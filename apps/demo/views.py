from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from apps.accounts.models import User
from apps.demo.models import DemoSeed
from apps.demo.services import DEMO_EMAIL, DEMO_ORG


def demo_available() -> bool:
    return (
        bool(settings.KRIY_DEMO)
        and DemoSeed.objects.filter(
            organization__slug=DEMO_ORG, completed_at__isnull=False
        ).exists()
    )


@require_POST
def enter(request: HttpRequest) -> HttpResponse:
    """One click from the landing page into the seeded demo organization (embedded default only)."""
    user = User.objects.filter(email=DEMO_EMAIL).first()
    if user is None or not demo_available():
        raise Http404("no demo on this installation")
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("web:overview", DEMO_ORG, "agents")
