from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models

from marketplaces.secrets import mask_secret


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

    @property
    def effective_base_url(self) -> str:
        """The URL requests go to: the account's own, or the sandbox's."""
        return (self.base_url or settings.SANDBOX_URL).rstrip("/")

    @property
    def masked_api_token(self) -> str:
        return mask_secret(self.api_token)
