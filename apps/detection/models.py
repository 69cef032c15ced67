from django.db import models
from django.utils import timezone


class AgentContract(models.Model):
    """What an agent must do (spans.md §3): required step names and a latency SLO for its traces."""

    project = models.ForeignKey("orgs.Project", on_delete=models.CASCADE, related_name="contracts")
    agent = models.CharField(max_length=128)
    required_steps = models.JSONField(default=list, blank=True)
    latency_slo_ms = models.PositiveIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "agent"], name="uniq_contract_agent")
        ]
        ordering = ["agent"]

    def __str__(self) -> str:
        return f"contract of {self.agent}"

    def as_dict(self) -> dict:
        out: dict = {}
        if self.required_steps:
            out["required_steps"] = list(self.required_steps)
        if self.latency_slo_ms is not None:
            out["latency_slo_ms"] = self.latency_slo_ms
        return out


class JudgeWatermark(models.Model):
    """How far (by span ingest version, in ns) the judge has looked."""

    key = models.CharField(max_length=32, unique=True)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.key} @ {self.version}"
