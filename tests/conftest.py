"""Shared fixtures: one chDB span store for the session, and two organizations per test so
every endpoint test can prove the other tenant sees nothing."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client


@pytest.fixture(scope="session", autouse=True)
def span_store(django_db_blocker: Any) -> Iterator[str]:
    """chDB locks one data directory per process: the whole session shares one, and tests stay
    apart because every test's projects get fresh ids."""
    from django.conf import settings

    from kriyplatform.clickhouse import client
    from kriyplatform.clickhouse.migrator import migrate

    path = tempfile.mkdtemp(prefix="kriy-chdb-")
    settings.CLICKHOUSE_URL = f"chdb://{path}"
    client.reset_transport_for_tests()
    migrate()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    from apps.ingest.ratelimit import reset_limiter

    cache.clear()
    reset_limiter()
    yield
    cache.clear()


@dataclass
class Tenant:
    org: Any
    project: Any
    user: Any
    client: Client  # signed in as the owner
    ingest_key: str
    read_key: str
    admin_key: str
    all_key: str

    @property
    def base(self) -> str:
        return f"/o/{self.org.slug}/p/{self.project.slug}"

    def api(self, key: str | None = None) -> Client:
        return Client(HTTP_AUTHORIZATION=f"Bearer {key or self.all_key}")


def make_tenant(name: str) -> Tenant:
    from apps.accounts.services import user_sign_up
    from apps.apikeys.services import api_key_create
    from apps.orgs.models import Membership

    user = user_sign_up(
        email=f"owner@{name}.example",
        password="correct horse battery",
        organization_name=name.title(),
    )
    org = Membership.objects.get(user=user).organization
    project = org.projects.get()
    client = Client()
    client.force_login(user)
    keys = {s: api_key_create(project=project, scopes=[s])[1] for s in ("ingest", "read", "admin")}
    _k, all_key = api_key_create(project=project, scopes=["ingest", "read", "admin"])
    return Tenant(org, project, user, client, keys["ingest"], keys["read"], keys["admin"], all_key)


@pytest.fixture
def tenant_a(db: Any) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def tenant_b(db: Any) -> Tenant:
    return make_tenant("globex")


def reset_celery_connections() -> None:
    """Forget pooled broker connections and the cached result backend, so the Celery app
    connects afresh with its current configuration (tests that switch to a Redis broker)."""
    from kombu import pools

    from kriyplatform.celery import app

    pools.reset()  # closes and forgets kombu's global connection and producer pools
    app._pool = None
    app.amqp._producer_pool = None
    app.amqp.__dict__.pop("producer_pool", None)
    app.__dict__.pop("backend", None)
    app._local.__dict__.pop("backend", None)
