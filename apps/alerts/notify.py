"""Sending one notification on one channel: signed webhook, Slack-compatible hook, or email.

Outbound HTTP uses ``urllib.request`` through an opener that has only the HTTP and HTTPS
handlers: no ``file:``/``ftp:``/``data:`` handlers, no proxy from the environment, and no redirect
handler — a 3xx answer is reported, never followed (so a redirect cannot lead anywhere else).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail

from apps.alerts.models import NotificationChannel

USER_AGENT = "kriyplatform-alerts/1.0"


def timeout_seconds() -> float:
    return float(getattr(settings, "KRIY_ALERT_HTTP_TIMEOUT", 5))


@dataclass(slots=True)
class SendResult:
    ok: bool
    status_code: int | None = None
    error: str = ""
    retryable: bool = False
    duration_ms: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "status_code": self.status_code,
            "error": self.error or None,
            "duration_ms": round(self.duration_ms, 1),
        }


@dataclass(slots=True)
class Message:
    """What a notification says, in every channel's form."""

    event_type: str  # alert.firing, alert.resolved, alert.test
    title: str
    summary: str
    url: str
    payload: dict[str, Any] = field(default_factory=dict)
    delivery_id: str = ""


def url_error(url: str) -> str | None:
    """Why this URL cannot be a notification target, or None."""
    if not url:
        return "a URL is required"
    if len(url) > 2000:
        return "at most 2000 characters"
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return "not a valid URL"
    if u.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not u.hostname:
        return "needs a host name"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    return None


def _private_target(host: str) -> bool:
    """True when the host resolves to a loopback/private/link-local address. Only checked when
    ``KRIY_ALERT_BLOCK_PRIVATE_URLS`` is on (hosted deployments: no requests into the network)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # the send itself reports the resolution error
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            return True
    return False


def _opener() -> urllib.request.OpenerDirector:
    opener = urllib.request.OpenerDirector()
    opener.add_handler(urllib.request.HTTPHandler())
    opener.add_handler(urllib.request.HTTPSHandler(context=ssl.create_default_context()))
    return opener


def post_json(url: str, body: bytes, headers: dict[str, str]) -> SendResult:
    """POST ``body``; 2xx is delivered. 408, 429, 5xx and network errors may be retried."""
    problem = url_error(url)
    if problem:
        return SendResult(ok=False, error=f"url: {problem}")
    host = urlsplit(url).hostname or ""
    if getattr(settings, "KRIY_ALERT_BLOCK_PRIVATE_URLS", False) and _private_target(host):
        return SendResult(ok=False, error="url: resolves to a private or loopback address")
    req = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) above
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
    )
    started = time.perf_counter()
    try:
        with _opener().open(req, timeout=timeout_seconds()) as resp:
            code = resp.status
            snippet = resp.read(300).decode("utf-8", "replace").strip()
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return SendResult(
            ok=False,
            error=f"request failed: {reason}"[:480],
            retryable=True,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
    elapsed = (time.perf_counter() - started) * 1000
    if 200 <= code < 300:
        return SendResult(ok=True, status_code=code, duration_ms=elapsed)
    if 300 <= code < 400:
        error = f"HTTP {code}: redirects are not followed; use the final URL"
    else:
        error = f"HTTP {code}" + (f": {snippet}" if snippet else "")
    return SendResult(
        ok=False,
        status_code=code,
        error=error[:480],
        retryable=code in (408, 425, 429) or code >= 500,
        duration_ms=elapsed,
    )


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the raw request body with the channel secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(message: Message, timestamp: int) -> bytes:
    # The timestamp is inside the signed body too, so a receiver can refuse replays.
    doc = {"type": message.event_type, "timestamp": timestamp, **message.payload}
    doc.setdefault("summary", message.summary)
    doc.setdefault("url", message.url)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def send_webhook(channel: NotificationChannel, message: Message) -> SendResult:
    ts = int(time.time())
    body = webhook_body(message, ts)
    headers = {
        "X-Kriy-Event": message.event_type,
        "X-Kriy-Timestamp": str(ts),
        "X-Kriy-Signature": signature(channel.secret, body),
    }
    if message.delivery_id:
        # Stable across retries of one delivery: receivers can drop a repeat after a lost answer.
        headers["X-Kriy-Delivery"] = message.delivery_id
    return post_json(channel.url, body, headers)


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (user content must not become links or mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(message: Message) -> str:
    icon = {
        "alert.firing": ":red_circle:",
        "alert.resolved": ":large_green_circle:",
    }.get(message.event_type, ":information_source:")
    lines = [f"{icon} *{slack_escape(message.title)}*", slack_escape(message.summary)]
    if message.url:
        lines.append(f"<{message.url}|Open in kriyplatform>")
    return "\n".join(lines)


def send_slack(channel: NotificationChannel, message: Message) -> SendResult:
    body = json.dumps({"text": slack_text(message)}).encode()
    return post_json(channel.url, body, {})


def email_text(message: Message) -> str:
    return f"{message.title}\n\n{message.summary}\n\n{message.url}\n\n— kriyplatform\n"


def send_email(channel: NotificationChannel, message: Message) -> SendResult:
    if not channel.emails:
        return SendResult(ok=False, error="emails: no addresses")
    started = time.perf_counter()
    try:
        sent = send_mail(
            subject=f"[kriyplatform] {message.title}",
            message=email_text(message),
            from_email=None,
            recipient_list=list(channel.emails),
            fail_silently=False,
        )
    except Exception as exc:  # SMTP and backend errors of any kind: report, retry later
        return SendResult(
            ok=False,
            error=f"email failed: {exc}"[:480],
            retryable=True,
            duration_ms=(time.perf_counter() - started) * 1000,
        )
    elapsed = (time.perf_counter() - started) * 1000
    if not sent:
        return SendResult(ok=False, error="the email backend sent nothing", retryable=True)
    return SendResult(ok=True, duration_ms=elapsed)


def send(channel: NotificationChannel, message: Message) -> SendResult:
    kinds = NotificationChannel.Kind
    if channel.kind == kinds.WEBHOOK:
        return send_webhook(channel, message)
    if channel.kind == kinds.SLACK:
        return send_slack(channel, message)
    if channel.kind == kinds.EMAIL:
        return send_email(channel, message)
    return SendResult(ok=False, error=f"kind: unknown channel kind {channel.kind!r}")
