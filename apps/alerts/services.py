"""Alert rules and channels (writes), rule evaluation and the delivery of notifications.

Metric semantics (spans.md §4), over the traces whose root started in [now - window, now]:

* ``issue_rate`` = (failed + defective) / traces; ``silent_defect_rate`` = defective / traces;
  ``failed_rate`` = failed / traces; ``p95_duration_ms`` = p95 of the roots' durations.
  These need ``min_traces`` traces in the window: with fewer (or none) the rule keeps its state.
* ``finding_count`` = the findings of ``finding_type`` in those traces (with an agent filter: the
  findings on that agent's spans, as issues count them).
* ``new_issue`` / ``regressed_issue`` = the IssueEvents of that kind in the window (by the time the
  judge recorded them). Counts are always defined: zero is a value.

The agent filter of the trace metrics is the root's agent: the traces of an agent are those
whose root span it produced.

State machine: a rule is ``ok`` or ``firing``. The transition ok → firing is the event
``firing``; firing → ok is the event ``resolved`` (there is no separate resolved state, so the
next breach fires again). Each transition is one AlertEvent (unique per rule and sequence),
written with the rule row locked, together with one Delivery per channel unless muted.
"""

from __future__ import annotations

import logging
import operator
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.alerts import notify
from apps.alerts.models import (
    ISSUE_EVENT_METRICS,
    RATE_METRICS,
    TRACE_STAT_METRICS,
    WINDOWS,
    AlertEvent,
    AlertRule,
    AlertState,
    Comparison,
    Delivery,
    Metric,
    NotificationChannel,
)
from apps.audit.services import audit_record
from apps.detection.detectors import FINDING_TYPES
from apps.issues.models import IssueEvent
from kriyplatform.clickhouse.client import ch_select
from kriyplatform.errors import AppError

log = logging.getLogger(__name__)

RULE_FIELDS = (
    "name",
    "metric",
    "finding_type",
    "agent",
    "comparison",
    "threshold",
    "window_seconds",
    "min_traces",
    "muted",
)
# What a new rule (or a PUT) gets for the optional fields it leaves out.
RULE_DEFAULTS: dict[str, Any] = {
    "comparison": Comparison.GT,
    "min_traces": 20,
    "muted": False,
    "finding_type": "",
    "agent": "",
    "channels": [],
}
MAX_ATTEMPTS = 6
MAX_EMAILS = 20
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    Comparison.GT: operator.gt,
    Comparison.GTE: operator.ge,
    Comparison.LT: operator.lt,
    Comparison.LTE: operator.le,
}


def _actor_label(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else (actor or "api key")


def _audit(project: Any, actor: Any, action: str, target: str, detail: dict[str, Any]) -> None:
    audit_record(
        organization=project.organization,
        actor=_actor_label(actor),
        action=action,
        target=f"{project.slug}: {target}"[:200],
        detail=detail,
    )


# --- rules: validation and writes -----------------------------------------------------------------


def rule_errors(*, project: Any, data: dict[str, Any]) -> dict[str, str]:
    """Every rule the data breaks, by field, as sentences that name the rule (the field name is
    added by the API's error body and the form's label)."""
    errors: dict[str, str] = {}
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = "a rule needs a name"
    elif len(name) > 120:
        errors["name"] = "at most 120 characters"
    metric = data.get("metric")
    if metric not in Metric.values:
        errors["metric"] = f"must be one of {', '.join(Metric.values)}"
    finding_type = data.get("finding_type") or ""
    if metric == Metric.FINDING_COUNT:
        if finding_type not in FINDING_TYPES:
            errors["finding_type"] = (
                f"finding_count needs a finding type: one of {', '.join(FINDING_TYPES)}"
            )
    elif finding_type:
        errors["finding_type"] = "only a finding_count rule takes a finding type"
    agent = data.get("agent") or ""
    if len(agent) > 128 or "\x00" in agent:
        errors["agent"] = "an agent name has at most 128 characters"
    if data.get("comparison") not in Comparison.values:
        errors["comparison"] = f"must be one of {', '.join(Comparison.values)}"
    threshold = data.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        errors["threshold"] = "must be a number"
    elif threshold != threshold or threshold in (float("inf"), float("-inf")):
        errors["threshold"] = "must be a finite number"
    elif metric in RATE_METRICS and not 0 <= threshold <= 1:
        errors["threshold"] = f"{metric} is a fraction: give a value between 0 and 1 (0.2 = 20 %)"
    elif threshold < 0:
        errors["threshold"] = "must not be negative"
    if data.get("window_seconds") not in WINDOWS:
        errors["window_seconds"] = "must be one of " + ", ".join(
            f"{s} ({label})" for s, label in WINDOWS.items()
        )
    min_traces = data.get("min_traces")
    if isinstance(min_traces, bool) or not isinstance(min_traces, int) or min_traces < 0:
        errors["min_traces"] = "must be a whole number of traces, 0 or more"
    elif min_traces > 1_000_000:
        errors["min_traces"] = "at most 1000000"
    channel_ids = data.get("channels") or []
    if channel_ids:
        known = set(
            NotificationChannel.objects.filter(project=project, pk__in=channel_ids).values_list(
                "pk", flat=True
            )
        )
        missing = [str(c) for c in channel_ids if c not in known]
        if missing:
            errors["channels"] = f"no channel {', '.join(missing)} in this project"
    return errors


def _check_rule(project: Any, data: dict[str, Any]) -> None:
    errors = rule_errors(project=project, data=data)
    if errors:
        field_name, message = next(iter(errors.items()))
        raise AppError(f"{field_name}: {message}", field=field_name)


def rule_values(rule: AlertRule) -> dict[str, Any]:
    out = {f: getattr(rule, f) for f in RULE_FIELDS}
    out["channels"] = sorted(c.pk for c in rule.channels.all())
    return out


def _normalize(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["name"] = (data.get("name") or "").strip()
    data["agent"] = (data.get("agent") or "").strip()
    data["finding_type"] = data.get("finding_type") or ""
    if isinstance(data.get("threshold"), int) and not isinstance(data.get("threshold"), bool):
        data["threshold"] = float(data["threshold"])
    data["channels"] = sorted(set(data.get("channels") or []))
    return data


def rule_create(*, project: Any, actor: Any, data: dict[str, Any]) -> AlertRule:
    data = _normalize({**RULE_DEFAULTS, **data})
    _check_rule(project, data)
    with transaction.atomic():
        rule = AlertRule.objects.create(
            project=project,
            created_by=actor if getattr(actor, "pk", None) else None,
            **{f: data[f] for f in RULE_FIELDS},
        )
        rule.channels.set(data["channels"])
        _audit(project, actor, "alert_rule.created", rule.name, {"rule_id": rule.pk, **data})
    return rule


def rule_update(*, rule: AlertRule, actor: Any, data: dict[str, Any]) -> AlertRule:
    """Replace the given fields (a PATCH passes some, a PUT all). The state is kept: the next
    evaluation decides under the new condition, and notifies if that is a transition."""
    before = rule_values(rule)
    merged = _normalize({**before, **data})
    _check_rule(rule.project, merged)
    changed = {k: [before[k], merged[k]] for k in merged if k in before and before[k] != merged[k]}
    with transaction.atomic():
        for f in RULE_FIELDS:
            setattr(rule, f, merged[f])
        rule.updated_at = timezone.now()
        # only the configuration: state and sequence belong to the evaluation (a stale copy
        # saved whole could move the state back under a running evaluation)
        rule.save(update_fields=[*RULE_FIELDS, "updated_at"])
        rule.channels.set(merged["channels"])
        if changed:
            _audit(
                rule.project,
                actor,
                "alert_rule.updated",
                rule.name,
                {"rule_id": rule.pk, "changed": changed},
            )
    return rule


def rule_set_muted(*, rule: AlertRule, muted: bool, actor: Any) -> AlertRule:
    if rule.muted != muted:
        AlertRule.objects.filter(pk=rule.pk).update(muted=muted, updated_at=timezone.now())
        rule.muted = muted
        action = "alert_rule.muted" if muted else "alert_rule.unmuted"
        _audit(rule.project, actor, action, rule.name, {"rule_id": rule.pk})
    return rule


def rule_delete(*, rule: AlertRule, actor: Any) -> None:
    project, name, pk = rule.project, rule.name, rule.pk
    rule.delete()
    _audit(project, actor, "alert_rule.deleted", name, {"rule_id": pk})


# --- channels --------------------------------------------------------------------------------------


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def channel_errors(*, data: dict[str, Any], kind_fixed: str | None = None) -> dict[str, str]:
    errors: dict[str, str] = {}
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = "a channel needs a name"
    elif len(name) > 120:
        errors["name"] = "at most 120 characters"
    kind = data.get("kind")
    if kind not in NotificationChannel.Kind.values:
        errors["kind"] = f"must be one of {', '.join(NotificationChannel.Kind.values)}"
    elif kind_fixed and kind != kind_fixed:
        errors["kind"] = "a channel's kind cannot change; create a new channel instead"
    if kind in (NotificationChannel.Kind.WEBHOOK, NotificationChannel.Kind.SLACK):
        problem = notify.url_error(data.get("url") or "")
        if problem:
            errors["url"] = f"{kind} channels need an http(s) URL: {problem}"
    if kind == NotificationChannel.Kind.EMAIL:
        emails = data.get("emails") or []
        if not emails:
            errors["emails"] = "an email channel needs at least one address"
        elif len(emails) > MAX_EMAILS:
            errors["emails"] = f"at most {MAX_EMAILS} addresses"
        else:
            for e in emails:
                try:
                    validate_email(e)
                except ValidationError:
                    errors["emails"] = f"{e!r} is not an email address"
                    break
    return errors


def _check_channel(data: dict[str, Any], kind_fixed: str | None = None) -> None:
    errors = channel_errors(data=data, kind_fixed=kind_fixed)
    if errors:
        field_name, message = next(iter(errors.items()))
        raise AppError(f"{field_name}: {message}", field=field_name)


def _channel_fields(data: dict[str, Any]) -> dict[str, Any]:
    kind = data["kind"]
    emails = [e.strip().lower() for e in data.get("emails") or [] if e.strip()]
    return {
        "name": data["name"].strip()[:120],
        "kind": kind,
        "url": (data.get("url") or "").strip() if kind != NotificationChannel.Kind.EMAIL else "",
        "emails": sorted(set(emails)) if kind == NotificationChannel.Kind.EMAIL else [],
    }


def channel_create(
    *, project: Any, actor: Any, data: dict[str, Any]
) -> tuple[NotificationChannel, str | None]:
    """The channel and, for a webhook, its signing secret (shown to the admin this once)."""
    data = {**data, "emails": [e.strip() for e in data.get("emails") or []]}
    _check_channel(data)
    fields = _channel_fields(data)
    secret = _new_secret() if fields["kind"] == NotificationChannel.Kind.WEBHOOK else None
    channel = NotificationChannel.objects.create(
        project=project,
        secret=secret or "",
        created_by=actor if getattr(actor, "pk", None) else None,
        **fields,
    )
    _audit(
        project,
        actor,
        "alert_channel.created",
        channel.name,
        {"channel_id": channel.pk, "kind": channel.kind, "target": channel.target_display},
    )
    return channel, secret


def channel_update(
    *, channel: NotificationChannel, actor: Any, data: dict[str, Any], rotate_secret: bool = False
) -> tuple[NotificationChannel, str | None]:
    merged = {
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "emails": list(channel.emails),
        **data,
    }
    merged["emails"] = [e.strip() for e in merged.get("emails") or []]
    _check_channel(merged, kind_fixed=channel.kind)
    fields = _channel_fields(merged)
    changed = {k: v for k, v in fields.items() if getattr(channel, k) != v}
    for k, v in fields.items():
        setattr(channel, k, v)
    secret = None
    if rotate_secret and channel.kind == NotificationChannel.Kind.WEBHOOK:
        secret = channel.secret = _new_secret()
    channel.updated_at = timezone.now()
    channel.save()
    detail: dict[str, Any] = {"channel_id": channel.pk}
    if changed:
        detail["changed"] = sorted(changed)
        _audit(channel.project, actor, "alert_channel.updated", channel.name, detail)
    if secret:
        _audit(channel.project, actor, "alert_channel.secret_rotated", channel.name, detail)
    return channel, secret


def channel_delete(*, channel: NotificationChannel, actor: Any) -> None:
    project, name, pk = channel.project, channel.name, channel.pk
    channel.delete()
    _audit(project, actor, "alert_channel.deleted", name, {"channel_id": pk})


def channel_test(*, channel: NotificationChannel, actor: Any) -> notify.SendResult:
    """Send a test notification now and report the outcome (no retries: the admin is waiting)."""
    from apps.alerts.selectors import public_url

    project = channel.project
    org = project.organization
    from django.urls import reverse

    url = public_url(reverse("alerts:channels", args=[org.slug, project.slug]))
    message = notify.Message(
        event_type="alert.test",
        title=f"Test notification for “{channel.name}”",
        summary=(
            f"This is a test from kriyplatform for project {project.name}. "
            "If you can read it, alerts will reach this channel."
        ),
        url=url,
        payload={
            "project": {"id": project.pk, "slug": project.slug, "name": project.name},
            "organization": {"slug": org.slug, "name": org.name},
            "channel": {"id": channel.pk, "name": channel.name},
        },
        delivery_id=f"test-{channel.pk}-{secrets.token_hex(6)}",
    )
    result = notify.send(channel, message)
    _audit(
        project,
        actor,
        "alert_channel.tested",
        channel.name,
        {"channel_id": channel.pk, **result.as_dict()},
    )
    return result


# --- evaluation -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Measurement:
    value: float | None
    traces: int | None
    note: str = ""

    @property
    def decisive(self) -> bool:
        return self.value is not None and not self.note


_WINDOW = (
    "project_id = {project_id:UInt64} AND start_time >= {since:DateTime64(6, 'UTC')}"
    " AND start_time <= {until:DateTime64(6, 'UTC')}"
)
_TRACE_SQL = f"""SELECT count() AS traces, countIf(outcome = 'failed') AS failed,
    countIf(outcome = 'defective') AS defective, quantileExact(0.95)(duration_ns) / 1e6 AS p95_ms
FROM {{db}}.trace_judgements FINAL WHERE {_WINDOW}"""
_FINDING_SQL = f"""SELECT count() AS traces,
    sum(arrayCount(t -> t = {{finding_type:String}}, finding_types)) AS n
FROM {{db}}.trace_judgements FINAL WHERE {_WINDOW}"""
_FINDING_AGENT_SQL = f"""SELECT count() AS traces,
    sum(arrayCount((t, a) -> t = {{finding_type:String}} AND a = {{agent:String}},
        finding_types, finding_agents)) AS n
FROM {{db}}.trace_judgements FINAL WHERE {_WINDOW} AND has(finding_agents, {{agent:String}})"""


def rule_measure(*, rule: AlertRule, now: datetime) -> Measurement:
    """The rule's metric over [now - window, now]. May raise SpanStoreUnavailable."""
    now = now.astimezone(UTC)  # bound as a UTC wall-clock time
    since = now - timedelta(seconds=rule.window_seconds)
    metric = rule.metric
    if metric in ISSUE_EVENT_METRICS:
        kind = IssueEvent.Kind.NEW if metric == Metric.NEW_ISSUE else IssueEvent.Kind.REGRESSED
        qs = IssueEvent.objects.filter(
            project_id=rule.project_id, kind=kind, recorded_at__gte=since, recorded_at__lte=now
        )
        if rule.agent:
            qs = qs.filter(issue__agent=rule.agent)
        return Measurement(value=float(qs.count()), traces=None)
    params: dict[str, Any] = {"since": since, "until": now}
    if metric == Metric.FINDING_COUNT:
        params["finding_type"] = rule.finding_type
        sql = _FINDING_SQL
        if rule.agent:
            params["agent"] = rule.agent
            sql = _FINDING_AGENT_SQL
        row = ch_select(sql, project_id=rule.project_id, params=params)[0]
        return Measurement(value=float(row["n"] or 0), traces=None)
    sql = _TRACE_SQL
    if rule.agent:
        sql += " AND agent = {agent:String}"
        params["agent"] = rule.agent
    row = ch_select(sql, project_id=rule.project_id, params=params)[0]
    traces, failed, defective = int(row["traces"]), int(row["failed"]), int(row["defective"])
    if not traces:
        return Measurement(value=None, traces=0, note="no traces in the window")
    value = {
        Metric.ISSUE_RATE: (failed + defective) / traces,
        Metric.SILENT_DEFECT_RATE: defective / traces,
        Metric.FAILED_RATE: failed / traces,
        Metric.P95_DURATION_MS: float(row["p95_ms"]),
    }[Metric(metric)]
    note = ""
    if metric in TRACE_STAT_METRICS and traces < rule.min_traces:
        note = f"{traces} of at least {rule.min_traces} traces: not enough to decide"
    return Measurement(value=value, traces=traces, note=note)


@dataclass(slots=True)
class Evaluation:
    rule_id: int
    transition: str | None = None
    event_id: int | None = None
    deliveries: tuple[int, ...] = ()
    value: float | None = None
    skipped: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "transition": self.transition,
            "event_id": self.event_id,
            "deliveries": list(self.deliveries),
            "value": self.value,
            "skipped": self.skipped or None,
        }


def rule_evaluate(*, rule_id: int, now: datetime | None = None) -> Evaluation:
    """Measure the rule and apply the state machine. Safe to run twice, concurrently, or again
    after a crash: the transition is decided on the locked rule row and recorded as an event
    unique per (rule, sequence), so a racing evaluation finds the state already moved."""
    now = now or timezone.now()
    rule = AlertRule.objects.filter(pk=rule_id).first()
    if rule is None:
        return Evaluation(rule_id, skipped="the rule no longer exists")
    # Measured before taking the lock: a slow span-store query must not hold the row.
    m = rule_measure(rule=rule, now=now)
    try:
        with transaction.atomic():
            return _apply(rule_id, m, now)
    except IntegrityError:
        # Only reachable where row locks are not enforced: the unique (rule, sequence) let the
        # other writer's event stand and rolled this one back, deliveries included.
        return Evaluation(rule_id, value=m.value, skipped="another evaluation moved the state")


def _apply(rule_id: int, m: Measurement, now: datetime) -> Evaluation:
    rule = AlertRule.objects.select_for_update().filter(pk=rule_id).first()
    if rule is None:
        return Evaluation(rule_id, skipped="the rule no longer exists")
    if rule.last_evaluated_at and rule.last_evaluated_at > now:
        return Evaluation(rule_id, value=m.value, skipped="a newer evaluation already decided")
    rule.last_evaluated_at, rule.last_value, rule.last_traces = now, m.value, m.traces
    rule.last_note = m.note[:200]
    fields = ["last_evaluated_at", "last_value", "last_traces", "last_note"]
    met: bool | None = None
    if m.decisive:
        met = _COMPARE[rule.comparison](m.value, rule.threshold)
    transition = None
    if met is True and rule.state == AlertState.OK:
        transition, new_state = AlertEvent.Kind.FIRING, AlertState.FIRING
    elif met is False and rule.state == AlertState.FIRING:
        transition, new_state = AlertEvent.Kind.RESOLVED, AlertState.OK
    if transition is None:
        rule.save(update_fields=fields)
        return Evaluation(rule_id, value=m.value)
    event = AlertEvent.objects.create(
        rule=rule,
        project_id=rule.project_id,
        sequence=rule.sequence + 1,
        kind=transition,
        at=now,
        value=m.value,
        traces=m.traces,
        rule_name=rule.name,
        metric=rule.metric,
        finding_type=rule.finding_type,
        agent=rule.agent,
        comparison=rule.comparison,
        threshold=rule.threshold,
        window_seconds=rule.window_seconds,
        muted=rule.muted,
    )
    rule.state, rule.sequence, rule.state_changed_at = new_state, event.sequence, now
    rule.save(update_fields=[*fields, "state", "sequence", "state_changed_at"])
    ids: list[int] = []
    if not rule.muted:
        ids = [
            d.pk
            for d in Delivery.objects.bulk_create(
                [Delivery(event=event, channel=c, created_at=now) for c in rule.channels.all()]
            )
        ]
    if ids:
        transaction.on_commit(lambda: deliveries_enqueue(ids))
    log.info("alert rule %s: %s (value %s)", rule_id, transition, m.value)
    return Evaluation(
        rule_id, transition=transition, event_id=event.pk, deliveries=tuple(ids), value=m.value
    )


def rules_to_evaluate() -> list[int]:
    """Every rule, muted ones included (they keep their state and history)."""
    return list(AlertRule.objects.order_by("pk").values_list("pk", flat=True))


# --- deliveries -------------------------------------------------------------------------------------


def deliveries_enqueue(ids: Iterable[int]) -> None:
    from apps.alerts.tasks import deliver_task

    for pk in ids:
        deliver_task.delay(pk)


def backoff_seconds(attempts: int) -> int:
    """30 s, 1 min, 2 min, 4 min, 8 min … capped at 15 min."""
    return min(30 * 2 ** max(attempts - 1, 0), 900)


def _lease() -> timedelta:
    """Longer than one attempt can take (the HTTP timeout), so a live attempt is never doubled;
    short, so an attempt lost with its worker is taken over soon."""
    return timedelta(seconds=notify.timeout_seconds() + 10)


def event_message(event: AlertEvent, delivery_id: int | None = None) -> notify.Message:
    from apps.alerts.selectors import event_summary, public_url, rule_path

    project = event.project
    org = project.organization
    url = public_url(rule_path(event, org.slug, project.slug))
    verb = "Firing" if event.kind == AlertEvent.Kind.FIRING else "Resolved"
    summary = event_summary(event)
    return notify.Message(
        event_type=f"alert.{event.kind}",
        title=f"{verb}: {event.rule_name}",
        summary=summary,
        url=url,
        delivery_id=str(delivery_id or ""),
        payload={
            "summary": summary,
            "url": url,
            "event": {
                "id": event.pk,
                "sequence": event.sequence,
                "transition": event.kind,
                "at": event.at.isoformat().replace("+00:00", "Z"),
                "value": event.value,
                "traces": event.traces,
            },
            "rule": {
                "id": event.rule_id,
                "name": event.rule_name,
                "metric": event.metric,
                "finding_type": event.finding_type or None,
                "agent": event.agent or None,
                "comparison": event.comparison,
                "threshold": event.threshold,
                "window_seconds": event.window_seconds,
            },
            "project": {"id": project.pk, "slug": project.slug, "name": project.name},
            "organization": {"slug": org.slug, "name": org.name},
        },
    )


@dataclass(slots=True)
class Attempt:
    delivery_id: int
    status: str
    sent: bool = False
    retry_in: int | None = None
    result: notify.SendResult | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "status": self.status,
            "sent": self.sent,
            "retry_in": self.retry_in,
            **({"result": self.result.as_dict()} if self.result else {}),
        }


def delivery_attempt(*, delivery_id: int) -> Attempt:
    """Try one delivery once. Only the caller whose UPDATE claims the lease sends; a delivered
    or failed delivery is never sent again, so retries and duplicate tasks are harmless."""
    now = timezone.now()
    claimed = (
        Delivery.objects.filter(pk=delivery_id, status=Delivery.Status.PENDING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + _lease(), attempts=F("attempts") + 1, updated_at=now)
    )
    if not claimed:
        current = Delivery.objects.filter(pk=delivery_id).values("status", "lease_until").first()
        if current is None:
            return Attempt(delivery_id, status="gone")
        retry_in = None
        if current["status"] == Delivery.Status.PENDING and current["lease_until"]:
            # another attempt holds the lease — alive, or lost with a killed worker: come back
            # when it expires, and send then only if nobody has delivered in the meantime
            retry_in = max(1, int((current["lease_until"] - now).total_seconds()) + 1)
        return Attempt(delivery_id, status=str(current["status"]), retry_in=retry_in)
    d = Delivery.objects.select_related("event__project__organization", "channel").get(
        pk=delivery_id
    )
    result = notify.send(d.channel, event_message(d.event, d.pk))
    done = timezone.now()
    update: dict[str, Any] = {
        "response_code": result.status_code,
        "last_error": result.error[:500],
        "lease_until": None,
        "updated_at": done,
    }
    retry_in = None
    if result.ok:
        update.update(status=Delivery.Status.DELIVERED, delivered_at=done, next_attempt_at=None)
    elif result.retryable and d.attempts < MAX_ATTEMPTS:
        retry_in = backoff_seconds(d.attempts)
        update["next_attempt_at"] = done + timedelta(seconds=retry_in)
    else:
        update.update(status=Delivery.Status.FAILED, next_attempt_at=None)
    Delivery.objects.filter(pk=delivery_id).update(**update)
    status = str(update.get("status", Delivery.Status.PENDING))
    if not result.ok:
        log.warning("delivery %s attempt %s: %s", delivery_id, d.attempts, result.error)
    return Attempt(delivery_id, status=status, sent=True, retry_in=retry_in, result=result)


def deliveries_due(*, now: datetime | None = None, grace_seconds: int = 120) -> list[int]:
    """Pending deliveries whose task was lost (worker crash between commit and enqueue, a lost
    retry): overdue by ``grace_seconds`` and not leased. Re-sending them is safe (lease)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=grace_seconds)
    return list(
        Delivery.objects.filter(status=Delivery.Status.PENDING)
        .filter(
            Q(next_attempt_at__lt=stale) | Q(next_attempt_at__isnull=True, created_at__lt=stale)
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("pk")
        .values_list("pk", flat=True)[:500]
    )
