from __future__ import annotations

from typing import Any

from apps.audit.models import AuditEvent


def audit_record(
    *,
    organization: Any,
    actor: Any,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. ``actor`` is a user, or None for the system / a command."""
    label = getattr(actor, "email", None) or (str(actor) if actor else "system")
    user = actor if getattr(actor, "pk", None) and hasattr(actor, "email") else None
    return AuditEvent.objects.create(
        organization=organization,
        actor=user,
        actor_label=label,
        action=action,
        target=target,
        detail=detail or {},
    )
