"""Alert rules, notification channels, the transitions of a rule and their deliveries.

Exactly one notification per transition is structural, not a matter of timing:

* a transition is an ``AlertEvent`` row, unique per (rule, sequence), created in the same
  transaction that moves the rule's state, with the rule row locked (``select_for_update``);
* each (event, channel) pair has one ``Delivery`` row (unique), created in that transaction;
* a delivery is sent only by whoever claims its lease with one conditional UPDATE, and never
  again once it is ``delivered``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Metric(models.TextChoices):
    ISSUE_RATE = "issue_rate", "Issue rate"
    SILENT_DEFECT_RATE = "silent_defect_rate", "Silent defect rate"
    FAILED_RATE = "failed_rate", "Failed rate"
    FINDING_COUNT = "finding_count", "Findings of one type"
    NEW_ISSUE = "new_issue", "New issues"
    REGRESSED_ISSUE = "regressed_issue", "Regressed issues"
    P95_DURATION_MS = "p95_duration_ms", "p95 trace duration (ms)"


# Fractions of the traces in the window (0..1); the pages show them as percentages.
RATE_METRICS = frozenset({Metric.ISSUE_RATE, Metric.SILENT_DEFECT_RATE, Metric.FAILED_RATE})
# Statistics over the window's traces: too few traces make them noise, so ``min_traces`` applies.
TRACE_STAT_METRICS = RATE_METRICS | {Metric.P95_DURATION_MS}
ISSUE_EVENT_METRICS = frozenset({Metric.NEW_ISSUE, Metric.REGRESSED_ISSUE})


class Comparison(models.TextChoices):
    GT = ">", "above"
    GTE = ">=", "at or above"
    LT = "<", "below"
    LTE = "<=", "at or below"


# The windows a rule may use, in seconds, with their plain-language names.
WINDOWS: dict[int, str] = {
    300: "5 minutes",
    900: "15 minutes",
    1800: "30 minutes",
    3600: "1 hour",
    3 * 3600: "3 hours",
    6 * 3600: "6 hours",
    12 * 3600: "12 hours",
    86400: "1 day",
    7 * 86400: "7 days",
}


class AlertState(models.TextChoices):
    OK = "ok", "OK"
    FIRING = "firing", "Firing"


class NotificationChannel(models.Model):
    """Where notifications of a project go: a signed webhook, a Slack hook, or email."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        SLACK = "slack", "Slack"
        EMAIL = "email", "Email"

    project = models.ForeignKey(
        "orgs.Project", on_delete=models.CASCADE, related_name="alert_channels"
    )
    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url = models.URLField(max_length=2000, blank=True)
    emails = models.JSONField(default=list, blank=True)
    # Kept readable: the HMAC needs it. Shown whole once at creation (or rotation), masked after.
    secret = models.CharField(max_length=128, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    @property
    def secret_hint(self) -> str:
        return f"{self.secret[:6]}…{self.secret[-4:]}" if self.secret else ""

    @property
    def target_display(self) -> str:
        """Where it sends, without the parts of a URL that act as credentials."""
        if self.kind == self.Kind.EMAIL:
            return ", ".join(self.emails)
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        if self.kind == self.Kind.SLACK:
            return f"{u.scheme}://{u.hostname}/…{self.url[-4:]}"
        path = u.path if len(u.path) <= 40 else u.path[:37] + "…"
        return f"{u.scheme}://{u.netloc.rpartition('@')[2]}{path}{'?…' if u.query else ''}"


class AlertRule(models.Model):
    project = models.ForeignKey(
        "orgs.Project", on_delete=models.CASCADE, related_name="alert_rules"
    )
    name = models.CharField(max_length=120)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    finding_type = models.CharField(max_length=64, blank=True)
    agent = models.CharField(max_length=128, blank=True, help_text="empty: all agents")
    comparison = models.CharField(max_length=2, choices=Comparison.choices, default=Comparison.GT)
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField(choices=sorted(WINDOWS.items()), default=3600)
    min_traces = models.PositiveIntegerField(default=20)
    muted = models.BooleanField(default=False)
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    # The state machine: ``state`` moves only together with a new AlertEvent of ``sequence`` + 1.
    state = models.CharField(max_length=8, choices=AlertState.choices, default=AlertState.OK)
    sequence = models.PositiveIntegerField(default=0)
    state_changed_at = models.DateTimeField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_traces = models.PositiveIntegerField(null=True, blank=True)
    last_note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["project", "state"])]

    def __str__(self) -> str:
        return self.name


class AlertEvent(models.Model):
    """One transition of a rule: ``firing`` (ok → firing) or ``resolved`` (firing → ok)."""

    class Kind(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="events")
    project = models.ForeignKey("orgs.Project", on_delete=models.CASCADE, related_name="+")
    sequence = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    value = models.FloatField(null=True, blank=True)
    traces = models.PositiveIntegerField(null=True, blank=True)
    # The condition as evaluated (the rule may be edited later).
    rule_name = models.CharField(max_length=120)
    metric = models.CharField(max_length=32, choices=Metric.choices)
    finding_type = models.CharField(max_length=64, blank=True)
    agent = models.CharField(max_length=128, blank=True)
    comparison = models.CharField(max_length=2, choices=Comparison.choices)
    threshold = models.FloatField()
    window_seconds = models.PositiveIntegerField()
    muted = models.BooleanField(default=False, help_text="the rule was muted: nobody was notified")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "sequence"], name="uniq_alert_event_seq")
        ]
        ordering = ["-at", "-sequence"]
        indexes = [models.Index(fields=["project", "-at"])]

    def __str__(self) -> str:
        return f"{self.rule_name} #{self.sequence} {self.kind}"


class Delivery(models.Model):
    """The notification of one event on one channel; sent at most once after a success."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="deliveries")
    channel = models.ForeignKey(
        NotificationChannel, on_delete=models.CASCADE, related_name="deliveries"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # Whoever moves ``lease_until`` into the future (one conditional UPDATE) may send.
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["event", "channel"], name="uniq_delivery")]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        ordering = ["id"]

    def __str__(self) -> str:
        return f"event {self.event_id} → channel {self.channel_id}: {self.status}"


class DigestSent(models.Model):
    """The weekly digest of one organization and ISO week: at most one, claimed like a delivery."""

    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="+"
    )
    week_start = models.DateField()
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.PositiveIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "week_start"], name="uniq_digest_week")
        ]
        ordering = ["-week_start"]

    def __str__(self) -> str:
        return f"digest {self.organization_id} {self.week_start}"
