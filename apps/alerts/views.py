"""Alert rule and notification channel pages."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.orgs.tenancy import project_page


@project_page()
def rules(request: HttpRequest) -> HttpResponse:
    return render(request, "web/pending.html", {"title": "Alerts"})
