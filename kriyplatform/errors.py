"""One application error type, and the handlers that turn errors into clear responses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404

if TYPE_CHECKING:
    from rest_framework.response import Response

log = logging.getLogger(__name__)


class AppError(Exception):
    """A request the platform refuses, with a message naming the field and the rule."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


class NotFound(AppError):
    status_code = 404


class SpanStoreUnavailable(Exception):
    """The span store (chDB / ClickHouse) cannot take or serve rows right now."""

    retry_after = 5


RELATIONAL_OUTAGE = (OperationalError, InterfaceError)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: DRF imports this module while loading its settings.
    from rest_framework import exceptions, status
    from rest_framework.response import Response
    from rest_framework.views import exception_handler

    if isinstance(exc, AppError):
        return Response(exc.as_dict(), status=exc.status_code)
    if isinstance(exc, SpanStoreUnavailable):
        return Response(
            {"error": "the span store is unavailable; retry later"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, RELATIONAL_OUTAGE):
        log.warning("relational database unavailable: %s", exc)
        return Response(
            {"error": "the database is unavailable; retry later"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )
    if isinstance(exc, Http404):
        return Response({"error": "not found"}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, exceptions.ValidationError):
        return Response({"error": _flatten(exc.detail), "fields": exc.detail}, status=400)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    if response is None and isinstance(exc, DatabaseError):
        log.exception("database error")
    return response


def _flatten(detail: Any, prefix: str = "") -> str:
    if isinstance(detail, dict):
        parts = [
            _flatten(v, f"{prefix}{k}: " if not prefix else f"{prefix}{k}.")
            for k, v in detail.items()
        ]
        return "; ".join(p for p in parts if p)
    if isinstance(detail, list):
        return "; ".join(_flatten(v, prefix) for v in detail)
    return f"{prefix}{detail}"
