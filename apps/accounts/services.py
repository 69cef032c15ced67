from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from apps.accounts.models import User
from kriyplatform.errors import AppError


def user_sign_up(
    *,
    email: str,
    password: str,
    name: str = "",
    organization_name: str = "",
    invitation_token: str | None = None,
) -> User:
    """Create a user; with no invitation they also get their own organization (as owner)."""
    from apps.orgs.services import invitation_accept, organization_create

    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password, name=name)
        if invitation_token:
            invitation_accept(token=invitation_token, user=user)
        else:
            organization_create(
                name=organization_name or f"{user.display_name}'s organization", owner=user
            )
    return user


def _throttle_key(email: str, ip: str) -> str:
    return f"kriy:login-fail:{email.lower()}:{ip}"


def login_is_locked(*, email: str, ip: str) -> bool:
    return (cache.get(_throttle_key(email, ip)) or 0) >= settings.KRIY_LOGIN_MAX_FAILURES


def login_failed(*, email: str, ip: str) -> None:
    key = _throttle_key(email, ip)
    if cache.add(key, 1, settings.KRIY_LOGIN_LOCK_SECONDS):
        return
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, settings.KRIY_LOGIN_LOCK_SECONDS)


def login_succeeded(*, email: str, ip: str) -> None:
    cache.delete(_throttle_key(email, ip))


def client_ip(request: Any) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def ensure_login_allowed(*, email: str, ip: str) -> None:
    if login_is_locked(email=email, ip=ip):
        minutes = max(1, settings.KRIY_LOGIN_LOCK_SECONDS // 60)
        raise AppError(
            f"Too many failed sign-ins. Try again in {minutes} minute(s).", status_code=429
        )
