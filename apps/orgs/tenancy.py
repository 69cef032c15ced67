"""Tenant scoping in one place.

Every page and API resolves its organization and project here, from the URL (signed-in members)
or from the API key (one project per key). Anything another tenant owns answers 404, exactly like
something that does not exist. Views scope querysets with ``Tenant.scoped``; they never query
tenant models unscoped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.apikeys.auth import HasScope
from apps.apikeys.services import KeyPrincipal
from apps.orgs.models import Membership, Organization, Project, Role

# The least role a signed-in member needs for what a key scope allows.
SCOPE_ROLE = {"read": Role.VIEWER, "ingest": Role.MEMBER, "admin": Role.ADMIN}


@dataclass(slots=True)
class Tenant:
    organization: Organization
    project: Project | None = None
    membership: Membership | None = None
    principal: KeyPrincipal | None = None

    @property
    def project_id(self) -> int:
        if self.project is None:
            raise Http404("no project")
        return self.project.pk

    def can(self, role: str) -> bool:
        if self.membership is not None:
            return self.membership.at_least(role)
        if self.principal is not None:
            # A key acts inside its project: admin-level actions need the admin scope.
            return "admin" in self.principal.scopes if role in (Role.ADMIN, Role.OWNER) else True
        return False

    def scoped(self, model_or_qs: type[Model] | QuerySet) -> QuerySet:
        """The model's rows of this tenant: by project when the model has one, else organization."""
        qs = model_or_qs._default_manager.all() if isinstance(model_or_qs, type) else model_or_qs
        names = {f.name for f in qs.model._meta.get_fields()}
        if "project" in names:
            return qs.filter(project_id=self.project_id)
        if "organization" in names:
            return qs.filter(organization_id=self.organization.pk)
        raise TypeError(f"{qs.model.__name__} is not tenant data")

    def get(self, model_or_qs: type[Model] | QuerySet, **lookup: Any) -> Any:
        obj = self.scoped(model_or_qs).filter(**lookup).first()
        if obj is None:
            raise Http404("not found")
        return obj


def membership_for(user: Any, org_slug: str) -> Membership:
    if not getattr(user, "is_authenticated", False) or not getattr(user, "pk", None):
        raise Http404("not found")
    m = (
        Membership.objects.select_related("organization")
        .filter(user_id=user.pk, organization__slug=org_slug)
        .first()
    )
    if m is None:
        raise Http404("not found")
    return m


def tenant_for_member(
    user: Any, org_slug: str, project_slug: str | None = None, *, min_role: str = Role.VIEWER
) -> Tenant:
    m = membership_for(user, org_slug)
    if not m.at_least(min_role):
        raise Http404("not found")
    project = None
    if project_slug is not None:
        project = Project.objects.filter(
            organization_id=m.organization_id, slug=project_slug
        ).first()
        if project is None:
            raise Http404("not found")
        project.organization = m.organization
    return Tenant(organization=m.organization, project=project, membership=m)


def tenant_for_key(principal: KeyPrincipal) -> Tenant:
    project = Project.objects.select_related("organization").get(pk=principal.project_id)
    return Tenant(organization=project.organization, project=project, principal=principal)


class ProjectApiView(APIView):
    """Base of every project API: ``self.tenant`` from the key, or from ``?project=org/project``
    for a signed-in member. ``required_scope`` is the key scope (or the matching member role)."""

    required_scope = "read"
    permission_classes = [HasScope]
    tenant: Tenant

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        self.tenant = resolve_api_tenant(request, self.required_scope)


def resolve_api_tenant(request: Request, scope: str) -> Tenant:
    if isinstance(request.auth, KeyPrincipal):
        return tenant_for_key(request.auth)
    ref = request.query_params.get("project") or request.headers.get("X-Kriy-Project", "")
    org_slug, _, project_slug = ref.partition("/")
    if not org_slug or not project_slug:
        from kriyplatform.errors import AppError

        raise AppError(
            "project: give ?project=<org-slug>/<project-slug> when signed in", field="project"
        )
    return tenant_for_member(request.user, org_slug, project_slug, min_role=SCOPE_ROLE[scope])


def project_page(
    min_role: str = Role.VIEWER,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A page under /o/<org_slug>/p/<project_slug>/: sets ``request.tenant`` or answers 404."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(
            request: HttpRequest, org_slug: str, project_slug: str, *args: Any, **kwargs: Any
        ) -> HttpResponse:
            from django.contrib.auth.views import redirect_to_login

            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            request.tenant = tenant_for_member(
                request.user, org_slug, project_slug, min_role=min_role
            )  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def org_page(
    min_role: str = Role.VIEWER,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A page under /o/<org_slug>/: sets ``request.tenant`` (no project) or answers 404."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, org_slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            from django.contrib.auth.views import redirect_to_login

            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            request.tenant = tenant_for_member(request.user, org_slug, min_role=min_role)  # type: ignore[attr-defined]
            return view(request, *args, **kwargs)

        return wrapper

    return decorate
