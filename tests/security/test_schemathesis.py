"""Schemathesis against our own OpenAPI schema: no operation answers 5xx, whatever it is sent."""

from __future__ import annotations

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

from tests.conftest import make_tenant

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))


@pytest.fixture
def fuzz_key(transactional_db) -> str:
    return make_tenant("fuzz").all_key


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.django_db(transaction=True)
def test_no_operation_answers_5xx(case, live_server, fuzz_key) -> None:
    resp = case.call(
        base_url=live_server.url, headers={"Authorization": f"Bearer {fuzz_key}"}, timeout=30
    )
    assert resp.status_code < 500, (
        f"{case.method} {case.formatted_path} → {resp.status_code}: {resp.text[:300]}"
    )
