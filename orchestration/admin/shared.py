"""What the engine's model admins share: engine-owned rows are never written by a form,
live pages know whether the user may act, staff actions are audited, and list filters
whose choices cost no query."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.options import ActionLocation
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.text import Truncator
from django.utils.translation import gettext as _

from audit.services import record
from orchestration import steps
from orchestration.models import Batch


def audit(request: HttpRequest, action: str, objects, **extra: Any) -> None:
    """An audit entry for a staff action made in the admin (see audit.services)."""
    record(request.user.get_username(), "admin", action, objects, **extra)


class EngineRowAdminMixin:
    """Engine-owned rows (jobs, batches): the admin shows them and never writes them.

    A change form saves the row it loaded (``obj.save()``), overwriting the status, run,
    cancel flag or batch counters a worker wrote meanwhile; so nothing engine-owned is
    editable, ``save_model`` writes through a service, and running work cannot be deleted
    (its worker would write into rows that are gone). Finished work may be deleted one row
    at a time; there is no bulk delete.
    """

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location)  # type: ignore[misc]
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not self.finished(obj):
            return False
        return super().has_delete_permission(request, obj)  # type: ignore[misc]

    terminal_statuses: frozenset[str] = frozenset()  # each admin names its model's

    def finished(self, obj) -> bool:
        return obj.status in self.terminal_statuses


class LiveAdminMixin:
    """Adds the live assets and whether the user may act to every admin page of the model."""

    def live_context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {"can_act": self.has_change_permission(request), **extra}  # type: ignore[attr-defined]

    def action_checkbox(self, obj: Any) -> SafeString:
        """Django's row checkbox, the same markup, without rendering a form widget's template
        for every row: a fifth of a 100-row list's render, which live pages ask for again
        while their jobs move."""
        return format_html(
            '<input type="checkbox" name="{}" value="{}" class="action-select" aria-label="{}">',
            helpers.ACTION_CHECKBOX_NAME, obj.pk,
            format_html(_("Select this object for an action - {}"), str(obj)),
        )  # fmt: skip


# --- filters whose choices cost no query --------------------------------------------------


class MarketplaceFilter(admin.SimpleListFilter):
    """Choices from the provider registry (a DISTINCT over millions of jobs is not free)."""

    title = "marketplace"
    parameter_name = "marketplace"

    def lookups(self, request, model_admin):
        return [(m, m) for m in steps.registered_marketplaces()]

    def queryset(self, request, queryset):
        return queryset.filter(marketplace=self.value()) if self.value() else queryset


class BatchFilter(admin.SimpleListFilter):
    """The latest batches as choices; any batch id works in the URL (``?batch=<id>``)."""

    title = "batch"
    parameter_name = "batch"

    def lookups(self, request, model_admin):
        latest = Batch.objects.order_by("-created_at").values_list("pk", "name")[:10]
        # Names cut so the filter column stays narrow under the list (the id says which).
        choices = [(str(pk), f"#{pk} {Truncator(name).chars(40)}") for pk, name in latest]
        value = self.value()
        if value and value not in {c[0] for c in choices}:
            choices.append((value, f"#{value}"))
        return choices

    def queryset(self, request, queryset):
        value = self.value()
        if not value:
            return queryset
        if not value.isdigit():
            return queryset.none()
        return queryset.filter(batch_id=int(value))
