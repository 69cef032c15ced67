from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def tenancy(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's organizations (for the switcher) and the current tenant, if any."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not getattr(user, "pk", None):
        return {}
    from apps.orgs.models import Membership

    memberships = list(
        Membership.objects.filter(user_id=user.pk)
        .select_related("organization")
        .order_by("organization__name")
    )
    return {"my_memberships": memberships, "tenant": getattr(request, "tenant", None)}
