"""API keys: creation, lookup (cached), revocation (immediate, cache included)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from apps.apikeys.models import SCOPES, ApiKey
from apps.audit.services import audit_record
from kriyplatform.errors import AppError

KEY_PREFIX = "kp_"
_LOOKUP_LEN = 12
# How long a key's principal stays cached. A revocation deletes the entry, which reaches every
# process through a shared cache (Redis); with a per-process memory cache the other processes
# of a multi-process deployment would hold it until it expires, so keep it short there.
_CACHE_TTL_SHARED = 300
_CACHE_TTL_LOCAL = 5


def _cache_ttl() -> int:
    return _CACHE_TTL_SHARED if settings.REDIS_URL else _CACHE_TTL_LOCAL


_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True, slots=True)
class KeyPrincipal:
    """What an authenticated key may reach: exactly one project."""

    key_id: int
    project_id: int
    organization_id: int
    scopes: frozenset[str]


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _checksum(body: str) -> str:
    """Six base62 characters of CRC32, so secret scanners can tell a real key from noise."""
    n = zlib.crc32(body.encode())
    out = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        out += _ALPHABET[r]
    return out


def _cache_key(key_hash: str) -> str:
    return f"kriy:apikey:{key_hash}"


def parse_scopes(raw: str | list[str] | None) -> list[str]:
    if raw is None or raw == "" or raw == []:
        return ["ingest", "read"]
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    scopes = sorted({s.strip() for s in items if s.strip()})
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise AppError(
            f"scopes: unknown scope {', '.join(bad) or '(none)'}; use ingest, read or admin",
            field="scopes",
        )
    return scopes


def api_key_create(
    *, project, scopes: list[str], name: str = "", created_by=None
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never retrievable again."""
    scopes = parse_scopes(scopes)
    body = base64.urlsafe_b64encode(secrets.token_bytes(30)).decode().rstrip("=")  # 40 chars
    raw = f"{KEY_PREFIX}{body}{_checksum(body)}"
    key = ApiKey.objects.create(
        project=project,
        name=name[:120],
        lookup=body[:_LOOKUP_LEN],
        key_hash=_hash(raw),
        scopes=scopes,
        created_by=created_by,
    )
    audit_record(
        organization=project.organization,
        actor=created_by,
        action="api_key.created",
        target=f"{project.slug}: {key.masked}",
        detail={"scopes": scopes, "name": key.name},
    )
    return key, raw


def looks_like_key(raw: str) -> bool:
    if not raw.startswith(KEY_PREFIX) or len(raw) != len(KEY_PREFIX) + 46:
        return False
    body, check = raw[3:-6], raw[-6:]
    return hmac.compare_digest(_checksum(body), check)


def api_key_authenticate(raw: str) -> KeyPrincipal | None:
    """The principal of a raw key, or None when it is unknown or revoked."""
    if not looks_like_key(raw):
        return None
    key_hash = _hash(raw)
    cached = cache.get(_cache_key(key_hash))
    if cached is None:
        row = (
            ApiKey.objects.filter(lookup=raw[3 : 3 + _LOOKUP_LEN])
            .values(
                "id", "key_hash", "project_id", "project__organization_id", "scopes", "revoked_at"
            )
            .first()
        )
        if row is None or not hmac.compare_digest(row["key_hash"], key_hash):
            return None
        cached = (
            row["id"],
            row["project_id"],
            row["project__organization_id"],
            tuple(row["scopes"]),
            row["revoked_at"] is not None,
        )
        cache.set(_cache_key(key_hash), cached, _cache_ttl())
    key_id, project_id, org_id, scopes, revoked = cached
    if revoked:
        return None
    _touch(key_id)
    return KeyPrincipal(key_id, project_id, org_id, frozenset(scopes))


def api_key_is_revoked(raw: str) -> bool:
    """True when the key is a real key of ours that was revoked (403 rather than 401)."""
    if not looks_like_key(raw):
        return False
    cached = cache.get(_cache_key(_hash(raw)))
    if cached is not None:
        return bool(cached[4])
    row = (
        ApiKey.objects.filter(lookup=raw[3 : 3 + _LOOKUP_LEN])
        .values("key_hash", "revoked_at")
        .first()
    )
    return bool(row and hmac.compare_digest(row["key_hash"], _hash(raw)) and row["revoked_at"])


def _touch(key_id: int) -> None:
    """Record last use at most once per interval per key: a cache flag throttles the write."""
    interval = settings.KRIY_API_KEY_LAST_USED_INTERVAL
    if cache.add(f"kriy:apikey-used:{key_id}", 1, interval):
        ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


def api_key_revoke(*, key: ApiKey, actor=None) -> ApiKey:
    with transaction.atomic():
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit_record(
                organization=key.project.organization,
                actor=actor,
                action="api_key.revoked",
                target=f"{key.project.slug}: {key.masked}",
            )
    # The cache holds the principal by key hash: drop it so the revocation holds at once.
    cache.delete(_cache_key(key.key_hash))
    return key
