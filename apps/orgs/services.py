"""Writes for organizations, members, invitations and projects."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.audit.services import audit_record
from apps.orgs.models import ROLE_RANK, Invitation, Membership, Organization, Project, Role
from kriyplatform.errors import AppError

INVITATION_DAYS = 7


def _unique_slug(model: Any, base: str, **scope: Any) -> str:
    root = (slugify(base) or "org")[:56]
    slug, n = root, 1
    while model.objects.filter(slug=slug, **scope).exists():
        n += 1
        slug = f"{root}-{n}"
    return slug


def organization_create(*, name: str, owner: Any, slug: str | None = None) -> Organization:
    name = name.strip()
    if not name:
        raise AppError("name: an organization needs a name", field="name")
    with transaction.atomic():
        org = Organization.objects.create(
            name=name[:120], slug=slug or _unique_slug(Organization, name)
        )
        Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
        project_create(organization=org, name="Default", actor=owner)
    return org


def project_create(
    *, organization: Organization, name: str, actor: Any = None, slug: str | None = None
) -> Project:
    name = name.strip()
    if not name:
        raise AppError("name: a project needs a name", field="name")
    slug = slug or _unique_slug(Project, name, organization=organization)
    try:
        with transaction.atomic():
            project = Project.objects.create(organization=organization, name=name[:120], slug=slug)
    except IntegrityError as exc:
        raise AppError(
            f"slug: a project '{slug}' already exists in this organization", field="slug"
        ) from exc
    audit_record(
        organization=organization, actor=actor, action="project.created", target=project.slug
    )
    return project


def organization_get_or_create(*, slug: str) -> Organization:
    org = Organization.objects.filter(slug=slug).first()
    if org is None:
        org = Organization.objects.create(name=slug.replace("-", " ").title(), slug=slug)
    return org


def project_get_or_create(*, organization: Organization, slug: str) -> Project:
    project = Project.objects.filter(organization=organization, slug=slug).first()
    if project is None:
        project = project_create(
            organization=organization, name=slug.replace("-", " ").title(), slug=slug
        )
    return project


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(
    *, organization: Organization, email: str, role: str, invited_by: Any
) -> tuple[Invitation, str]:
    """An invitation and its one-time token (the link is shown once to the inviter)."""
    if role not in Role.values:
        raise AppError(f"role: must be one of {', '.join(Role.values)}", field="role")
    if role == Role.OWNER:
        raise AppError("role: invite as admin, then transfer ownership", field="role")
    email = email.strip().lower()
    if organization.memberships.filter(user__email=email).exists():
        raise AppError(f"email: {email} is already a member", field="email")
    token = secrets.token_urlsafe(32)
    inv = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=_token_hash(token),
        invited_by=invited_by,
        expires_at=timezone.now() + timedelta(days=INVITATION_DAYS),
    )
    audit_record(
        organization=organization,
        actor=invited_by,
        action="member.invited",
        target=email,
        detail={"role": role},
    )
    return inv, token


def invitation_by_token(token: str) -> Invitation | None:
    inv = (
        Invitation.objects.select_related("organization")
        .filter(token_hash=_token_hash(token))
        .first()
    )
    return inv if inv and inv.is_pending else None


def invitation_accept(*, token: str, user: Any) -> Membership:
    inv = invitation_by_token(token)
    if inv is None:
        raise AppError("this invitation link is invalid, expired or already used", field="token")
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            organization=inv.organization, user=user, defaults={"role": inv.role}
        )
        inv.accepted_at = timezone.now()
        inv.save(update_fields=["accepted_at"])
    if created:
        audit_record(
            organization=inv.organization,
            actor=user,
            action="member.joined",
            target=user.email,
            detail={"role": inv.role},
        )
    return membership


def invitation_revoke(*, invitation: Invitation, actor: Any) -> None:
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record(
        organization=invitation.organization,
        actor=actor,
        action="member.invitation_revoked",
        target=invitation.email,
    )


def member_set_role(
    *, membership: Membership, role: str, actor_membership: Membership
) -> Membership:
    if role not in Role.values:
        raise AppError(f"role: must be one of {', '.join(Role.values)}", field="role")
    if ROLE_RANK[Role(role)] > ROLE_RANK[Role(actor_membership.role)]:
        raise AppError("role: you cannot grant a role above your own", field="role")
    if (
        membership.role == Role.OWNER
        and role != Role.OWNER
        and _owner_count(membership.organization) <= 1
    ):
        raise AppError("role: an organization keeps at least one owner", field="role")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        organization=membership.organization,
        actor=actor_membership.user,
        action="member.role_changed",
        target=membership.user.email,
        detail={"from": old, "to": role},
    )
    return membership


def member_remove(*, membership: Membership, actor_membership: Membership) -> None:
    if membership.role == Role.OWNER and _owner_count(membership.organization) <= 1:
        raise AppError("member: an organization keeps at least one owner", field="member")
    if ROLE_RANK[Role(membership.role)] > ROLE_RANK[Role(actor_membership.role)]:
        raise AppError("member: you cannot remove someone with a higher role", field="member")
    email = membership.user.email
    org = membership.organization
    membership.delete()
    audit_record(
        organization=org, actor=actor_membership.user, action="member.removed", target=email
    )


def _owner_count(org: Organization) -> int:
    return org.memberships.filter(role=Role.OWNER).count()


def organization_update_retention(
    *, organization: Organization, retention_days: int, actor: Any
) -> Organization:
    if not 1 <= retention_days <= 3650:
        raise AppError("retention_days: must be between 1 and 3650", field="retention_days")
    old = organization.retention_days
    organization.retention_days = retention_days
    organization.save(update_fields=["retention_days"])
    audit_record(
        organization=organization,
        actor=actor,
        action="organization.retention_changed",
        detail={"from": old, "to": retention_days},
    )
    return organization
