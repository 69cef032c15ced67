from __future__ import annotations

import pytest
from django.test import Client

from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_revoke
from tests.factories import post_spans, trace

pytestmark = pytest.mark.django_db


def test_missing_or_unknown_key_is_401(tenant_a) -> None:
    assert Client().get("/api/v1/usage").status_code in (401, 403)
    resp = Client(HTTP_AUTHORIZATION="Bearer kp_" + "x" * 46).get("/api/v1/usage")
    assert resp.status_code == 401
    assert post_spans(Client(), trace()).status_code == 401


def test_revoked_key_is_rejected_even_when_cached(tenant_a) -> None:
    api = tenant_a.api(tenant_a.read_key)
    assert api.get("/api/v1/usage").status_code == 200  # now cached
    key = ApiKey.objects.get(project=tenant_a.project, scopes=["read"])
    api_key_revoke(key=key)
    resp = api.get("/api/v1/usage")
    assert resp.status_code == 403
    assert "revoked" in resp.json()["error"]


def test_revoking_from_the_page_takes_effect_at_once(tenant_a) -> None:
    ingest = tenant_a.api(tenant_a.ingest_key)
    assert post_spans(ingest, trace()).status_code == 200
    key = ApiKey.objects.get(project=tenant_a.project, scopes=["ingest"])
    resp = tenant_a.client.post(f"{tenant_a.base}/settings/keys/{key.pk}/revoke/")
    assert resp.status_code == 302
    resp = post_spans(ingest, trace())
    assert resp.status_code == 403


def test_scopes_are_enforced(tenant_a) -> None:
    assert post_spans(tenant_a.api(tenant_a.read_key), trace()).status_code == 403
    assert tenant_a.api(tenant_a.ingest_key).get("/api/v1/usage").status_code == 403
    assert tenant_a.api(tenant_a.read_key).get("/api/v1/usage").status_code == 200


def test_last_used_is_recorded_and_throttled(tenant_a) -> None:
    api = tenant_a.api(tenant_a.read_key)
    key = ApiKey.objects.get(project=tenant_a.project, scopes=["read"])
    assert key.last_used_at is None
    api.get("/api/v1/usage")
    key.refresh_from_db()
    first = key.last_used_at
    assert first is not None
    api.get("/api/v1/usage")
    key.refresh_from_db()
    assert key.last_used_at == first  # within the interval: no second write


def test_other_tenants_key_cannot_revoke_or_see_keys(tenant_a, tenant_b) -> None:
    key = ApiKey.objects.filter(project=tenant_b.project).first()
    resp = tenant_a.client.post(
        f"/o/{tenant_b.org.slug}/p/{tenant_b.project.slug}/settings/keys/{key.pk}/revoke/"
    )
    assert resp.status_code == 404
    resp = tenant_a.client.post(f"{tenant_a.base}/settings/keys/{key.pk}/revoke/")
    assert resp.status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
