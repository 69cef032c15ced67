from django.db import models
from django.utils import timezone


class IssueStatus(models.TextChoices):
    OPEN = "open", "Open"
    RESOLVED = "resolved", "Resolved"
    IGNORED = "ignored", "Ignored"
    REGRESSED = "regressed", "Regressed"


class Issue(models.Model):
    """Findings grouped by (project, agent, type, span name) — spans.md §4."""

    project = models.ForeignKey("orgs.Project", on_delete=models.CASCADE, related_name="issues")
    agent = models.CharField(max_length=128)
    type = models.CharField(max_length=64)
    span_name = models.CharField(max_length=256)
    status = models.CharField(max_length=16, choices=IssueStatus.choices, default=IssueStatus.OPEN)
    count = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "agent", "type", "span_name"], name="uniq_issue_group"
            )
        ]
        indexes = [models.Index(fields=["project", "status", "-last_seen"])]
        ordering = ["-last_seen", "id"]

    def __str__(self) -> str:
        return f"{self.type} on {self.span_name} ({self.agent})"


class IssueEvent(models.Model):
    """A change of an issue's life: new, regressed, resolved, ignored, reopened."""

    class Kind(models.TextChoices):
        NEW = "new", "New"
        REGRESSED = "regressed", "Regressed"
        RESOLVED = "resolved", "Resolved"
        IGNORED = "ignored", "Ignored"
        REOPENED = "reopened", "Reopened"

    issue = models.ForeignKey(Issue, on_delete=models.CASCADE, related_name="events")
    project = models.ForeignKey("orgs.Project", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.CharField(max_length=200, blank=True)
    # when it happened in the data (a new issue: its first finding) — reports place it by this
    at = models.DateTimeField(default=timezone.now, db_index=True)
    # when the platform noticed it — alerts look at this: an issue is news when it is first seen,
    # even if its first finding (a late or backfilled trace) is older than the alert window
    recorded_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["project", "kind", "at"])]

    def __str__(self) -> str:
        return f"{self.issue_id} {self.kind}"
