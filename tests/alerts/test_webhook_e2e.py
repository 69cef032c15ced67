"""Notifications end to end against a real HTTP server on 127.0.0.1: signed webhooks, exactly one
notification per transition (also with two concurrent evaluations), retries, refusals."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from apps.alerts import services
from apps.alerts.models import AlertEvent, AlertRule, Delivery
from apps.alerts.tasks import deliver_task, evaluate_all_task
from tests.alerts.conftest import Receiver, traffic

pytestmark = pytest.mark.django_db


def verify(secret: str, req) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), req.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, req.headers["X-Kriy-Signature"])


def webhook(tenant, url: str, kind: str = "webhook", name: str = "receiver"):
    return services.channel_create(
        project=tenant.project, actor=tenant.user, data={"name": name, "kind": kind, "url": url}
    )


def issue_rate_rule(tenant, channel, **over) -> AlertRule:
    data = {
        "name": "Support issue rate",
        "metric": "issue_rate",
        "agent": "support",
        "comparison": ">",
        "threshold": 0.5,
        "window_seconds": 3600,
        "min_traces": 5,
        "channels": [channel.pk],
        **over,
    }
    return services.rule_create(project=tenant.project, actor=tenant.user, data=data)


def test_issue_rate_rule_notifies_once_on_firing_and_once_on_resolving(
    tenant_a, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    channel, secret = webhook(tenant_a, receiver.url)
    assert secret and secret.startswith("whsec_")
    traffic(tenant_a, failed=3, defective=1, clean=1)  # 80 %
    rule = issue_rate_rule(tenant_a, channel)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate_all_task.delay()
    assert len(receiver.requests) == 1
    fired = receiver.requests[0]
    assert verify(secret, fired)
    assert fired.headers["Content-Type"] == "application/json"
    assert fired.headers["X-Kriy-Event"] == "alert.firing"
    body = fired.json()
    assert body["timestamp"] == int(fired.headers["X-Kriy-Timestamp"])
    assert body["type"] == "alert.firing"
    assert body["event"]["transition"] == "firing"
    assert body["event"]["value"] == pytest.approx(0.8)
    assert body["event"]["traces"] == 5
    assert body["rule"] == {
        "id": rule.pk,
        "name": "Support issue rate",
        "metric": "issue_rate",
        "finding_type": None,
        "agent": "support",
        "comparison": ">",
        "threshold": 0.5,
        "window_seconds": 3600,
    }
    assert body["project"]["slug"] == tenant_a.project.slug
    assert body["url"].endswith(f"/settings/alerts/rules/{rule.pk}/")
    assert "80.0 %" in body["summary"]

    # still firing: evaluating again sends nothing
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_all_task.delay()
        evaluate_all_task.delay()
    assert len(receiver.requests) == 1

    traffic(tenant_a, clean=11)  # 4 of 16 = 25 %
    with django_capture_on_commit_callbacks(execute=True):
        evaluate_all_task.delay()
    assert len(receiver.requests) == 2
    resolved = receiver.requests[1]
    assert verify(secret, resolved)
    assert resolved.json()["type"] == "alert.resolved"
    assert resolved.json()["event"]["value"] == pytest.approx(0.25)

    with django_capture_on_commit_callbacks(execute=True):
        evaluate_all_task.delay()
    assert len(receiver.requests) == 2
    deliveries = Delivery.objects.filter(event__rule=rule).order_by("id")
    assert [(d.event.kind, d.status, d.attempts, d.response_code) for d in deliveries] == [
        ("firing", "delivered", 1, 200),
        ("resolved", "delivered", 1, 200),
    ]
    # retries of an already delivered notification send nothing
    for d in deliveries:
        deliver_task.delay(d.pk)
    assert len(receiver.requests) == 2


def test_a_tampered_body_does_not_verify(tenant_a, receiver: Receiver) -> None:
    channel, secret = webhook(tenant_a, receiver.url)
    services.channel_test(channel=channel, actor=tenant_a.user)
    req = receiver.requests[0]
    assert verify(secret, req)
    req.body = req.body.replace(b"alert.test", b"alert.fake")
    assert not verify(secret, req)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_evaluations_create_one_event_and_one_delivery(
    tenant_a, receiver: Receiver
) -> None:
    channel, secret = webhook(tenant_a, receiver.url)
    traffic(tenant_a, failed=5)
    rule = issue_rate_rule(tenant_a, channel)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def evaluate() -> None:
        try:
            barrier.wait(timeout=10)
            results.append(services.rule_evaluate(rule_id=rule.pk))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=evaluate) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    assert sorted(r.transition or "-" for r in results) == ["-", "firing"]
    assert AlertEvent.objects.filter(rule=rule).count() == 1
    assert Delivery.objects.filter(event__rule=rule).count() == 1
    assert Delivery.objects.get(event__rule=rule).status == "delivered"
    assert len(receiver.requests) == 1 and verify(secret, receiver.requests[0])


def _pending_delivery(tenant, channel) -> Delivery:
    """A firing transition whose delivery task was never queued (no on_commit in this test)."""
    rule = services.rule_create(
        project=tenant.project,
        actor=tenant.user,
        data={
            "name": "any new issue",
            "metric": "new_issue",
            "comparison": ">=",
            "threshold": 0,
            "window_seconds": 900,
            "channels": [channel.pk],
        },
    )
    ev = services.rule_evaluate(rule_id=rule.pk)
    return Delivery.objects.get(pk=ev.deliveries[0])


def test_a_500_then_200_is_delivered_once_after_a_retry(tenant_a, receiver: Receiver) -> None:
    receiver.codes = [500, 200]
    channel, secret = webhook(tenant_a, receiver.url)
    d = _pending_delivery(tenant_a, channel)

    first = services.delivery_attempt(delivery_id=d.pk)
    assert first.sent and first.retry_in == 30
    d.refresh_from_db()
    assert (d.status, d.attempts, d.response_code) == ("pending", 1, 500)
    assert d.last_error.startswith("HTTP 500")
    assert d.next_attempt_at is not None and d.lease_until is None

    second = services.delivery_attempt(delivery_id=d.pk)
    assert second.sent and second.retry_in is None
    d.refresh_from_db()
    assert (d.status, d.attempts, d.response_code, d.last_error) == ("delivered", 2, 200, "")

    third = services.delivery_attempt(delivery_id=d.pk)
    assert not third.sent and third.status == "delivered"
    assert len(receiver.requests) == 2
    ids = {r.headers["X-Kriy-Delivery"] for r in receiver.requests}
    assert ids == {str(d.pk)}  # one idempotency key across the attempts
    assert all(verify(secret, r) for r in receiver.requests)


def test_the_deliver_task_retries_with_backoff_until_delivered(
    tenant_a, receiver: Receiver
) -> None:
    receiver.codes = [503, 502, 200]
    channel, _ = webhook(tenant_a, receiver.url)
    d = _pending_delivery(tenant_a, channel)
    deliver_task.delay(d.pk)  # eager: Celery runs each retry at once instead of after countdown
    d.refresh_from_db()
    assert (d.status, d.attempts) == ("delivered", 3)
    assert len(receiver.requests) == 3


def test_deliveries_give_up_after_the_attempt_budget(tenant_a, receiver: Receiver) -> None:
    receiver.codes = [500]
    channel, _ = webhook(tenant_a, receiver.url)
    d = _pending_delivery(tenant_a, channel)
    deliver_task.delay(d.pk)
    d.refresh_from_db()
    assert (d.status, d.attempts) == ("failed", services.MAX_ATTEMPTS)
    assert len(receiver.requests) == services.MAX_ATTEMPTS


def test_a_4xx_answer_fails_without_retrying(tenant_a, receiver: Receiver) -> None:
    receiver.codes = [404]
    channel, _ = webhook(tenant_a, receiver.url)
    d = _pending_delivery(tenant_a, channel)
    deliver_task.delay(d.pk)
    d.refresh_from_db()
    assert (d.status, d.attempts, d.response_code) == ("failed", 1, 404)


def test_redirects_are_reported_and_never_followed(tenant_a, receiver: Receiver) -> None:
    receiver.codes = [302]
    receiver.location = "file:///etc/passwd"
    channel, _ = webhook(tenant_a, receiver.url)
    result = services.channel_test(channel=channel, actor=tenant_a.user)
    assert not result.ok and result.status_code == 302
    assert "redirects are not followed" in result.error
    assert len(receiver.requests) == 1


def test_an_unreachable_receiver_is_a_retryable_error(tenant_a, closed_port_url) -> None:
    channel, _ = webhook(tenant_a, closed_port_url)
    d = _pending_delivery(tenant_a, channel)
    attempt = services.delivery_attempt(delivery_id=d.pk)
    assert attempt.retry_in == 30
    d.refresh_from_db()
    assert d.status == "pending" and d.last_error.startswith("request failed")


def test_lost_delivery_tasks_are_resumed_by_the_next_pass(
    tenant_a, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    channel, _ = webhook(tenant_a, receiver.url)
    d = _pending_delivery(tenant_a, channel)
    assert receiver.requests == []
    Delivery.objects.filter(pk=d.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        stats = evaluate_all_task.delay().get()
    assert stats["deliveries_resumed"] == 1
    assert Delivery.objects.get(pk=d.pk).status == "delivered"
    assert len(receiver.requests) == 1


def test_slack_channels_get_a_readable_escaped_text(tenant_a, receiver: Receiver) -> None:
    channel, secret = webhook(tenant_a, receiver.url, kind="slack", name="#alerts")
    assert secret is None
    rule = services.rule_create(
        project=tenant_a.project,
        actor=tenant_a.user,
        data={
            "name": "<!channel> & <script>",
            "metric": "new_issue",
            "comparison": ">=",
            "threshold": 0,
            "window_seconds": 900,
            "channels": [channel.pk],
        },
    )
    d = Delivery.objects.get(pk=services.rule_evaluate(rule_id=rule.pk).deliveries[0])
    services.delivery_attempt(delivery_id=d.pk)
    body = receiver.requests[0].json()
    assert list(body) == ["text"]
    assert "*Firing: &lt;!channel&gt; &amp; &lt;script&gt;*" in body["text"]
    assert "The number of new issues across all agents over the last 15 minutes" in body["text"]
    assert "X-Kriy-Signature" not in receiver.requests[0].headers


def test_email_channels_send_through_the_django_backend(tenant_a, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    from django.core import mail

    channel, _ = services.channel_create(
        project=tenant_a.project,
        actor=tenant_a.user,
        data={"name": "on-call", "kind": "email", "emails": ["a@acme.example", "b@acme.example"]},
    )
    d = _pending_delivery(tenant_a, channel)
    services.delivery_attempt(delivery_id=d.pk)
    assert len(mail.outbox) == 1
    msg = mail.outbox[0]
    assert msg.subject == "[kriyplatform] Firing: any new issue"
    assert sorted(msg.to) == ["a@acme.example", "b@acme.example"]
    assert "over the last 15 minutes" in msg.body
    assert Delivery.objects.get(pk=d.pk).status == "delivered"
