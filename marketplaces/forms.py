"""Admin forms. The stored credential is write-only: never put back into a page."""

from __future__ import annotations

from django import forms

from marketplaces.models import MarketplaceAccount


class MarketplaceAccountForm(forms.ModelForm):
    """Edits an account without ever rendering its secret.

    ``api_token`` is not a form field; ``new_api_token`` is a password input that
    never renders a value. Left blank on an existing account, the stored token stays,
    unless the marketplace or base URL changes: then the token must be entered again.
    The base URL must be one of the marketplace's known addresses (``Model.clean``).
    """

    new_api_token = forms.CharField(
        label="API token / key",
        required=False,
        strip=True,
        max_length=512,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored token.",
    )

    class Meta:
        model = MarketplaceAccount
        fields = ["marketplace", "shop_id", "base_url", "is_active"]

    def clean(self):
        cleaned = super().clean() or {}
        if not cleaned.get("new_api_token"):
            if not self.instance.pk:
                self.add_error("new_api_token", "A new account needs its API token / key.")
            elif {"marketplace", "base_url"} & set(self.changed_data):
                # Else pointing the URL at one's own server would receive the stored token.
                self.add_error(
                    "new_api_token",
                    "Changing the marketplace or API base URL needs the API token / key again.",
                )
        return cleaned

    def save(self, commit: bool = True) -> MarketplaceAccount:
        token = self.cleaned_data.get("new_api_token")
        if token:
            self.instance.api_token = token
        return super().save(commit=commit)
