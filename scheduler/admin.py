"""Schedules in the tenant admin: a form validated by the service (bad cron → a field
error), the next five run times, a "Run now" button, the latest firings. Saves go through
``scheduler.services`` (audited)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from config.admin_sites import tenant_admin_site
from orchestration import steps
from scheduler import services, timing
from scheduler.models import Schedule, ScheduleFiring


class ScheduleForm(forms.ModelForm):
    # Required for publish/update/sync (schedule_check); a stock plan may only compute.
    marketplaces = forms.MultipleChoiceField(widget=forms.CheckboxSelectMultiple, required=False)

    class Meta:
        model = Schedule
        fields = list(services.EDITABLE)
        widgets = {
            "skus": forms.Textarea(attrs={"rows": 3}),
            "plan": forms.Textarea(attrs={"rows": 2}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["marketplaces"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(m, m) for m in steps.registered_marketplaces()]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        try:
            services.schedule_check({f: cleaned.get(f) for f in services.EDITABLE})
        except services.ScheduleError as exc:
            field = exc.field if exc.field in self.fields else None
            self.add_error(field, exc.message)
        return cleaned


def _actor(request: HttpRequest) -> services.Actor:
    return services.Actor(request.user.get_username(), "admin")


@admin.register(Schedule, site=tenant_admin_site)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("name", "what", "when", "active", "next_run", "last_run", "last_batch_link",
                    "last_outcome")  # fmt: skip
    list_filter = ("active", "action")
    search_fields = ("name",)
    readonly_fields = ("preview", "next_run_at", "last_run_at", "last_batch_link", "last_outcome",
                       "firings")  # fmt: skip
    fieldsets = (
        (None, {"fields": ("name", "action", "marketplaces", "plan", "all_products", "skus", "priority",
                           "sequential")}),
        ("When", {"fields": ("cron", "every_minutes", "timezone", "active", "preview")}),
        ("Runs", {"fields": ("next_run_at", "last_run_at", "last_batch_link", "last_outcome",
                             "firings")}),
    )  # fmt: skip
    actions = ("pause", "resume")

    def save_model(self, request, obj, form, change):
        values = {f: form.cleaned_data.get(f) for f in services.EDITABLE}
        saved = services.schedule_save(
            actor=_actor(request), schedule_id=obj.pk if change else None, **values
        )
        obj.pk = saved.pk

    def delete_model(self, request, obj):
        services.schedule_delete(schedule_id=obj.pk, actor=_actor(request))

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        actions = super().get_actions(request, action_location)
        actions.pop("delete_selected", None)  # one by one, so each delete is audited
        return actions

    @admin.display(description="What")
    def what(self, obj: Schedule) -> str:
        if obj.action == Schedule.Action.PLAN:
            plan = obj.plan if isinstance(obj.plan, dict) else {}
            return f"stock plan · {plan.get('preset', 'custom')} · {plan.get('category', '?')}"
        products = (
            "all products" if obj.all_products else f"{len(services.split_skus(obj.skus))} SKU(s)"
        )
        return f"{obj.action} · {', '.join(obj.marketplaces)} · {products}"

    @admin.display(description="Next run", ordering="next_run_at")
    def next_run(self, obj: Schedule) -> str:
        return _local(obj, obj.next_run_at)

    @admin.display(description="Last run", ordering="last_run_at")
    def last_run(self, obj: Schedule) -> str:
        return _local(obj, obj.last_run_at)

    @admin.display(description="Last batch")
    def last_batch_link(self, obj: Schedule) -> str:
        if not obj.last_batch_id:
            return "—"
        url = reverse("tenant_admin:orchestration_batch_change", args=[obj.last_batch_id])
        return format_html('<a href="{}">#{}</a>', url, obj.last_batch_id)

    @admin.display(description="Next five runs")
    def preview(self, obj: Schedule) -> str:
        if obj.pk is None and not obj.cron and not obj.every_minutes:
            return "Shown once the schedule has a cron expression or an interval."
        try:
            slots = timing.upcoming(cron=obj.cron, every_minutes=obj.every_minutes,
                                    timezone=obj.timezone, after=timezone.now())  # fmt: skip
        except timing.TimingError as exc:
            return format_html('<span class="errornote">{}</span>', str(exc))
        return format_html(
            '<ol class="schedule-preview">{}</ol>',
            format_html_join("", "<li>{}</li>", ((_local(obj, s),) for s in slots)),
        )

    @admin.display(description="Latest firings")
    def firings(self, obj: Schedule) -> str:
        rows = ScheduleFiring.objects.filter(schedule=obj).select_related(None)[:10]
        if not rows:
            return "None yet."
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                "<li>{} · {} · {}</li>",
                ((_local(obj, f.slot_at), f.outcome, f.message) for f in rows),
            ),
        )

    @admin.action(description="Pause the selected schedules", permissions=["change"])
    def pause(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            services.schedule_set_active(schedule_id=pk, active=False, actor=_actor(request))
        self.message_user(request, "Paused.", messages.SUCCESS)

    @admin.action(description="Resume the selected schedules", permissions=["change"])
    def resume(self, request, queryset):
        for pk in queryset.values_list("pk", flat=True):
            services.schedule_set_active(schedule_id=pk, active=True, actor=_actor(request))
        self.message_user(request, "Resumed.", messages.SUCCESS)

    def get_urls(self):
        return [
            path(
                "<int:object_id>/run_now/",
                self.admin_site.admin_view(self.run_now_view),
                name="scheduler_schedule_run_now",
            ),
            *super().get_urls(),
        ]

    def run_now_view(self, request: HttpRequest, object_id: int):
        if request.method != "POST":
            return HttpResponseRedirect(
                reverse("tenant_admin:scheduler_schedule_change", args=[object_id])
            )
        schedule = get_object_or_404(Schedule, pk=object_id)
        if not self.has_change_permission(request, schedule):
            raise PermissionDenied
        firing = services.schedule_run_now(schedule_id=schedule.pk, actor=_actor(request))
        level = messages.SUCCESS if firing.batch_id else messages.WARNING
        self.message_user(request, f"Run now: {firing.outcome}: {firing.message}", level)
        return HttpResponseRedirect(
            reverse("tenant_admin:scheduler_schedule_change", args=[schedule.pk])
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {"can_run_now": self.has_change_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)


def _local(schedule: Schedule, at) -> str:
    if at is None:
        return "—"
    try:
        zone = timing.zone(schedule.timezone)
    except timing.TimingError:
        zone = timezone.get_current_timezone()
    return at.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z")
