"""Dashboard pages: project overview, weekly report, agent page, contracts editor."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.orgs.tenancy import project_page


def _pending(request: HttpRequest, title: str) -> HttpResponse:
    return render(request, "web/pending.html", {"title": title})


@project_page()
def overview(request: HttpRequest) -> HttpResponse:
    return _pending(request, "Overview")


@project_page()
def report(request: HttpRequest) -> HttpResponse:
    return _pending(request, "Weekly report")


@project_page()
def agent(request: HttpRequest, agent: str) -> HttpResponse:
    return _pending(request, "Agent")


@project_page()
def contracts(request: HttpRequest) -> HttpResponse:
    return _pending(request, "Agent contracts")
