from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.test import Client

from apps.accounts.models import User
from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_authenticate, looks_like_key
from apps.audit.models import AuditEvent
from apps.orgs.models import Invitation, Membership

pytestmark = pytest.mark.django_db


def test_healthz_answers_200_when_both_stores_answer(client: Client) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "database": "ok", "span_store": "ok"}


def test_landing_page_offers_sign_in_with_csrf_token_and_sign_up_link(client: Client) -> None:
    resp = client.get("/")
    html = resp.content.decode()
    assert resp.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'action="/signin/"' in html
    assert 'href="/signup/"' in html


def test_sign_up_creates_user_organization_owner_membership_and_first_project() -> None:
    c = Client(enforce_csrf_checks=False)
    resp = c.post(
        "/signup/",
        {
            "email": "Ada@Example.com",
            "name": "Ada",
            "organization": "Analytical Engines",
            "password": "difference engine 1842",
        },
    )
    assert resp.status_code == 302
    user = User.objects.get(email="ada@example.com")
    assert user.password.startswith("argon2")
    m = Membership.objects.get(user=user)
    assert m.role == "owner" and m.organization.slug == "analytical-engines"
    assert m.organization.projects.count() == 1
    follow = c.get(resp["Location"], follow=True)
    assert follow.status_code == 200
    assert "Analytical Engines" in follow.content.decode()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"email": "not-an-email", "organization": "X", "password": "difference engine 1842"},
            "email",
            "valid email",
        ),
        ({"email": "a@b.co", "organization": "X", "password": "short"}, "password", "too short"),
        (
            {"email": "a@b.co", "organization": "X", "password": "12345678901234"},
            "password",
            "entirely numeric",
        ),
        (
            {"email": "a@b.co", "organization": "", "password": "difference engine 1842"},
            "organization",
            "required",
        ),
    ],
)
def test_sign_up_with_invalid_input_shows_the_field_error(
    data: dict, field: str, message: str
) -> None:
    resp = Client().post("/signup/", data)
    assert resp.status_code == 400
    errors = resp.context["form"].errors
    assert field in errors and message in " ".join(errors[field])
    assert message in resp.content.decode()
    assert not User.objects.exists()


def test_sign_up_with_taken_email_says_sign_in_instead(tenant_a) -> None:
    resp = Client().post(
        "/signup/",
        {"email": tenant_a.user.email, "organization": "Y", "password": "difference engine 1842"},
    )
    assert resp.status_code == 400
    assert "already exists" in resp.content.decode()


def test_sign_in_rejects_wrong_password_and_locks_after_repeated_failures(
    tenant_a, settings
) -> None:
    settings.KRIY_LOGIN_MAX_FAILURES = 3
    c = Client()
    for _ in range(3):
        resp = c.post("/signin/", {"email": tenant_a.user.email, "password": "wrong password"})
        assert resp.status_code == 400
        assert "not right" in resp.content.decode()
    resp = c.post("/signin/", {"email": tenant_a.user.email, "password": "correct horse battery"})
    assert resp.status_code == 429
    assert "Too many failed sign-ins" in resp.content.decode()


def test_sign_in_and_out(tenant_a) -> None:
    c = Client()
    resp = c.post("/signin/", {"email": tenant_a.user.email, "password": "correct horse battery"})
    assert resp.status_code == 302
    assert c.get(resp["Location"]).status_code in (200, 302)
    assert c.post("/signout/").status_code == 302
    assert c.get(f"{tenant_a.base}/").status_code == 302  # back to sign-in


def test_other_organizations_pages_answer_404(tenant_a, tenant_b) -> None:
    for path in (
        f"{tenant_b.base}/",
        f"/o/{tenant_b.org.slug}/settings/members/",
        f"{tenant_b.base}/settings/keys/",
        f"/o/{tenant_b.org.slug}/settings/",
    ):
        assert tenant_a.client.get(path).status_code == 404, path
        assert tenant_b.client.get(path).status_code == 200, path


def test_invitation_link_adds_a_member_with_its_role_once(tenant_a) -> None:
    resp = tenant_a.client.post(
        f"/o/{tenant_a.org.slug}/settings/members/", {"email": "new@acme.example", "role": "viewer"}
    )
    assert resp.status_code == 200
    link = re.search(r"/invite/([\w-]+)/", resp.content.decode()).group(0)
    new = Client()
    signup = new.get(link)
    assert "Create an account to join" in signup.content.decode()
    token = link.split("/")[2]
    resp = new.post(
        f"/signup/?invite={token}",
        {"email": "new@acme.example", "password": "a fine long passphrase", "invite": token},
    )
    assert resp.status_code == 302
    m = Membership.objects.get(user__email="new@acme.example")
    assert (m.organization, m.role) == (tenant_a.org, "viewer")
    assert not Invitation.objects.get(email="new@acme.example").is_pending
    assert Client().get(link).status_code == 404  # used once
    # a viewer cannot invite
    viewer = Client()
    viewer.force_login(m.user)
    assert (
        viewer.post(
            f"/o/{tenant_a.org.slug}/settings/members/", {"email": "x@y.z", "role": "member"}
        ).status_code
        == 404
    )


def test_last_owner_cannot_be_demoted(tenant_a) -> None:
    owner = Membership.objects.get(user=tenant_a.user)
    resp = tenant_a.client.post(
        f"/o/{tenant_a.org.slug}/settings/members/{owner.pk}/role/", {"role": "member"}, follow=True
    )
    assert "at least one owner" in resp.content.decode()
    owner.refresh_from_db()
    assert owner.role == "owner"


def test_api_key_page_shows_key_once_and_stores_only_its_hash(tenant_a) -> None:
    resp = tenant_a.client.post(
        f"{tenant_a.base}/settings/keys/", {"name": "ci", "scopes": ["ingest", "read"]}
    )
    html = resp.content.decode()
    raw = re.search(r"kp_[A-Za-z0-9_-]{40,}", html).group(0)
    assert looks_like_key(raw)
    key = ApiKey.objects.get(name="ci")
    assert raw not in (key.key_hash, key.lookup) and len(key.key_hash) == 64
    assert raw not in tenant_a.client.get(f"{tenant_a.base}/settings/keys/").content.decode()
    assert AuditEvent.objects.filter(organization=tenant_a.org, action="api_key.created").exists()


def test_create_api_key_command_prints_only_a_new_valid_key_each_time(db, capsys) -> None:
    call_command(
        "create_api_key", "--org", "initech", "--project", "tps", "--scopes", "ingest,read"
    )
    first = capsys.readouterr().out.strip()
    call_command("create_api_key", "--org", "initech", "--project", "tps")
    second = capsys.readouterr().out.strip()
    assert re.fullmatch(r"kp_[A-Za-z0-9_-]{46}", first) and re.fullmatch(
        r"kp_[A-Za-z0-9_-]{46}", second
    )
    assert first != second
    p1, p2 = api_key_authenticate(first), api_key_authenticate(second)
    assert p1.project_id == p2.project_id
    assert p1.scopes == {"ingest", "read"}


def test_create_api_key_command_refuses_unknown_scope(db) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="unknown scope"):
        call_command("create_api_key", "--org", "initech", "--project", "tps", "--scopes", "write")


def test_migrate_clickhouse_plan_is_read_only_and_up_to_date(capsys) -> None:
    call_command("migrate_clickhouse", "--plan")
    assert "No ClickHouse migrations to apply." in capsys.readouterr().out
    call_command("migrate_clickhouse")
    assert "up to date" in capsys.readouterr().out


def test_django_migrations_match_the_models(capsys) -> None:
    call_command("makemigrations", "--check", "--dry-run")
    assert "No changes detected" in capsys.readouterr().out
