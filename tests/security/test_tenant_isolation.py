"""Every page and API route, tried by one organization against another's data: 404, exactly like
something that does not exist. The route list comes from the URLconf, so a new route without a
case here fails this test until someone decides how it is scoped."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from apps.alerts import services as alerts
from apps.apikeys.models import ApiKey
from apps.detection.services import judge_pending
from apps.issues.models import Issue
from apps.orgs.models import Membership
from apps.orgs.services import invitation_create
from tests.factories import post_spans, span, trace_id

pytestmark = pytest.mark.django_db

# Routes that are not tenant data, and why.
PUBLIC = {
    "healthz",  # liveness
    "",  # landing page
    "signin/",
    "signup/",
    "signout/",
    "invite/<str:token>/",  # a one-time secret token, not an id
    "demo/enter/",  # the demo organization is for everyone on the embedded default
    "api/schema/",
    "api/docs/",
    "api/v1/spans",  # ingest: the key decides the project
    "v1/traces",
}
# Routes scoped by the key alone: nothing in the path names another tenant's object.
KEY_SCOPED = {
    "api/v1/traces",
    "api/v1/usage",
    "api/v1/contracts",
    "api/v1/issues",
    "api/v1/summary",
    "api/v1/alert-rules",
    "api/v1/channels",
    "api/v1/agents/<path:agent>/weekly",  # computed per agent name within the key's project
}


def routes() -> list[str]:
    def walk(resolver: URLResolver, prefix: str = ""):
        for p in resolver.url_patterns:
            if isinstance(p, URLResolver):
                yield from walk(p, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    return list(walk(get_resolver()))


@pytest.fixture
def victim(tenant_b):
    """tenant_b with one of every kind of object."""
    tid = trace_id()
    root = span(
        trace_id=tid, agent="secret-agent", session_id="secret-session", start_time=0, end_time=1000
    )
    child = span(
        trace_id=tid,
        agent="secret-agent",
        parent_span_id=root["span_id"],
        name="lookup",
        start_time=1,
        end_time=2,
        attributes={"kriy.result.partial": True},
    )
    after = span(
        trace_id=tid,
        agent="secret-agent",
        parent_span_id=root["span_id"],
        name="after",
        start_time=3,
        end_time=4,
    )
    assert post_spans(tenant_b.api(), [root, child, after]).status_code == 200
    judge_pending(settle_seconds=0)
    channel, _ = alerts.channel_create(
        project=tenant_b.project,
        actor=tenant_b.user,
        data={"name": "hook", "kind": "webhook", "url": "https://example.com/hook"},
    )
    rule = alerts.rule_create(
        project=tenant_b.project,
        actor=tenant_b.user,
        data={
            "name": "r",
            "metric": "issue_rate",
            "comparison": ">",
            "threshold": 0.5,
            "window_seconds": 3600,
            "channels": [channel.pk],
        },
    )
    inv, _token = invitation_create(
        organization=tenant_b.org, email="x@globex.example", role="member", invited_by=tenant_b.user
    )
    return {
        "org_slug": tenant_b.org.slug,
        "project_slug": tenant_b.project.slug,
        "issue_id": Issue.objects.get(project=tenant_b.project).pk,
        "trace_id": tid,
        "span_id": child["span_id"],
        "session_id": "secret-session",
        "agent": "secret-agent",
        "key_id": ApiKey.objects.filter(project=tenant_b.project).first().pk,
        "membership_id": Membership.objects.get(user=tenant_b.user).pk,
        "invitation_id": inv.pk,
        "rule_id": rule.pk,
        "channel_id": channel.pk,
    }


def fill(route: str, values: dict[str, object]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(2)
        if name not in values:
            raise AssertionError(f"{route}: no isolation case for <{name}>; add one to this test")
        return str(values[name])

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", sub, route)


def test_every_route_is_covered_by_a_rule_here() -> None:
    for route in routes():
        assert (
            route in PUBLIC
            or route in KEY_SCOPED
            or "<slug:org_slug>" in route
            or route.startswith("api/v1/")
        ), route


def test_pages_of_another_organization_answer_404(tenant_a, victim) -> None:
    checked = 0
    for route in routes():
        if "<slug:org_slug>" not in route:
            continue
        url = fill(route, victim)
        codes = {tenant_a.client.get(url).status_code, tenant_a.client.post(url).status_code}
        assert codes <= {404, 405} and 404 in codes, (url, codes)
        checked += 1
    assert checked > 30


def test_another_organizations_ids_under_our_own_slugs_answer_404(tenant_a, victim) -> None:
    ours = {**victim, "org_slug": tenant_a.org.slug, "project_slug": tenant_a.project.slug}
    for route in routes():
        if "<slug:org_slug>" not in route or not re.search(r"<(?:\w+:)?(\w+_id|agent)>", route):
            continue
        url = fill(route, ours)
        codes = {tenant_a.client.get(url).status_code, tenant_a.client.post(url).status_code}
        assert codes <= {404, 405} and 404 in codes, (url, codes)


def test_api_routes_answer_404_for_another_organizations_ids(tenant_a, victim) -> None:
    api = tenant_a.api()
    for route in routes():
        if not route.startswith("api/v1/") or route in KEY_SCOPED or route in PUBLIC:
            continue
        url = fill(route, victim)
        for method in ("get", "post", "put", "patch", "delete"):
            if method == "get":
                resp = api.get(url)
            else:
                resp = getattr(api, method)(url, data="{}", content_type="application/json")
            assert resp.status_code in (404, 405), (method, url, resp.status_code)
        assert (
            api.get(url).status_code == 404
            or api.post(url, data="{}", content_type="application/json").status_code == 404
        ), url
    # the key-scoped lists show nothing of the other organization
    for path in ("/api/v1/traces", "/api/v1/issues", "/api/v1/alert-rules", "/api/v1/channels"):
        body = api.get(path).content.decode()
        assert (
            "secret-agent" not in body and victim["trace_id"] not in body and "hook" not in body
        ), path
    weekly = api.get("/api/v1/agents/secret-agent/weekly").json()
    assert all(w["traces"] == 0 for w in weekly["weeks"])
