"""DRF authentication by ``Authorization: Bearer kp_…`` and the scope permission."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from apps.apikeys.services import KeyPrincipal, api_key_authenticate, api_key_is_revoked


def bearer_token(request: Any) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header:
        return None
    kind, _, value = header.partition(" ")
    if kind.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


class KeyUser:
    """The request.user of a key-authenticated request."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    pk = None
    id = None
    email = ""

    def __init__(self, principal: KeyPrincipal):
        self.principal = principal

    def __str__(self) -> str:
        return f"api key {self.principal.key_id}"


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[KeyUser, KeyPrincipal] | None:
        raw = bearer_token(request)
        if raw is None:
            return None
        principal = api_key_authenticate(raw)
        if principal is None:
            if api_key_is_revoked(raw):
                raise exceptions.PermissionDenied("this API key was revoked")
            raise exceptions.AuthenticationFailed("unknown API key")
        return KeyUser(principal), principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="kriyplatform"'


class HasScope(permissions.BasePermission):
    """Key requests need the view's ``required_scope``; members need a role that allows it."""

    message = "this API key lacks the required scope"

    def has_permission(self, request: Request, view: Any) -> bool:
        scope = getattr(view, "required_scope", "read")
        principal = request.auth if isinstance(request.auth, KeyPrincipal) else None
        if principal is not None:
            if scope not in principal.scopes:
                self.message = f"this API key lacks the '{scope}' scope"
                return False
            return True
        return bool(request.user and request.user.is_authenticated)
