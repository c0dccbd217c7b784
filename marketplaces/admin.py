from django.contrib import admin

from config.admin_sites import tenant_admin_site
from marketplaces.forms import MarketplaceAccountForm
from marketplaces.models import MarketplaceAccount, Product


@admin.register(Product, site=tenant_admin_site)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("sku", "title", "brand", "price", "currency", "quantity", "condition")
    search_fields = ("sku", "title", "brand")
    list_filter = ("condition", "category")


@admin.register(MarketplaceAccount, site=tenant_admin_site)
class MarketplaceAccountAdmin(admin.ModelAdmin):
    """Accounts with their credential masked everywhere (list, form, read-only view)."""

    form = MarketplaceAccountForm
    list_display = ("marketplace", "shop_id", "endpoint", "masked_token", "is_active")
    list_filter = ("marketplace", "is_active")
    # Not api_token: a search box over secrets would be an oracle for them.
    search_fields = ("shop_id",)
    readonly_fields = ("masked_token",)
    fieldsets = [
        (None, {"fields": ["marketplace", "shop_id", "base_url", "is_active"]}),
        ("Credential", {"fields": ["masked_token", "new_api_token"]}),
    ]

    @admin.display(description="API token / key")
    def masked_token(self, obj: MarketplaceAccount) -> str:
        return obj.masked_api_token if obj.pk else "—"

    @admin.display(description="API base URL")
    def endpoint(self, obj: MarketplaceAccount) -> str:
        return obj.base_url or "sandbox (SANDBOX_URL)"
