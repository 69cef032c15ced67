from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from kriyplatform.clickhouse.client import ch_system
from kriyplatform.errors import RELATIONAL_OUTAGE


def healthz(request: HttpRequest) -> HttpResponse:
    """200 when both stores answer; 503 naming the one that does not."""
    checks = {}
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT 1")
        checks["database"] = "ok"
    except RELATIONAL_OUTAGE as exc:
        checks["database"] = f"unavailable: {exc}"
    try:
        ch_system("SELECT 1 AS ok")
        checks["span_store"] = "ok"
    except Exception as exc:  # any failure of the span store makes the process not ready
        checks["span_store"] = f"unavailable: {exc}"
    ok = all(v == "ok" for v in checks.values())
    resp = JsonResponse(
        {"status": "ok" if ok else "unavailable", **checks}, status=200 if ok else 503
    )
    if not ok:
        resp["Retry-After"] = "5"
    return resp


def landing(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        from apps.orgs.models import Membership

        m = (
            Membership.objects.filter(user_id=request.user.pk)
            .select_related("organization")
            .order_by("created_at")
            .first()
        )
        if m is not None:
            return redirect("orgs:org-home", m.organization.slug)
    from apps.accounts.forms import SignInForm
    from apps.demo.views import demo_available

    return render(request, "accounts/signin.html", {"form": SignInForm(), "demo": demo_available()})


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"error": "not found"}, status=404)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(("/api/", "/v1/")):
        return JsonResponse({"error": "internal error; it was logged"}, status=500)
    return render(request, "500.html", status=500)
