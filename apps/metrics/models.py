from django.db import models


class AgentRollup(models.Model):
    """One agent's numbers for one day or ISO week (spans.md §4), recomputed from the judgements.

    Rows are overwritten whole on every recomputation, so recomputing a window is idempotent.
    """

    class Period(models.TextChoices):
        DAY = "day", "Day"
        WEEK = "week", "ISO week"

    project = models.ForeignKey("orgs.Project", on_delete=models.CASCADE, related_name="rollups")
    agent = models.CharField(max_length=128)
    period = models.CharField(max_length=4, choices=Period.choices)
    start = models.DateField(help_text="the day, or the Monday of the ISO week")
    traces = models.PositiveIntegerField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    spans = models.PositiveBigIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    defective = models.PositiveIntegerField(default=0)
    findings = models.PositiveIntegerField(default=0)
    p50_ms = models.FloatField(null=True)
    p95_ms = models.FloatField(null=True)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost_usd = models.FloatField(default=0)
    findings_by_type = models.JSONField(default=dict)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "agent", "period", "start"], name="uniq_rollup"
            )
        ]
        indexes = [models.Index(fields=["project", "period", "start"])]
        ordering = ["start", "agent"]

    def __str__(self) -> str:
        return f"{self.agent} {self.period} {self.start}"

    @property
    def issue_rate(self) -> float | None:
        return (self.failed + self.defective) / self.traces if self.traces else None

    @property
    def silent_defect_rate(self) -> float | None:
        return self.defective / self.traces if self.traces else None


class RollupWatermark(models.Model):
    key = models.CharField(max_length=32, unique=True)
    version = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key} @ {self.version}"
