"""Per-organization ingest rate limit: a token bucket counted in spans.

Shared through Redis when ``REDIS_URL`` is set (one atomic Lua script per request), in-process
otherwise. If Redis is unreachable the limiter fails open — ingest keeps working — and logs it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from django.conf import settings

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: rate, burst, now (s), cost → {allowed (0/1), retry_after_ms}
_LUA = """
local rate = tonumber(ARGV[1]); local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3]); local cost = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(b[1]); local ts = tonumber(b[2])
if tokens == nil then tokens = burst; ts = now end
tokens = math.min(burst, tokens + (now - ts) * rate)
local allowed = 0; local wait = 0
if tokens >= cost then tokens = tokens - cost; allowed = 1
else wait = math.ceil((cost - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 't', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, wait}
"""


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: int  # seconds, ≥ 1 when refused


class TokenBucketLimiter:
    def __init__(self, rate: float, burst: float, redis_url: str = ""):
        self.rate = float(rate)
        self.burst = float(burst)
        self._local: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._redis = None
        self._script = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
            )
            self._script = self._redis.register_script(_LUA)
        self._warned_at = 0.0

    def take(self, key: str, cost: int) -> Decision:
        if cost > self.burst:
            # A request larger than the whole burst can never pass: let it through at the cost of
            # the full bucket rather than refusing forever (the span-count limit bounds it anyway).
            cost = int(self.burst)
        if self._script is not None:
            try:
                allowed, wait_ms = self._script(
                    keys=[f"kriy:rl:{key}"], args=[self.rate, self.burst, time.time(), cost]
                )
                return Decision(
                    bool(allowed), max(1, math.ceil(int(wait_ms) / 1000)) if not allowed else 0
                )
            except Exception as exc:  # Redis down: fail open, and say so (at most every 30 s)
                now = time.monotonic()
                if now - self._warned_at > 30:
                    self._warned_at = now
                    log.warning(
                        "rate limiter: Redis unavailable, allowing ingest (fail open): %s", exc
                    )
                return Decision(True, 0)
        with self._lock:
            now = time.monotonic()
            tokens, ts = self._local.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - ts) * self.rate)
            if tokens >= cost:
                self._local[key] = (tokens - cost, now)
                return Decision(True, 0)
            self._local[key] = (tokens, now)
            return Decision(False, max(1, math.ceil((cost - tokens) / self.rate)))


_limiter: TokenBucketLimiter | None = None


def limiter() -> TokenBucketLimiter:
    global _limiter
    if _limiter is None:
        _limiter = TokenBucketLimiter(
            settings.KRIY_RATE_LIMIT_SPANS_PER_SEC,
            settings.KRIY_RATE_LIMIT_BURST,
            settings.REDIS_URL,
        )
    return _limiter


def reset_limiter() -> None:
    global _limiter
    _limiter = None
