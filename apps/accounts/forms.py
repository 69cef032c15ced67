from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth import password_validation

from apps.accounts.models import User


class SignUpForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    name = forms.CharField(max_length=150, required=False, label="Your name")
    organization = forms.CharField(max_length=120, label="Organization name", required=False)
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters; not only digits, not a common password.",
    )

    def __init__(self, *args: Any, invitation: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.invitation = invitation
        if invitation is None:
            self.fields["organization"].required = True
        else:
            self.fields["organization"].widget = forms.HiddenInput()
            self.initial["email"] = invitation.email

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError(
                "An account with this email already exists. Sign in instead."
            )
        return email

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        password = data.get("password")
        if password:
            probe = User(email=data.get("email", ""), name=data.get("name", ""))
            try:
                password_validation.validate_password(password, probe)
            except forms.ValidationError as exc:
                self.add_error("password", exc)
        return data


class SignInForm(forms.Form):
    email = forms.EmailField(
        max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    password = forms.CharField(
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
