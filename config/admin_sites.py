"""Two admin sites: the platform (public schema) and the seller's (tenant schema).

django-q2 and the Tenant model register on Django's default ``admin.site``,
which is served only from the public URLconf; a tenant's staff get
``tenant_admin_site``, which holds nothing that spans tenants.
"""

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User


class TenantAdminSite(admin.AdminSite):
    site_header = "Marketplace publishing"
    site_title = "Marketplace publishing"
    index_title = "Seller workspace"

    def each_context(self, request):
        context = super().each_context(request)
        tenant = getattr(request, "tenant", None)
        if tenant is not None:
            context["site_header"] = f"{tenant.name} · Marketplace publishing"
        return context


tenant_admin_site = TenantAdminSite(name="tenant_admin")
tenant_admin_site.register(User, UserAdmin)
tenant_admin_site.register(Group, GroupAdmin)

admin.site.site_header = "Platform administration"
admin.site.site_title = "Platform administration"
