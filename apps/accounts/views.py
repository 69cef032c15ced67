from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import services
from apps.accounts.forms import SignInForm, SignUpForm
from apps.orgs.services import invitation_by_token
from kriyplatform.errors import AppError


def _next_url(request: HttpRequest) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    if nxt and url_has_allowed_host_and_scheme(
        nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return nxt
    return ""


@require_http_methods(["GET", "POST"])
def signin(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.method == "GET":
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignInForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            email, ip = form.cleaned_data["email"].lower(), services.client_ip(request)
            try:
                services.ensure_login_allowed(email=email, ip=ip)
            except AppError as exc:
                form.add_error(None, exc.message)
                status = 429
            else:
                user = authenticate(request, email=email, password=form.cleaned_data["password"])
                if user is None:
                    services.login_failed(email=email, ip=ip)
                    form.add_error(None, "Email or password is not right.")
                    status = 400
                else:
                    services.login_succeeded(email=email, ip=ip)
                    login(request, user)
                    return redirect(_next_url(request) or settings.LOGIN_REDIRECT_URL)
        else:
            status = 400
    return render(
        request, "accounts/signin.html", {"form": form, "next": _next_url(request)}, status=status
    )


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    token = request.GET.get("invite") or request.POST.get("invite") or ""
    invitation = invitation_by_token(token) if token else None
    form = SignUpForm(request.POST or None, invitation=invitation)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            d = form.cleaned_data
            user = services.user_sign_up(
                email=d["email"],
                password=d["password"],
                name=d.get("name", ""),
                organization_name=d.get("organization", ""),
                invitation_token=token if invitation else None,
            )
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect(settings.LOGIN_REDIRECT_URL)
        status = 400
    return render(
        request,
        "accounts/signup.html",
        {"form": form, "invitation": invitation, "invite": token},
        status=status,
    )


@require_POST
def signout(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("accounts:signin")
