"""The alerts API: CRUD, validation errors that name the field and the rule, tenancy, scope."""

from __future__ import annotations

import json

import pytest

from apps.alerts import services
from apps.alerts.models import AlertRule, NotificationChannel
from apps.audit.models import AuditEvent
from tests.alerts.conftest import Receiver

pytestmark = pytest.mark.django_db

RULE = {
    "name": "Support issue rate",
    "metric": "issue_rate",
    "agent": "support",
    "comparison": ">",
    "threshold": 0.2,
    "window_seconds": 3600,
    "min_traces": 20,
}


def post(client, path: str, body: dict):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def send(client, method: str, path: str, body: dict | None = None):
    if method in ("get", "delete"):
        return getattr(client, method)(path)
    return getattr(client, method)(path, data=json.dumps(body), content_type="application/json")


def test_rule_crud(tenant_a) -> None:
    api = tenant_a.api(tenant_a.admin_key)
    ch = post(api, "/api/v1/channels", {"name": "ops", "kind": "email", "emails": ["o@a.example"]})
    assert ch.status_code == 201
    created = post(api, "/api/v1/alert-rules", {**RULE, "channels": [ch.json()["id"]]})
    assert created.status_code == 201, created.json()
    rule = created.json()
    assert rule["state"] == "ok" and rule["muted"] is False
    assert rule["channels"] == [ch.json()["id"]]
    assert rule["description"] == (
        "Fire when the issue rate of support over the last 1 hour is above 20 % "
        "(at least 20 traces)."
    )
    path = f"/api/v1/alert-rules/{rule['id']}"
    assert api.get("/api/v1/alert-rules").json()["rules"] == [rule]
    assert api.get(path).json() == rule

    patched = send(api, "patch", path, {"threshold": 0.3, "muted": True})
    assert patched.status_code == 200
    assert (patched.json()["threshold"], patched.json()["muted"]) == (0.3, True)
    assert patched.json()["agent"] == "support"

    put = send(
        api,
        "put",
        path,
        {"name": "All agents", "metric": "failed_rate", "threshold": 0.1, "window_seconds": 900},
    )
    assert put.status_code == 200
    body = put.json()
    # PUT replaces: omitted optional fields take their defaults
    assert (body["agent"], body["muted"], body["min_traces"], body["channels"]) == (
        None,
        False,
        20,
        [],
    )
    events = api.get(f"{path}/events").json()
    assert events == {"events": [], "total": 0}
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404
    actions = list(
        AuditEvent.objects.filter(organization=tenant_a.org, action__startswith="alert_")
        .order_by("id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "alert_channel.created",
        "alert_rule.created",
        "alert_rule.updated",
        "alert_rule.updated",
        "alert_rule.deleted",
    ]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"threshold": 20}, "threshold", "issue_rate is a fraction: give a value between 0 and 1"),
        ({"metric": "finding_count"}, "finding_type", "finding_count needs a finding type"),
        ({"finding_type": "tool_loop"}, "finding_type", "only a finding_count rule takes"),
        ({"window_seconds": 7}, "window_seconds", "must be one of 300, 900"),
        ({"comparison": "=="}, "comparison", "not a valid choice"),
        ({"metric": "latency"}, "metric", "not a valid choice"),
        ({"min_traces": -1}, "min_traces", "greater than or equal to 0"),
        ({"name": ""}, "name", "may not be blank"),
        ({"threshold": -5, "metric": "p95_duration_ms"}, "threshold", "must not be negative"),
        ({"channels": [999999]}, "channels", "no channel 999999 in this project"),
    ],
)
def test_validation_errors_name_the_field_and_the_rule(tenant_a, body, field, words) -> None:
    resp = post(tenant_a.api(), "/api/v1/alert-rules", {**RULE, **body})
    assert resp.status_code == 400
    err = resp.json()
    assert field in err["fields"]
    assert err["error"].startswith(f"{field}: ")
    assert words in err["error"]
    assert AlertRule.objects.count() == 0


def test_patch_is_validated_against_the_stored_rule(tenant_a) -> None:
    api = tenant_a.api()
    rid = post(api, "/api/v1/alert-rules", RULE).json()["id"]
    resp = send(api, "patch", f"/api/v1/alert-rules/{rid}", {"threshold": 3})
    assert resp.status_code == 400
    assert resp.json()["error"].startswith("threshold: issue_rate is a fraction")


def test_another_tenants_rules_and_channels_answer_404(tenant_a, tenant_b) -> None:
    b = tenant_b.api()
    rid = post(b, "/api/v1/alert-rules", RULE).json()["id"]
    cid = post(b, "/api/v1/channels", {"name": "x", "kind": "slack", "url": "https://h.example/x"})
    cid = cid.json()["id"]
    a = tenant_a.api()
    assert a.get("/api/v1/alert-rules").json()["rules"] == []
    assert a.get("/api/v1/channels").json()["channels"] == []
    for method, path in [
        ("get", f"/api/v1/alert-rules/{rid}"),
        ("patch", f"/api/v1/alert-rules/{rid}"),
        ("put", f"/api/v1/alert-rules/{rid}"),
        ("delete", f"/api/v1/alert-rules/{rid}"),
        ("get", f"/api/v1/alert-rules/{rid}/events"),
        ("get", f"/api/v1/channels/{cid}"),
        ("put", f"/api/v1/channels/{cid}"),
        ("delete", f"/api/v1/channels/{cid}"),
        ("post", f"/api/v1/channels/{cid}/test"),
    ]:
        resp = send(
            a, method, path, {**RULE, "name": "hijack", "kind": "slack", "url": "https://e.x"}
        )
        assert resp.status_code == 404, (method, path)
        assert resp.json() == {"error": "not found"}
    # nor can a rule of A notify B's channel
    resp = post(a, "/api/v1/alert-rules", {**RULE, "channels": [cid]})
    assert resp.status_code == 400 and resp.json()["fields"]["channels"]
    assert AlertRule.objects.get(pk=rid).name == RULE["name"]
    assert NotificationChannel.objects.filter(pk=cid).exists()


@pytest.mark.parametrize("key", ["read_key", "ingest_key"])
def test_keys_without_the_admin_scope_are_refused(tenant_a, key) -> None:
    api = tenant_a.api(getattr(tenant_a, key))
    assert api.get("/api/v1/alert-rules").status_code == 403
    assert post(api, "/api/v1/alert-rules", RULE).status_code == 403
    assert api.get("/api/v1/channels").status_code == 403
    assert "admin" in api.get("/api/v1/channels").json()["error"]


def test_signed_in_admins_use_the_api_with_the_project_parameter(tenant_a) -> None:
    ref = f"?project={tenant_a.org.slug}/{tenant_a.project.slug}"
    resp = tenant_a.client.post(
        "/api/v1/alert-rules" + ref, data=json.dumps(RULE), content_type="application/json"
    )
    assert resp.status_code == 201
    assert AuditEvent.objects.filter(action="alert_rule.created", actor=tenant_a.user).exists()


def test_channel_crud_shows_the_secret_once(tenant_a) -> None:
    api = tenant_a.api()
    created = post(
        api, "/api/v1/channels", {"name": "hook", "kind": "webhook", "url": "https://h.example/k"}
    )
    assert created.status_code == 201
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert body["secret_hint"] == f"{secret[:6]}…{secret[-4:]}"
    path = f"/api/v1/channels/{body['id']}"
    fetched = api.get(path).json()
    assert "secret" not in fetched and fetched["secret_hint"] == body["secret_hint"]
    assert secret not in json.dumps(api.get("/api/v1/channels").json())

    renamed = send(
        api, "put", path, {"name": "renamed", "kind": "webhook", "url": "https://h.example/2"}
    )
    assert renamed.status_code == 200 and "secret" not in renamed.json()
    assert renamed.json()["url"] == "https://h.example/2"
    rotated = send(
        api,
        "put",
        path,
        {"name": "renamed", "kind": "webhook", "url": "https://h.example/2", "rotate_secret": True},
    )
    assert rotated.json()["secret"] != secret
    assert NotificationChannel.objects.get(pk=body["id"]).secret == rotated.json()["secret"]
    assert AuditEvent.objects.filter(action="alert_channel.secret_rotated").count() == 1
    assert secret not in json.dumps(list(AuditEvent.objects.values_list("detail", flat=True)))

    kind = send(api, "put", path, {"name": "x", "kind": "email", "emails": ["a@b.example"]})
    assert kind.status_code == 400
    assert (
        kind.json()["error"] == "kind: a channel's kind cannot change; create a new channel instead"
    )
    assert api.delete(path).status_code == 204
    assert api.get(path).status_code == 404


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"kind": "webhook", "url": "ftp://h.example/x"},
            "url",
            "must start with http:// or https://",
        ),
        ({"kind": "webhook", "url": "file:///etc/passwd"}, "url", "must start with http://"),
        ({"kind": "slack", "url": ""}, "url", "slack channels need an http(s) URL"),
        ({"kind": "webhook", "url": "https://"}, "url", "needs a host name"),
        ({"kind": "email", "emails": []}, "emails", "at least one address"),
        ({"kind": "email", "emails": ["not-an-address"]}, "emails", "is not an email address"),
        ({"kind": "pager"}, "kind", "not a valid choice"),
    ],
)
def test_channel_validation(tenant_a, body, field, words) -> None:
    resp = post(tenant_a.api(), "/api/v1/channels", {"name": "c", **body})
    assert resp.status_code == 400
    assert resp.json()["error"].startswith(f"{field}: ") and words in resp.json()["error"]


def test_channel_test_endpoint_reports_the_outcome(
    tenant_a, receiver: Receiver, closed_port_url
) -> None:
    api = tenant_a.api()
    cid = post(api, "/api/v1/channels", {"name": "r", "kind": "webhook", "url": receiver.url})
    cid = cid.json()["id"]
    ok = api.post(f"/api/v1/channels/{cid}/test").json()
    assert (ok["ok"], ok["status_code"], ok["error"]) == (True, 200, None)
    assert receiver.requests[0].json()["type"] == "alert.test"

    send(
        api,
        "put",
        f"/api/v1/channels/{cid}",
        {"name": "r", "kind": "webhook", "url": closed_port_url},
    )
    bad = api.post(f"/api/v1/channels/{cid}/test").json()
    assert bad["ok"] is False and bad["status_code"] is None
    assert bad["error"].startswith("request failed")


def test_events_endpoint_lists_transitions_with_their_deliveries(tenant_a, receiver) -> None:
    api = tenant_a.api()
    cid = post(api, "/api/v1/channels", {"name": "r", "kind": "webhook", "url": receiver.url})
    rule = post(
        api,
        "/api/v1/alert-rules",
        {
            "name": "any",
            "metric": "new_issue",
            "comparison": ">=",
            "threshold": 0,
            "window_seconds": 900,
            "channels": [cid.json()["id"]],
        },
    ).json()
    ev = services.rule_evaluate(rule_id=rule["id"])
    services.delivery_attempt(delivery_id=ev.deliveries[0])
    events = api.get(f"/api/v1/alert-rules/{rule['id']}/events").json()
    assert events["total"] == 1
    e = events["events"][0]
    assert (e["sequence"], e["transition"], e["value"], e["threshold"], e["window_seconds"]) == (
        1,
        "firing",
        0.0,
        0.0,
        900,
    )
    assert e["deliveries"] == [
        {
            "channel_id": cid.json()["id"],
            "channel_name": "r",
            "status": "delivered",
            "attempts": 1,
            "response_code": 200,
            "last_error": None,
            "delivered_at": e["deliveries"][0]["delivered_at"],
        }
    ]
    assert api.get(f"/api/v1/alert-rules/{rule['id']}").json()["state"] == "firing"


def test_openapi_schema_documents_the_alert_endpoints(tenant_a) -> None:
    schema = tenant_a.client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    for p in (
        "/api/v1/alert-rules",
        "/api/v1/alert-rules/{rule_id}",
        "/api/v1/alert-rules/{rule_id}/events",
        "/api/v1/channels",
        "/api/v1/channels/{channel_id}",
        "/api/v1/channels/{channel_id}/test",
    ):
        assert p in paths
