from django.conf import settings
from django.db import models
from django.utils import timezone

SCOPES = ("ingest", "read", "admin")


class ApiKey(models.Model):
    """A project's key. Only the SHA-256 of the key is stored; the key itself is shown once."""

    project = models.ForeignKey("orgs.Project", on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=120, blank=True)
    # The first characters after ``kp_``: public, indexed, used to find the row and shown in lists.
    lookup = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"kp_{self.lookup}… ({', '.join(self.scopes)})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def masked(self) -> str:
        return f"kp_{self.lookup}…"
