from django import forms

from apps.apikeys.models import SCOPES
from apps.orgs.models import Role


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=120)


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(
        choices=[(r.value, r.label) for r in Role if r != Role.OWNER], initial=Role.MEMBER
    )


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class RetentionForm(forms.Form):
    retention_days = forms.IntegerField(min_value=1, max_value=3650, label="Span retention (days)")


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=120,
        required=False,
        help_text="Where this key is used, e.g. “support-agent prod”.",
    )
    scopes = forms.MultipleChoiceField(
        choices=[(s, s) for s in SCOPES],
        initial=["ingest"],
        widget=forms.CheckboxSelectMultiple,
        help_text="ingest: send spans · read: read traces, issues and metrics · admin: contracts and alert rules",
    )
