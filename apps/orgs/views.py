from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_create, api_key_revoke
from apps.audit.models import AuditEvent
from apps.orgs import services
from apps.orgs.forms import ApiKeyForm, InviteForm, ProjectForm, RetentionForm, RoleForm
from apps.orgs.models import Invitation, Membership, Project, Role
from apps.orgs.tenancy import org_page, project_page
from kriyplatform.errors import AppError


@org_page()
def org_home(request: HttpRequest) -> HttpResponse:
    project = request.tenant.scoped(Project).order_by("created_at").first()
    if project is None:
        return redirect("orgs:projects", request.tenant.organization.slug)
    return redirect("web:overview", request.tenant.organization.slug, project.slug)


@org_page()
@require_http_methods(["GET", "POST"])
def projects(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    form = ProjectForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if not t.can(Role.ADMIN):
            raise Http404
        if form.is_valid():
            try:
                p = services.project_create(
                    organization=t.organization, name=form.cleaned_data["name"], actor=request.user
                )
            except AppError as exc:
                form.add_error("name", exc.message)
            else:
                messages.success(
                    request, f"Project “{p.name}” created. Create an API key to send spans to it."
                )
                return redirect("orgs:keys", t.organization.slug, p.slug)
        status = 400
    return render(
        request, "orgs/projects.html", {"form": form, "projects": t.scoped(Project)}, status=status
    )


@org_page()
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    form = InviteForm(request.POST or None)
    invite_link = None
    status = 200
    if request.method == "POST":
        if not t.can(Role.ADMIN):
            raise Http404
        if form.is_valid():
            try:
                _inv, token = services.invitation_create(
                    organization=t.organization,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,
                )
            except AppError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
                status = 400
            else:
                invite_link = request.build_absolute_uri(reverse("orgs:invite", args=[token]))
                form = InviteForm()
        else:
            status = 400
    ctx = {
        "form": form,
        "invite_link": invite_link,
        "memberships": t.scoped(Membership).select_related("user").order_by("user__email"),
        "invitations": [i for i in t.scoped(Invitation) if i.is_pending],
        "role_choices": Role.choices,
        "can_admin": t.can(Role.ADMIN),
    }
    return render(request, "orgs/members.html", ctx, status=status)


@org_page(min_role=Role.ADMIN)
@require_POST
def member_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    t = request.tenant
    membership = t.get(Membership, pk=membership_id)
    form = RoleForm(request.POST)
    try:
        if not form.is_valid():
            raise AppError("role: choose owner, admin, member or viewer", field="role")
        services.member_set_role(
            membership=membership, role=form.cleaned_data["role"], actor_membership=t.membership
        )
        messages.success(request, f"{membership.user.email} is now {membership.role}.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("orgs:members", t.organization.slug)


@org_page(min_role=Role.ADMIN)
@require_POST
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    t = request.tenant
    membership = t.get(Membership, pk=membership_id)
    try:
        services.member_remove(membership=membership, actor_membership=t.membership)
        messages.success(request, "Member removed.")
    except AppError as exc:
        messages.error(request, exc.message)
    return redirect("orgs:members", t.organization.slug)


@org_page(min_role=Role.ADMIN)
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id: int) -> HttpResponse:
    t = request.tenant
    services.invitation_revoke(invitation=t.get(Invitation, pk=invitation_id), actor=request.user)
    messages.success(request, "Invitation revoked.")
    return redirect("orgs:members", t.organization.slug)


@require_http_methods(["GET", "POST"])
def invite(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.invitation_by_token(token)
    if invitation is None:
        return render(request, "orgs/invite.html", {"invalid": True}, status=404)
    if request.method == "POST" and request.user.is_authenticated:
        services.invitation_accept(token=token, user=request.user)
        messages.success(request, f"You joined {invitation.organization.name}.")
        return redirect("orgs:org-home", invitation.organization.slug)
    return render(request, "orgs/invite.html", {"invitation": invitation, "token": token})


@org_page()
@require_http_methods(["GET", "POST"])
def general(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    form = RetentionForm(
        request.POST or None, initial={"retention_days": t.organization.retention_days}
    )
    status = 200
    if request.method == "POST":
        if not t.can(Role.ADMIN):
            raise Http404
        if form.is_valid():
            services.organization_update_retention(
                organization=t.organization,
                retention_days=form.cleaned_data["retention_days"],
                actor=request.user,
            )
            messages.success(request, "Retention updated; it applies to spans stored from now on.")
            return redirect("orgs:general", t.organization.slug)
        status = 400
    events = t.scoped(AuditEvent)[:200] if t.can(Role.ADMIN) else []
    return render(
        request,
        "orgs/general.html",
        {"form": form, "events": events, "can_admin": t.can(Role.ADMIN)},
        status=status,
    )


@project_page()
@require_http_methods(["GET", "POST"])
def keys(request: HttpRequest) -> HttpResponse:
    t = request.tenant
    form = ApiKeyForm(request.POST or None)
    new_key = None
    status = 200
    if request.method == "POST":
        if not t.can(Role.ADMIN):
            raise Http404
        if form.is_valid():
            _key, new_key = api_key_create(
                project=t.project,
                scopes=form.cleaned_data["scopes"],
                name=form.cleaned_data["name"],
                created_by=request.user,
            )
            form = ApiKeyForm()
        else:
            status = 400
    ctx = {
        "form": form,
        "new_key": new_key,
        "keys": t.scoped(ApiKey),
        "can_admin": t.can(Role.ADMIN),
        "endpoint": request.build_absolute_uri("/").rstrip("/"),
    }
    return render(request, "orgs/keys.html", ctx, status=status)


@project_page(min_role=Role.ADMIN)
@require_POST
def key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    t = request.tenant
    key = t.get(ApiKey, pk=key_id)
    api_key_revoke(key=key, actor=request.user)
    messages.success(
        request, f"Key {key.masked} revoked. Requests with it are refused from now on."
    )
    return redirect("orgs:keys", t.organization.slug, t.project.slug)
