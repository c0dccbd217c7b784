"""Admin forms. The stored credential is write-only: never put back into a page."""

from __future__ import annotations

from django import forms

from marketplaces.models import MarketplaceAccount, Product


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


MAX_IMAGES = 20
MAX_IMAGE_URL = 2000


def clean_image_urls(value: object) -> list[str]:
    """A product's ``images``: a list of http(s) URLs (the first is the cover).

    Blank means no image. Anything else (a dict, numbers, other schemes, control
    characters, which PostgreSQL's jsonb refuses as ``\\u0000``) is a form error rather
    than a failed save or a step that fails later. Addresses are checked when an image is
    fetched (config.netsafety), not here: DNS answers change.
    """
    from urllib.parse import urlsplit

    if value in (None, "", []):
        return []
    if not isinstance(value, list):
        raise forms.ValidationError('Enter a list of image URLs, e.g. ["https://…/1.jpg"].')
    if len(value) > MAX_IMAGES:
        raise forms.ValidationError(f"At most {MAX_IMAGES} images.")
    urls = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise forms.ValidationError("Each image is a URL (text).")
        url = item.strip()
        if len(url) > MAX_IMAGE_URL or any(ord(c) < 32 or ord(c) == 127 for c in url):
            raise forms.ValidationError("An image URL is too long or has control characters.")
        try:
            parts = urlsplit(url)
        except ValueError:
            raise forms.ValidationError(f"Not a URL: {url[:80]}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise forms.ValidationError(f"Image URLs are http(s) URLs: {url[:80]}")
        urls.append(url)
    return urls


class ProductForm(forms.ModelForm):
    """The product admin's form: image URLs checked (see ``clean_image_urls``)."""

    class Meta:
        model = Product
        fields = [
            "sku", "title", "description", "price", "currency", "quantity",
            "brand", "size", "condition", "category", "images",
        ]  # fmt: skip

    def clean_images(self) -> list[str]:
        return clean_image_urls(self.cleaned_data.get("images"))
