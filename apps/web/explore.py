"""Explore pages: traces, trace waterfall, span detail, sessions, issues."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.orgs.tenancy import project_page


def _pending(request: HttpRequest, title: str) -> HttpResponse:
    return render(request, "web/pending.html", {"title": title})


@project_page()
def traces(request: HttpRequest) -> HttpResponse:
    return _pending(request, "Traces")


@project_page()
def trace(request: HttpRequest, trace_id: str) -> HttpResponse:
    return _pending(request, "Trace")


@project_page()
def span(request: HttpRequest, trace_id: str, span_id: str) -> HttpResponse:
    return _pending(request, "Span")


@project_page()
def sessions(request: HttpRequest) -> HttpResponse:
    return _pending(request, "Sessions")


@project_page()
def session(request: HttpRequest, session_id: str) -> HttpResponse:
    return _pending(request, "Session")


@project_page()
def issues(request: HttpRequest) -> HttpResponse:
    return _pending(request, "Issues")


@project_page()
def issue(request: HttpRequest, issue_id: int) -> HttpResponse:
    return _pending(request, "Issue")


@project_page()
def issue_status(request: HttpRequest, issue_id: int) -> HttpResponse:
    return _pending(request, "Issue")
