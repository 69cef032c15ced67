"""The alert pages: full page and htmx fragment, admin-only changes, tenancy and escaping."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.alerts import services
from apps.alerts.models import AlertRule, NotificationChannel
from apps.audit.models import AuditEvent
from apps.orgs.models import Membership, Role
from tests.alerts.conftest import Receiver

pytestmark = pytest.mark.django_db
HX = {"HTTP_HX_REQUEST": "true"}
EVIL = "<script>alert(1)</script>"


def rule(tenant, **over) -> AlertRule:
    data = {
        "name": "Support issue rate",
        "metric": "issue_rate",
        "agent": "support",
        "threshold": 0.2,
        "window_seconds": 3600,
        "min_traces": 20,
        **over,
    }
    return services.rule_create(project=tenant.project, actor=tenant.user, data=data)


def channel(tenant, **over) -> NotificationChannel:
    data = {"name": "ops mail", "kind": "email", "emails": ["ops@acme.example"], **over}
    return services.channel_create(project=tenant.project, actor=tenant.user, data=data)[0]


def member(tenant, role: str) -> Client:
    user = User.objects.create_user(f"{role}@{tenant.org.slug}.example", "correct horse battery")
    Membership.objects.create(organization=tenant.org, user=user, role=role)
    c = Client()
    c.force_login(user)
    return c


def test_rules_page_empty_state_says_what_to_do(tenant_a) -> None:
    resp = tenant_a.client.get(f"{tenant_a.base}/settings/alerts/")
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" in html
    assert "No alert rules yet" in html and "Create the first rule" in html
    assert "add a notification channel first" in html
    assert 'aria-current="page">Alerts</a>' in html  # the sidebar entry


def test_rules_page_lists_rules_with_state_sentence_and_last_evaluation(tenant_a) -> None:
    c = channel(tenant_a)
    r = rule(tenant_a, channels=[c.pk])
    quiet = rule(
        tenant_a, name="Quiet", metric="new_issue", threshold=0, comparison=">=", muted=True
    )
    services.rule_evaluate(rule_id=quiet.pk)
    html = tenant_a.client.get(f"{tenant_a.base}/settings/alerts/").content.decode()
    assert (
        "Fire when the issue rate of support over the last 1 hour is above 20 % (at least 20 traces)."
        in html
    )
    assert '<span class="badge b-firing">firing</span>' in html
    assert '<span class="badge b-ok">ok</span>' in html
    assert "Muted: it is evaluated but notifies nobody." in html
    assert "not yet evaluated" in html and "just now" in html
    assert f'id="rule-{r.pk}"' in html and ">ops mail</span>" in html
    assert "1 rule firing now." in html
    assert ">Unmute</button>" in html and ">Mute</button>" in html


def test_htmx_requests_get_only_the_fragment(tenant_a) -> None:
    r = rule(tenant_a)
    c = channel(tenant_a)
    for path in (
        "/settings/alerts/",
        f"/settings/alerts/rules/{r.pk}/",
        "/settings/alerts/rules/new/",
        f"/settings/alerts/rules/{r.pk}/edit/",
        "/settings/alerts/channels/",
        "/settings/alerts/channels/new/",
        f"/settings/alerts/channels/{c.pk}/edit/",
    ):
        full = tenant_a.client.get(tenant_a.base + path)
        part = tenant_a.client.get(tenant_a.base + path, **HX)
        assert full.status_code == part.status_code == 200, path
        assert "<html" in full.content.decode()
        fragment = part.content.decode()
        assert "<html" not in fragment and fragment.strip().startswith('<div id="alerts-main">')


def test_creating_a_rule_takes_percentages_and_audits(tenant_a) -> None:
    c = channel(tenant_a)
    resp = tenant_a.client.post(
        f"{tenant_a.base}/settings/alerts/rules/new/",
        {
            "name": "Support issue rate",
            "metric": "issue_rate",
            "agent": "support",
            "comparison": ">",
            "threshold": "20",
            "window_seconds": "3600",
            "min_traces": "20",
            "channels": [str(c.pk)],
        },
    )
    created = AlertRule.objects.get(project=tenant_a.project)
    assert resp.status_code == 302 and resp["Location"].endswith(f"/rules/{created.pk}/")
    assert created.threshold == pytest.approx(0.2)
    assert list(created.channels.all()) == [c]
    assert AuditEvent.objects.filter(action="alert_rule.created", actor=tenant_a.user).exists()
    edit = tenant_a.client.get(f"{tenant_a.base}/settings/alerts/rules/{created.pk}/edit/")
    assert 'name="threshold" value="20.0"' in edit.content.decode()


def test_an_invalid_rule_form_shows_the_rule_it_broke(tenant_a) -> None:
    resp = tenant_a.client.post(
        f"{tenant_a.base}/settings/alerts/rules/new/",
        {
            "name": "x",
            "metric": "finding_count",
            "comparison": ">",
            "threshold": "2",
            "window_seconds": "3600",
            "min_traces": "0",
        },
    )
    assert resp.status_code == 400
    assert "Finding_count needs a finding type" in resp.content.decode()
    resp = tenant_a.client.post(
        f"{tenant_a.base}/settings/alerts/rules/new/",
        {
            "name": "x",
            "metric": "issue_rate",
            "comparison": ">",
            "threshold": "150",
            "window_seconds": "3600",
            "min_traces": "0",
        },
    )
    assert "A rate is a percentage between 0 and 100." in resp.content.decode()
    assert AlertRule.objects.count() == 0


def test_preview_describes_the_rule_in_plain_words(tenant_a) -> None:
    resp = tenant_a.client.get(
        f"{tenant_a.base}/settings/alerts/rules/preview/",
        {
            "metric": "issue_rate",
            "agent": "support",
            "comparison": ">",
            "threshold": "20",
            "window_seconds": "3600",
            "min_traces": "20",
        },
        **HX,
    )
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" not in html
    assert (
        "Fire when the issue rate of support over the last 1 hour is above 20 % (at least 20 traces)."
        in html
    )
    p95 = tenant_a.client.get(
        f"{tenant_a.base}/settings/alerts/rules/preview/",
        {
            "metric": "p95_duration_ms",
            "comparison": ">=",
            "threshold": "2500",
            "window_seconds": "900",
            "min_traces": "5",
            "muted": "on",
        },
        **HX,
    ).content.decode()
    assert (
        "Fire when the p95 trace duration across all agents over the last 15 minutes is at "
        "or above 2,500 ms (at least 5 traces). Muted: it is evaluated but notifies nobody."
    ) in p95


def test_mute_in_place_with_htmx_and_without(tenant_a) -> None:
    r = rule(tenant_a)
    url = f"{tenant_a.base}/settings/alerts/rules/{r.pk}/mute/"
    resp = tenant_a.client.post(url, {"muted": "1"}, **HX)
    html = resp.content.decode()
    assert resp.status_code == 200 and html.strip().startswith(f'<tr id="rule-{r.pk}">')
    assert "b-muted" in html and ">Unmute</button>" in html
    assert AlertRule.objects.get(pk=r.pk).muted is True
    resp = tenant_a.client.post(url, {"muted": "0"})
    assert resp.status_code == 302 and AlertRule.objects.get(pk=r.pk).muted is False
    actions = AuditEvent.objects.filter(action__in=["alert_rule.muted", "alert_rule.unmuted"])
    assert sorted(actions.values_list("action", flat=True)) == [
        "alert_rule.muted",
        "alert_rule.unmuted",
    ]


def test_rule_page_shows_the_event_history(tenant_a, receiver: Receiver) -> None:
    c = channel(tenant_a, name="hook", kind="webhook", url=receiver.url, emails=[])
    r = rule(
        tenant_a,
        metric="new_issue",
        comparison=">=",
        threshold=0,
        window_seconds=900,
        channels=[c.pk],
    )
    ev = services.rule_evaluate(rule_id=r.pk)
    services.delivery_attempt(delivery_id=ev.deliveries[0])
    html = tenant_a.client.get(f"{tenant_a.base}/settings/alerts/rules/{r.pk}/").content.decode()
    assert "<h2>History</h2>" in html
    history = html[html.index("<h2>History</h2>") :]
    assert '<span class="badge b-firing">firing</span>' in history
    assert "at or above 0" in history and "15 minutes" in history
    assert '<span class="badge b-ok">delivered</span> hook' in history
    assert "HTTP 200 · 1 attempt" in history


def test_channels_page_shows_the_webhook_secret_only_once(tenant_a) -> None:
    resp = tenant_a.client.post(
        f"{tenant_a.base}/settings/alerts/channels/new/",
        {"name": "hook", "kind": "webhook", "url": "https://hooks.acme.example/kriy?token=abc"},
    )
    assert resp.status_code == 201
    ch = NotificationChannel.objects.get(project=tenant_a.project)
    html = resp.content.decode()
    assert ch.secret in html and "shown only once" in html
    later = tenant_a.client.get(f"{tenant_a.base}/settings/alerts/channels/").content.decode()
    assert ch.secret not in later and ch.secret_hint in later
    assert "https://hooks.acme.example/kriy?…" in later  # query strings may hold tokens
    assert AuditEvent.objects.filter(action="alert_channel.created").exists()


def test_channel_form_rejects_non_http_urls(tenant_a) -> None:
    resp = tenant_a.client.post(
        f"{tenant_a.base}/settings/alerts/channels/new/",
        {"name": "hook", "kind": "webhook", "url": "file:///etc/passwd"},
    )
    assert resp.status_code == 400
    assert "Webhook channels need an http(s) URL: must start with http:// or https://" in (
        resp.content.decode()
    )


def test_test_button_shows_the_outcome_inline(
    tenant_a, receiver: Receiver, closed_port_url
) -> None:
    ok = channel(tenant_a, name="hook", kind="webhook", url=receiver.url, emails=[])
    bad = channel(tenant_a, name="dead", kind="webhook", url=closed_port_url, emails=[])
    page = tenant_a.client.get(f"{tenant_a.base}/settings/alerts/channels/").content.decode()
    assert f'hx-target="#test-result-{ok.pk}"' in page
    resp = tenant_a.client.post(f"{tenant_a.base}/settings/alerts/channels/{ok.pk}/test/", **HX)
    html = resp.content.decode()
    assert resp.status_code == 200 and "<html" not in html
    assert '<span class="badge b-ok">delivered</span> HTTP 200' in html
    assert len(receiver.requests) == 1
    html = tenant_a.client.post(
        f"{tenant_a.base}/settings/alerts/channels/{bad.pk}/test/", **HX
    ).content.decode()
    assert '<span class="badge b-error">failed</span> request failed' in html
    resp = tenant_a.client.post(f"{tenant_a.base}/settings/alerts/channels/{ok.pk}/test/")
    assert resp.status_code == 302
    follow = tenant_a.client.get(resp["Location"]).content.decode()
    assert "Test sent to “hook” (HTTP 200)." in follow


def test_members_who_are_not_admins_read_but_cannot_change(tenant_a) -> None:
    r = rule(tenant_a)
    c = channel(tenant_a)
    for role in (Role.VIEWER, Role.MEMBER):
        client = member(tenant_a, role)
        page = client.get(f"{tenant_a.base}/settings/alerts/").content.decode()
        assert "Support issue rate" in page
        assert "New rule" not in page and ">Mute</button>" not in page
        assert client.get(f"{tenant_a.base}/settings/alerts/rules/{r.pk}/").status_code == 200
        assert client.get(f"{tenant_a.base}/settings/alerts/channels/").status_code == 200
        for path in ("rules/new/", f"rules/{r.pk}/edit/", "channels/new/"):
            assert client.get(f"{tenant_a.base}/settings/alerts/{path}").status_code == 404
        for path in (
            "rules/new/",
            f"rules/{r.pk}/mute/",
            f"rules/{r.pk}/delete/",
            f"rules/{r.pk}/edit/",
            "channels/new/",
            f"channels/{c.pk}/test/",
            f"channels/{c.pk}/delete/",
        ):
            resp = client.post(f"{tenant_a.base}/settings/alerts/{path}", {"muted": "1"})
            assert resp.status_code == 404, (role, path)
    assert AlertRule.objects.get(pk=r.pk).muted is False
    assert NotificationChannel.objects.filter(pk=c.pk).exists()


def test_another_tenants_pages_and_objects_answer_404(tenant_a, tenant_b) -> None:
    r = rule(tenant_b)
    c = channel(tenant_b)
    assert tenant_a.client.get(f"{tenant_b.base}/settings/alerts/").status_code == 404
    assert tenant_a.client.get(f"{tenant_b.base}/settings/alerts/channels/").status_code == 404
    for path in (f"rules/{r.pk}/", f"rules/{r.pk}/edit/", f"channels/{c.pk}/edit/"):
        assert tenant_a.client.get(f"{tenant_a.base}/settings/alerts/{path}").status_code == 404
    for path in (
        f"rules/{r.pk}/mute/",
        f"rules/{r.pk}/delete/",
        f"channels/{c.pk}/test/",
        f"channels/{c.pk}/delete/",
    ):
        assert tenant_a.client.post(f"{tenant_a.base}/settings/alerts/{path}").status_code == 404
    assert AlertRule.objects.filter(pk=r.pk, muted=False).exists()
    assert NotificationChannel.objects.filter(pk=c.pk).exists()


def test_user_content_is_escaped(tenant_a) -> None:
    c = channel(tenant_a, name=EVIL)
    r = rule(tenant_a, name=EVIL, agent=EVIL, channels=[c.pk])
    services.rule_evaluate(rule_id=r.pk)
    for path in (
        "/settings/alerts/",
        f"/settings/alerts/rules/{r.pk}/",
        f"/settings/alerts/rules/{r.pk}/edit/",
        "/settings/alerts/channels/",
    ):
        html = tenant_a.client.get(tenant_a.base + path).content.decode()
        assert EVIL not in html, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    preview = tenant_a.client.get(
        f"{tenant_a.base}/settings/alerts/rules/preview/",
        {"agent": EVIL, "metric": "issue_rate"},
        **HX,
    ).content.decode()
    assert EVIL not in preview and "&lt;script&gt;" in preview


def test_pages_have_no_inline_scripts_or_styles(tenant_a) -> None:
    r = rule(tenant_a)
    for path in (
        "/settings/alerts/",
        f"/settings/alerts/rules/{r.pk}/",
        "/settings/alerts/rules/new/",
        "/settings/alerts/channels/",
    ):
        html = tenant_a.client.get(tenant_a.base + path).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "style=" not in html and "<style" not in html and "hx-on" not in html, path
