"""Security headers on every answer, a production profile that passes check --deploy, and an
audit log of key, member, contract and rule changes that admins (only) can read."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from apps.audit.models import AuditEvent
from apps.orgs.models import Membership

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def test_pages_and_apis_carry_csp_and_security_headers(tenant_a) -> None:
    for resp in (
        Client().get("/"),
        tenant_a.client.get(f"{tenant_a.base}/traces/"),
        tenant_a.api().get("/api/v1/usage"),
    ):
        csp = resp["Content-Security-Policy"]
        assert (
            "default-src 'self'" in csp
            and "script-src 'self'" in csp
            and "frame-ancestors 'none'" in csp
        )
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert resp["X-Content-Type-Options"] == "nosniff"
        assert resp["X-Frame-Options"] == "DENY"
        assert resp["Referrer-Policy"] == "same-origin"


def test_pages_load_nothing_from_outside_the_app(tenant_a) -> None:
    import re

    for path in (
        "/",
        f"{tenant_a.base}/",
        f"{tenant_a.base}/traces/",
        f"{tenant_a.base}/issues/",
        f"{tenant_a.base}/settings/keys/",
        "/api/docs/",
    ):
        html = tenant_a.client.get(path).content.decode()
        assert not re.search(r'(src|href)="(https?:)?//', html), path


def test_production_settings_pass_check_deploy() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "kriyplatform.settings_production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "kriy.example.com",
    }
    res = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_audit_log_records_changes_and_is_visible_to_admins_only(tenant_a) -> None:
    c = tenant_a.client
    c.post(f"{tenant_a.base}/settings/keys/", {"name": "ci", "scopes": ["ingest"]})
    c.post(
        f"/o/{tenant_a.org.slug}/settings/members/", {"email": "v@acme.example", "role": "viewer"}
    )
    tenant_a.api(tenant_a.admin_key).put(
        "/api/v1/contracts", {"support": {"latency_slo_ms": 100}}, content_type="application/json"
    )
    actions = set(
        AuditEvent.objects.filter(organization=tenant_a.org).values_list("action", flat=True)
    )
    assert {"api_key.created", "member.invited", "contracts.updated"} <= actions
    page = c.get(f"/o/{tenant_a.org.slug}/settings/").content.decode()
    assert "api_key.created" in page and "member.invited" in page
    # a viewer sees the organization, not its audit log
    from apps.accounts.models import User

    viewer = User.objects.create_user("viewer@acme.example", "a long passphrase")
    Membership.objects.create(organization=tenant_a.org, user=viewer, role="viewer")
    vc = Client()
    vc.force_login(viewer)
    assert "api_key.created" not in vc.get(f"/o/{tenant_a.org.slug}/settings/").content.decode()


def test_keys_are_recognizable_by_secret_scanners_and_never_stored(tenant_a) -> None:
    from apps.apikeys.models import ApiKey
    from apps.apikeys.services import looks_like_key

    assert (
        looks_like_key(tenant_a.all_key)
        and tenant_a.all_key.startswith("kp_")
        and len(tenant_a.all_key) == 49
    )
    tampered = tenant_a.all_key[:-1] + ("A" if tenant_a.all_key[-1] != "A" else "B")
    assert not looks_like_key(tampered)  # the checksum tells a real key from a typo
    for key in ApiKey.objects.all():
        assert tenant_a.all_key not in (key.key_hash, key.lookup, key.name)


def test_api_docs_allow_only_swagger_uis_inline_styles(client) -> None:
    csp = client.get("/api/docs/")["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in csp
    assert "script-src 'self';" in csp  # scripts stay strict
