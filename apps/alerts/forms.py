"""Forms of the alert pages. The rules themselves live in services (rule_errors, channel_errors),
so the pages and the API refuse the same things with the same words."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.alerts import services
from apps.alerts.models import (
    RATE_METRICS,
    WINDOWS,
    AlertRule,
    Comparison,
    Metric,
    NotificationChannel,
)
from apps.detection.detectors import FINDING_TYPES


def _percent(x: float) -> float:
    return round(x * 100, 6)


class RuleForm(forms.Form):
    name = forms.CharField(
        max_length=120, help_text="Shown in notifications, e.g. “Support issue rate”."
    )
    metric = forms.ChoiceField(choices=Metric.choices)
    finding_type = forms.ChoiceField(
        choices=[("", "—")] + [(t, t) for t in FINDING_TYPES],
        required=False,
        help_text="Only for “Findings of one type”.",
    )
    agent = forms.CharField(
        max_length=128,
        required=False,
        label="Agent",
        help_text="Leave empty for all agents.",
        widget=forms.TextInput(attrs={"list": "agent-names", "autocomplete": "off"}),
    )
    comparison = forms.ChoiceField(choices=Comparison.choices, label="Fire when the value is")
    threshold = forms.FloatField(
        help_text="Rates in percent (20 = 20 %), the p95 duration in milliseconds, counts as a number.",
        widget=forms.NumberInput(attrs={"step": "any"}),
    )
    window_seconds = forms.TypedChoiceField(
        choices=list(WINDOWS.items()), coerce=int, initial=3600, label="Over the last"
    )
    min_traces = forms.IntegerField(
        min_value=0,
        max_value=1_000_000,
        initial=20,
        label="Minimum traces",
        help_text="Rates and the p95 duration decide only with at least this many traces in the window.",
    )
    muted = forms.BooleanField(
        required=False,
        help_text="A muted rule is still evaluated and keeps its history, but notifies nobody.",
    )
    channels = forms.ModelMultipleChoiceField(
        queryset=NotificationChannel.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Notify",
    )

    def __init__(self, *args: Any, project: Any, rule: AlertRule | None = None, **kwargs: Any):
        if rule is not None and "initial" not in kwargs:
            initial = services.rule_values(rule)
            if rule.metric in RATE_METRICS:
                initial["threshold"] = _percent(rule.threshold)
            kwargs["initial"] = initial
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["channels"].queryset = NotificationChannel.objects.filter(
            project=project
        ).order_by("name")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        metric = data.get("metric")
        threshold = data.get("threshold")
        if metric in RATE_METRICS and threshold is not None:
            if not 0 <= threshold <= 100:
                self.add_error("threshold", "A rate is a percentage between 0 and 100.")
                return data
            data["threshold"] = threshold / 100
        values = self.service_data()
        for name, message in services.rule_errors(project=self.project, data=values).items():
            self.add_error(
                name if name in self.fields else None, message[0].upper() + message[1:] + "."
            )
        return data

    def service_data(self) -> dict[str, Any]:
        d = self.cleaned_data
        return {
            "name": d.get("name", ""),
            "metric": d.get("metric"),
            "finding_type": d.get("finding_type") or "",
            "agent": d.get("agent") or "",
            "comparison": d.get("comparison"),
            "threshold": d.get("threshold"),
            "window_seconds": d.get("window_seconds"),
            "min_traces": d.get("min_traces"),
            "muted": bool(d.get("muted")),
            "channels": [c.pk for c in d.get("channels") or []],
        }


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=120, help_text="e.g. “On-call webhook” or “#agents-alerts”.")
    kind = forms.ChoiceField(choices=NotificationChannel.Kind.choices)
    url = forms.CharField(
        max_length=2000,
        required=False,
        label="URL",
        help_text="Webhook: your endpoint. Slack: the incoming-webhook URL. http(s) only; redirects are not followed.",
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
    )
    emails = forms.CharField(
        required=False,
        label="Email addresses",
        help_text="Email channels: one address per line or separated by commas.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    rotate_secret = forms.BooleanField(
        required=False,
        label="Rotate the signing secret",
        help_text="Webhooks: a new secret is shown once; the old one stops working at once.",
    )

    def __init__(self, *args: Any, channel: NotificationChannel | None = None, **kwargs: Any):
        if channel is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": channel.name,
                "kind": channel.kind,
                "url": channel.url,
                "emails": "\n".join(channel.emails),
            }
        super().__init__(*args, **kwargs)
        self.channel = channel
        if channel is None:
            del self.fields["rotate_secret"]
        else:
            self.fields["kind"].disabled = True
            self.fields["kind"].help_text = "The kind of a channel cannot change."
            if channel.kind != NotificationChannel.Kind.WEBHOOK:
                del self.fields["rotate_secret"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.errors:
            return data
        values = self.service_data()
        kind_fixed = self.channel.kind if self.channel else None
        for name, message in services.channel_errors(data=values, kind_fixed=kind_fixed).items():
            self.add_error(
                name if name in self.fields else None, message[0].upper() + message[1:] + "."
            )
        return data

    def service_data(self) -> dict[str, Any]:
        d = self.cleaned_data
        raw = d.get("emails") or ""
        emails = [e.strip() for e in raw.replace(",", "\n").splitlines() if e.strip()]
        return {
            "name": d.get("name", ""),
            "kind": d.get("kind"),
            "url": (d.get("url") or "").strip(),
            "emails": emails,
        }
