from decimal import Decimal
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from marketplaces.secrets import mask_secret
from orchestration.steps import PermanentStepError


class Product(models.Model):
    """A seller's product, the thing jobs publish to marketplaces."""

    class Condition(models.TextChoices):
        NEW = "new", "New with tags"
        LIKE_NEW = "like_new", "New without tags"
        VERY_GOOD = "very_good", "Very good"
        GOOD = "good", "Good"
        SATISFACTORY = "satisfactory", "Satisfactory"

    sku = models.CharField(max_length=64, unique=True)
    title = models.CharField(max_length=140)
    description = models.TextField(blank=True)
    price = models.DecimalField(
        max_digits=10, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))]
    )
    currency = models.CharField(max_length=3, default="EUR")
    quantity = models.PositiveIntegerField(default=1)
    brand = models.CharField(max_length=80, blank=True)
    size = models.CharField(max_length=40, blank=True)
    condition = models.CharField(max_length=20, choices=Condition.choices, default=Condition.GOOD)
    category = models.CharField(max_length=120, blank=True)
    images = models.JSONField(default=list, blank=True, help_text="Image URLs, first is the cover")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]

    def __str__(self) -> str:
        return f"{self.sku} · {self.title}"


class Marketplace(models.TextChoices):
    VINTED = "vinted", "Vinted"
    EBAY = "ebay", "eBay"
    ETSY = "etsy", "Etsy"


def _origin(url: str) -> tuple[str, str, str]:
    """(scheme, host, port) of ``url``; the port is "" when the URL names none."""
    parts = urlsplit(url.strip())
    netloc = parts.netloc.rpartition("@")[2].lower()
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = netloc.partition(":")
    return parts.scheme.lower(), host, port


def base_url_problem(marketplace: str, url: str) -> str | None:
    """Why ``url`` may not receive ``marketplace``'s token, or None when it may.

    It must start with one of ``settings.MARKETPLACE_BASE_URLS[marketplace]`` (same
    scheme, host and port, then a path under the allowed one). An allowed entry with
    the port ``*`` (development: ``http://127.0.0.1:*``) takes any port.
    """
    allowed = settings.MARKETPLACE_BASE_URLS.get(marketplace, [])
    try:
        scheme, host, port = _origin(url)
        path = urlsplit(url).path.rstrip("/")
    except ValueError:
        return "this is not a valid URL"
    if "@" in urlsplit(url).netloc:
        return "a base URL cannot carry credentials"
    for entry in allowed:
        a_scheme, a_host, a_port = _origin(entry)
        a_path = urlsplit(entry).path.rstrip("/")
        if (scheme, host) != (a_scheme, a_host) or (a_port != "*" and port != a_port):
            continue
        if path == a_path or path.startswith(a_path + "/"):
            return None
    shown = ", ".join(allowed) or "none configured"
    return f"not a known {marketplace} API address (allowed: {shown})"


class MarketplaceAccount(models.Model):
    """The seller's account on one marketplace: where to send requests and with what secret.

    Lives in the tenant's schema, so "the seller" is implicit. At most one active
    account per marketplace: that is the one the adapters use.
    """

    marketplace = models.CharField(max_length=20, choices=Marketplace.choices)
    shop_id = models.CharField(
        "shop / seller id",
        max_length=64,
        help_text="Etsy shop id, eBay seller username, Vinted member id.",
    )
    base_url = models.URLField(
        "API base URL",
        blank=True,
        help_text="Blank: the sandbox (settings.SANDBOX_URL).",
    )
    # Never rendered back: the admin shows `masked_api_token` and takes a new value
    # through a write-only field (see marketplaces.forms).
    api_token = models.CharField(
        "API token / key",
        max_length=512,
        help_text="eBay OAuth token, Etsy x-api-key, Vinted bridge token.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["marketplace", "shop_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["marketplace"],
                condition=models.Q(is_active=True),
                name="marketplaces_one_active_account_per_marketplace",
                violation_error_message="This seller already has an active account on this marketplace.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_marketplace_display()} · {self.shop_id}"

    def save(self, *args, **kwargs) -> None:
        """Every writer (admin, services, shell) gets the same two guards as the form."""
        if self.destination_changed_without_token():
            raise ValidationError(
                "Changing the marketplace or API base URL needs the API token / key again."
            )
        problem = base_url_problem(self.marketplace, self.destination_url)
        if problem:
            raise ValidationError(f"API base URL {self.destination_url}: {problem}.")
        super().save(*args, **kwargs)
        self._loaded_destination = (self.marketplace, self.base_url)
        self._loaded_token = self.api_token

    # Where the token goes, as loaded: changing it needs the token again (see save()).
    _loaded_destination: tuple[str, str] | None = None
    _loaded_token: str | None = None

    @classmethod
    def from_db(cls, db, field_names, values, *, fetch_mode=None):
        instance = super().from_db(db, field_names, values, fetch_mode=fetch_mode)
        if {"marketplace", "base_url", "api_token"} <= set(field_names):
            instance._loaded_destination = (instance.marketplace, instance.base_url)
            instance._loaded_token = instance.api_token
        return instance

    def clean(self) -> None:
        super().clean()
        problem = base_url_problem(self.marketplace, self.destination_url)
        if problem:
            field = "base_url" if self.base_url else "marketplace"
            raise ValidationError({field: f"API base URL {self.destination_url}: {problem}."})

    def destination_changed_without_token(self) -> bool:
        """The marketplace or base URL changed but the stored token did not: saving that
        would send the old token somewhere new (token exfiltration)."""
        return (
            self._loaded_destination is not None
            and self._loaded_destination != (self.marketplace, self.base_url)
            and self._loaded_token == self.api_token
        )

    @property
    def destination_url(self) -> str:
        """Where requests would go: the account's own URL, or the sandbox's (unchecked)."""
        return (self.base_url or settings.SANDBOX_URL).rstrip("/")

    @property
    def effective_base_url(self) -> str:
        """The URL the adapters send the token to: ``destination_url`` if it is one of the
        marketplace's known addresses; else the step fails for good (an account stored
        before the check, or settings that changed since)."""
        url = self.destination_url
        problem = base_url_problem(self.marketplace, url)
        if problem:
            raise PermanentStepError(
                f"{self.get_marketplace_display()} account {self.shop_id}: API base URL "
                f"{url} refused: {problem}; fix it in the admin (with the token)",
                detail={"marketplace": self.marketplace},
            )
        return url

    @property
    def masked_api_token(self) -> str:
        return mask_secret(self.api_token)
