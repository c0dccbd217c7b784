"""URLs served on a tenant's domain."""

from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path, re_path
from django.views.generic import RedirectView

from api.main import api, unknown_endpoint
from config.admin_sites import tenant_admin_site
from config.health import healthz, healthz_workers
from orchestration import views

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("healthz/workers", healthz_workers, name="healthz-workers"),
    path("admin/", tenant_admin_site.urls),
    path("api/", api.urls),
    re_path(r"^api/(?P<rest>[\s\S]*)$", unknown_endpoint),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("dashboard/panels/<str:panel>/", views.dashboard_panel, name="dashboard_panel"),
    path("dashboard/jobs/<int:job_id>/retry/", views.dashboard_retry, name="dashboard_retry"),
    # Static files (the live script, the admin's CSS) when DEBUG; production serves them apart.
    *staticfiles_urlpatterns(),
]

handler500 = "config.middleware.server_error"  # a lost database: 503, not 500
