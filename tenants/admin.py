from django.contrib import admin
from django_tenants.admin import TenantAdminMixin

from tenants.models import Domain, Tenant


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


# Registered on the default site, which only the public URLconf serves.
@admin.register(Tenant)
class TenantAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ("name", "schema_name", "created_at")
    search_fields = ("name", "schema_name")
    inlines = [DomainInline]
