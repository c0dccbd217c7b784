"""URLs served on the public schema (platform host names, no tenant)."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from config.health import healthz, healthz_workers
from orchestration import views

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("healthz/workers", healthz_workers, name="healthz-workers"),
    path("admin/", admin.site.urls),
    path("platform/", views.platform, name="platform"),
    *staticfiles_urlpatterns(),
]

handler500 = "config.middleware.server_error"  # a lost database: 503, not 500
