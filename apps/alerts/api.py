"""Alert rules and notification channels over the API (scope ``admin``).

Rates are fractions here (0.2 = 20 %), like everywhere else in the API; the pages take
percentages. Validation errors name the field and the rule:
``{"error": "threshold: issue_rate is a fraction: …", "fields": {"threshold": ["…"]}}``.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.alerts import selectors, services
from apps.alerts.models import (
    WINDOWS,
    AlertEvent,
    AlertRule,
    AlertState,
    Comparison,
    Metric,
    NotificationChannel,
)
from apps.orgs.tenancy import ProjectApiView
from kriyplatform.params import int_param

_WINDOW_HELP = "seconds, one of " + ", ".join(f"{s} ({label})" for s, label in WINDOWS.items())


def _actor(request: Request) -> Any:
    return request.user if getattr(request.user, "pk", None) else "api key"


# --- serializers (input) ---------------------------------------------------------------------------


class RuleInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    metric = serializers.ChoiceField(choices=Metric.values)
    finding_type = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="finding_count only: the finding type to count",
    )
    agent = serializers.CharField(
        max_length=128,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="an agent name; null or empty for all agents",
    )
    comparison = serializers.ChoiceField(choices=Comparison.values, required=False)
    threshold = serializers.FloatField(
        help_text="rates: a fraction 0..1; p95_duration_ms: milliseconds; counts: a number"
    )
    window_seconds = serializers.ChoiceField(
        choices=sorted(WINDOWS),
        help_text=_WINDOW_HELP,
        error_messages={"invalid_choice": "must be one of " + ", ".join(map(str, WINDOWS))},
    )
    min_traces = serializers.IntegerField(
        min_value=0,
        max_value=1_000_000,
        required=False,
        help_text="rates and p95: the traces the window needs before the rule can fire (default 20)",
    )
    muted = serializers.BooleanField(
        required=False, help_text="a muted rule is evaluated but notifies nobody"
    )
    channels = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        max_length=50,
        help_text="ids of this project's channels to notify",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        for key in ("finding_type", "agent"):
            if key in attrs and attrs[key] is None:
                attrs[key] = ""
        rule: AlertRule | None = self.context.get("rule")
        # PATCH changes the given fields; POST and PUT give the omitted optional ones defaults
        base = services.rule_values(rule) if rule is not None and self.partial else {}
        merged = {**services.RULE_DEFAULTS, **base, **attrs}
        errors = services.rule_errors(project=self.context["project"], data=merged)
        if errors:
            raise serializers.ValidationError({k: [v] for k, v in errors.items()})
        return attrs


class ChannelInSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=120)
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.values)
    url = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        allow_null=True,
        help_text="webhook and slack: an http(s) URL (redirects are not followed)",
    )
    emails = serializers.ListField(
        child=serializers.CharField(max_length=254),
        required=False,
        max_length=services.MAX_EMAILS,
        help_text="email: the addresses",
    )
    rotate_secret = serializers.BooleanField(
        required=False, default=False, help_text="PUT, webhooks: issue a new signing secret"
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs["url"] = attrs.get("url") or ""
        channel: NotificationChannel | None = self.context.get("channel")
        errors = services.channel_errors(
            data=attrs, kind_fixed=channel.kind if channel is not None else None
        )
        if errors:
            raise serializers.ValidationError({k: [v] for k, v in errors.items()})
        return attrs


# --- serializers (output, for the schema) ------------------------------------------------------------


class RuleOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    metric = serializers.ChoiceField(choices=Metric.values)
    finding_type = serializers.CharField(allow_null=True)
    agent = serializers.CharField(allow_null=True)
    comparison = serializers.ChoiceField(choices=Comparison.values)
    threshold = serializers.FloatField()
    window_seconds = serializers.IntegerField()
    min_traces = serializers.IntegerField()
    muted = serializers.BooleanField()
    channels = serializers.ListField(child=serializers.IntegerField())
    description = serializers.CharField(help_text="the condition in plain language")
    state = serializers.ChoiceField(choices=AlertState.values)
    state_changed_at = serializers.DateTimeField(allow_null=True)
    last_evaluated_at = serializers.DateTimeField(allow_null=True)
    last_value = serializers.FloatField(allow_null=True)
    last_traces = serializers.IntegerField(allow_null=True)
    last_note = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class DeliveryOutSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField()
    channel_name = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    response_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)


class EventOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    sequence = serializers.IntegerField()
    transition = serializers.ChoiceField(choices=AlertEvent.Kind.values)
    at = serializers.DateTimeField()
    value = serializers.FloatField(allow_null=True)
    traces = serializers.IntegerField(allow_null=True)
    metric = serializers.CharField()
    finding_type = serializers.CharField(allow_null=True)
    agent = serializers.CharField(allow_null=True)
    comparison = serializers.CharField()
    threshold = serializers.FloatField()
    window_seconds = serializers.IntegerField()
    muted = serializers.BooleanField()
    summary = serializers.CharField()
    deliveries = DeliveryOutSerializer(many=True)


class ChannelOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.values)
    url = serializers.CharField(allow_null=True)
    emails = serializers.ListField(child=serializers.CharField(), allow_null=True)
    secret_hint = serializers.CharField(allow_null=True)
    secret = serializers.CharField(
        required=False, help_text="only in the answer that created or rotated it"
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


_TEST_OUT = inline_serializer(
    "ChannelTestResult",
    {
        "ok": serializers.BooleanField(),
        "status_code": serializers.IntegerField(allow_null=True),
        "error": serializers.CharField(allow_null=True),
        "duration_ms": serializers.FloatField(),
    },
)


# --- views ---------------------------------------------------------------------------------------------


class AlertRuleListApi(ProjectApiView):
    required_scope = "admin"

    @extend_schema(
        operation_id="alert_rules_list",
        summary="The project's alert rules",
        responses=inline_serializer("AlertRuleList", {"rules": RuleOutSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        rules = selectors.rules_query(self.tenant.scoped(AlertRule))
        return Response({"rules": [selectors.rule_out(r) for r in rules]})

    @extend_schema(
        operation_id="alert_rule_create",
        summary="Create an alert rule",
        request=RuleInSerializer,
        responses={201: RuleOutSerializer},
    )
    def post(self, request: Request) -> Response:
        s = RuleInSerializer(data=request.data, context={"project": self.tenant.project})
        s.is_valid(raise_exception=True)
        rule = services.rule_create(
            project=self.tenant.project, actor=_actor(request), data=s.validated_data
        )
        return Response(selectors.rule_out(rule), status=status.HTTP_201_CREATED)


class AlertRuleDetailApi(ProjectApiView):
    required_scope = "admin"

    def _rule(self, rule_id: int) -> AlertRule:
        return self.tenant.get(selectors.rules_query(self.tenant.scoped(AlertRule)), pk=rule_id)

    @extend_schema(
        operation_id="alert_rule_get", summary="One alert rule", responses=RuleOutSerializer
    )
    def get(self, request: Request, rule_id: int) -> Response:
        return Response(selectors.rule_out(self._rule(rule_id)))

    def _write(self, request: Request, rule_id: int, *, partial: bool) -> Response:
        rule = self._rule(rule_id)
        s = RuleInSerializer(
            data=request.data,
            partial=partial,
            context={"project": self.tenant.project, "rule": rule},
        )
        s.is_valid(raise_exception=True)
        with transaction.atomic():
            data = dict(s.validated_data)
            if not partial:
                data = {**services.RULE_DEFAULTS, **data}
            services.rule_update(rule=rule, actor=_actor(request), data=data)
        return Response(selectors.rule_out(self._rule(rule_id)))

    @extend_schema(
        operation_id="alert_rule_replace",
        summary="Replace an alert rule",
        request=RuleInSerializer,
        responses=RuleOutSerializer,
    )
    def put(self, request: Request, rule_id: int) -> Response:
        return self._write(request, rule_id, partial=False)

    @extend_schema(
        operation_id="alert_rule_update",
        summary="Change some fields of an alert rule",
        request=RuleInSerializer,
        responses=RuleOutSerializer,
    )
    def patch(self, request: Request, rule_id: int) -> Response:
        return self._write(request, rule_id, partial=True)

    @extend_schema(
        operation_id="alert_rule_delete",
        summary="Delete an alert rule and its history",
        responses={204: None},
    )
    def delete(self, request: Request, rule_id: int) -> Response:
        services.rule_delete(rule=self._rule(rule_id), actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertRuleEventsApi(ProjectApiView):
    required_scope = "admin"

    @extend_schema(
        operation_id="alert_rule_events",
        summary="The rule's transitions (firing, resolved), newest first, with their deliveries",
        parameters=[
            OpenApiParameter("limit", int, description="1-500, default 100"),
            OpenApiParameter("offset", int),
        ],
        responses=inline_serializer(
            "AlertEventList",
            {"events": EventOutSerializer(many=True), "total": serializers.IntegerField()},
        ),
    )
    def get(self, request: Request, rule_id: int) -> Response:
        rule = self.tenant.get(AlertRule, pk=rule_id)
        p = request.query_params
        limit, offset = int_param(p, "limit", 100, 1, 500), int_param(p, "offset", 0, 0, 10**9)
        qs = selectors.events_query(self.tenant.scoped(AlertEvent).filter(rule=rule))
        return Response(
            {
                "events": [selectors.event_out(e) for e in qs[offset : offset + limit]],
                "total": qs.count(),
            }
        )


class ChannelListApi(ProjectApiView):
    required_scope = "admin"

    @extend_schema(
        operation_id="channels_list",
        summary="The project's notification channels",
        responses=inline_serializer("ChannelList", {"channels": ChannelOutSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "channels": [
                    selectors.channel_out(c) for c in self.tenant.scoped(NotificationChannel)
                ]
            }
        )

    @extend_schema(
        operation_id="channel_create",
        summary="Create a channel (a webhook's signing secret is in this answer only)",
        request=ChannelInSerializer,
        responses={201: ChannelOutSerializer},
    )
    def post(self, request: Request) -> Response:
        s = ChannelInSerializer(data=request.data, context={})
        s.is_valid(raise_exception=True)
        channel, secret = services.channel_create(
            project=self.tenant.project, actor=_actor(request), data=s.validated_data
        )
        return Response(
            selectors.channel_out(channel, secret=secret), status=status.HTTP_201_CREATED
        )


class ChannelDetailApi(ProjectApiView):
    required_scope = "admin"

    @extend_schema(
        operation_id="channel_get",
        summary="One notification channel",
        responses=ChannelOutSerializer,
    )
    def get(self, request: Request, channel_id: int) -> Response:
        return Response(selectors.channel_out(self.tenant.get(NotificationChannel, pk=channel_id)))

    @extend_schema(
        operation_id="channel_replace",
        summary="Replace a channel (its kind cannot change; rotate_secret issues a new secret)",
        request=ChannelInSerializer,
        responses=ChannelOutSerializer,
    )
    def put(self, request: Request, channel_id: int) -> Response:
        channel = self.tenant.get(NotificationChannel, pk=channel_id)
        s = ChannelInSerializer(data=request.data, context={"channel": channel})
        s.is_valid(raise_exception=True)
        data = dict(s.validated_data)
        rotate = data.pop("rotate_secret", False)
        channel, secret = services.channel_update(
            channel=channel, actor=_actor(request), data=data, rotate_secret=rotate
        )
        return Response(selectors.channel_out(channel, secret=secret))

    @extend_schema(
        operation_id="channel_delete",
        summary="Delete a channel (its rules stop notifying it)",
        responses={204: None},
    )
    def delete(self, request: Request, channel_id: int) -> Response:
        channel = self.tenant.get(NotificationChannel, pk=channel_id)
        services.channel_delete(channel=channel, actor=_actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelTestApi(ProjectApiView):
    required_scope = "admin"

    @extend_schema(
        operation_id="channel_test",
        summary="Send a test notification now and report the outcome",
        request=None,
        responses=_TEST_OUT,
    )
    def post(self, request: Request, channel_id: int) -> Response:
        channel = self.tenant.get(NotificationChannel, pk=channel_id)
        return Response(services.channel_test(channel=channel, actor=_actor(request)).as_dict())
