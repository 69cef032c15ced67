from django.db import models
from django.utils import timezone


class DemoSeed(models.Model):
    """Marks the demo organization as seeded, so `make run` seeds it once."""

    organization = models.OneToOneField(
        "orgs.Organization", on_delete=models.CASCADE, related_name="demo_seed"
    )
    started_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)
    spans = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"demo seed of {self.organization_id}"
