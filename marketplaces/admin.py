from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from config.admin_sites import tenant_admin_site
from marketplaces.forms import MarketplaceAccountForm, ProductForm
from marketplaces.models import MarketplaceAccount, Product
from orchestration.admin import MAX_FORM_JOBS, SELECTED_SKUS_KEY


@admin.register(Product, site=tenant_admin_site)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("sku", "title", "brand", "price", "currency", "quantity", "condition")
    search_fields = ("sku", "title", "brand")
    list_filter = ("condition", "category")
    actions = ("publish_to",)

    @admin.action(description="Publish to… (start a batch of the selected products)",
                  permissions=["start_batch"])  # fmt: skip
    def publish_to(self, request, queryset):
        """Selected products (or every one matching the filter) → the start-batch page with
        their SKUs filled in; it shows the count and the resource's limits before starting."""
        skus = list(queryset.order_by("pk").values_list("sku", flat=True)[: MAX_FORM_JOBS + 1])
        if len(skus) > MAX_FORM_JOBS:
            self.message_user(
                request,
                f"At most {MAX_FORM_JOBS:,} products per batch from the admin; narrow the filter "
                "or use manage.py publish.",
                messages.ERROR,
            )
            return None
        request.session[SELECTED_SKUS_KEY] = skus
        return HttpResponseRedirect(reverse("tenant_admin:orchestration_batch_add"))

    def has_start_batch_permission(self, request) -> bool:
        return request.user.has_perm("orchestration.add_batch")


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

    # The token never reaches an error report (Django masks these POST fields there).
    @method_decorator(sensitive_post_parameters("new_api_token", "api_token"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="API token / key")
    def masked_token(self, obj: MarketplaceAccount) -> str:
        return obj.masked_api_token if obj.pk else "—"

    @admin.display(description="API base URL")
    def endpoint(self, obj: MarketplaceAccount) -> str:
        return obj.base_url or "sandbox (SANDBOX_URL)"
