"""API tokens in the tenant admin: create (the token is shown once), list, revoke."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters

from api.models import ApiToken
from api.services import token_create, token_revoke
from config.admin_sites import tenant_admin_site


class ApiTokenForm(forms.ModelForm):
    class Meta:
        model = ApiToken
        fields = ["name", "read_only"]


@admin.register(ApiToken, site=tenant_admin_site)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "token_hint", "read_only", "created_by", "created_at", "last_used_at",
                    "state"]  # fmt: skip
    list_filter = ["read_only"]
    readonly_fields = ["token_hint", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_tokens"]

    @admin.display(description="token")
    def token_hint(self, obj: ApiToken) -> str:
        return f"mpo_{obj.prefix}_…" if obj.prefix else "-"

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        return (
            "active"
            if obj.active
            else f"revoked {timezone.localtime(obj.revoked_at):%Y-%m-%d %H:%M}"
        )

    def get_fields(self, request, obj=None):
        return (
            ["name", "read_only"] if obj is None else ["name", *self.readonly_fields, "read_only"]
        )

    def get_readonly_fields(self, request, obj=None):
        # A token's rights are fixed at creation: revoke and create another to change them.
        return [] if obj is None else [*self.readonly_fields, "read_only"]

    @method_decorator(sensitive_post_parameters())
    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)  # only the name can change
            return
        token, raw = token_create(
            name=form.cleaned_data["name"],
            read_only=form.cleaned_data["read_only"],
            created_by=request.user.get_username(),
            door="admin",
        )
        obj.pk = token.pk
        obj.prefix = token.prefix
        messages.warning(
            request,
            f"Token for “{token.name}”: {raw} — copy it now, it is not shown again.",
        )

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: the row stays for the record

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_tokens(self, request, queryset):
        ids = list(queryset.filter(revoked_at__isnull=True).values_list("pk", flat=True))
        for pk in ids:
            token_revoke(token_id=pk, actor=request.user.get_username(), door="admin")
        self.message_user(request, f"Revoked {len(ids)} token(s).", messages.SUCCESS)
