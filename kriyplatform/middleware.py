"""Cross-cutting HTTP behaviour: security headers and 503 (not 500) when a store is down."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from kriyplatform.errors import RELATIONAL_OUTAGE, SpanStoreUnavailable

log = logging.getLogger(__name__)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        csp = settings.KRIY_CSP
        if request.path.startswith("/api/docs/"):
            # Swagger UI sets inline styles; its scripts stay restricted to 'self'
            csp = csp.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
        response.headers.setdefault("Content-Security-Policy", csp)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        return response


class ServiceUnavailableMiddleware:
    """A store outage is a 503 with Retry-After, for pages and APIs alike."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, SpanStoreUnavailable):
            what = "span store"
        elif isinstance(exc, RELATIONAL_OUTAGE):
            what = "database"
        else:
            return None
        log.warning("%s unavailable while serving %s: %s", what, request.path, exc)
        if request.path.startswith(("/api/", "/v1/")):
            response: HttpResponse = JsonResponse(
                {"error": f"the {what} is unavailable; retry later"}, status=503
            )
        else:
            # rendered without the request: context processors would need the database
            response = HttpResponse(render_to_string("503.html", {"what": what}), status=503)
        response["Retry-After"] = "5"
        return response
