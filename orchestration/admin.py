"""The seller's admin for the engine. Actions and buttons call the engine's services only.

Lists stay fast on millions of rows: estimated counts (``EstimatedCountPaginator``,
``show_full_result_count=False``), filters whose choices need no query, indexes for
the default ordering under each filter, and a constant number of queries per page.
Status badges and progress bars update live over ``/ws/live/`` (static
``orchestration/live.js``). Staff with view permission only see everything and no
action (Django hides actions they may not run; the templates hide the buttons).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.options import ActionLocation, IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    JsonResponse,
    QueryDict,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from config.admin_sites import tenant_admin_site
from orchestration import selectors, services, steps
from orchestration.models import Batch, MarketplaceJob, ResourcePolicy
from orchestration.paginators import EstimatedCountPaginator
from orchestration.services.claims import resource_policies
from orchestration.states import (
    BATCH_TERMINAL,
    JOB_CLAIMABLE,
    JOB_RETRYABLE_BY_STAFF,
    JOB_TERMINAL,
    BatchStatus,
    JobStatus,
)
from orchestration.templatetags.orchestration_ui import when

BULK_CHUNK = 500  # job ids per query when acting on everything a filter matches
MAX_FORM_JOBS = 10_000  # products per batch started from the admin form

_SKU_TERM = re.compile(r"[\w.-]{2,64}")  # no spaces: looks like a SKU, not error text


@admin.register(ResourcePolicy, site=tenant_admin_site)
class ResourcePolicyAdmin(admin.ModelAdmin):
    """Limits per resource, editable in place; the dispatcher reads them on every claim."""

    list_display = ("key", "concurrency", "rate_per_minute", "paused", "updated_at")
    list_editable = ("concurrency", "rate_per_minute", "paused")
    actions = ("pause", "resume")

    def get_queryset(self, request):
        resource_policies()  # rows for every registered provider exist before staff look
        return super().get_queryset(request)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if form.changed_data:
            _audit(request, "resource.change_policy", [("resource", obj.key)],
                   details={f: form.cleaned_data[f] for f in form.changed_data})  # fmt: skip

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Pause the selected resources", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[ResourcePolicy]) -> None:
        for policy in queryset:
            services.resource_pause(key=policy.key)
        _audit(request, "resource.pause", [("resource", p.key) for p in queryset])
        self.message_user(request, f"Paused {queryset.count()} resource(s).", messages.SUCCESS)

    @admin.action(description="Resume the selected resources", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[ResourcePolicy]) -> None:
        for policy in queryset:
            services.resource_resume(key=policy.key)
        _audit(request, "resource.resume", [("resource", p.key) for p in queryset])
        self.message_user(request, f"Resumed {queryset.count()} resource(s).", messages.SUCCESS)


# --- rendering helpers ------------------------------------------------------------------


def status_badge(status: str, *, job_id: int | None = None, task_id: int | None = None) -> str:
    attrs = ""
    if job_id is not None:
        attrs = format_html(' data-live-job="{}"', job_id)
    elif task_id is not None:
        attrs = format_html(' data-live-task="{}"', task_id)
    return format_html(
        '<span class="live-badge status-{}"{}>{}</span>', status, attrs, status.replace("_", " ")
    )


def progress_bar(batch: Batch, activity: dict[str, Any] | None = None) -> str:
    """Done jobs (the live bar), then the jobs backing off (an orange segment)."""
    percent = batch.progress_percent
    retrying = (activity or {}).get("retrying", 0)
    retry_width = _retry_width(batch, activity)
    return format_html(
        '<div class="live-progress" data-live-batch="{}" data-status="{}">'
        '<div class="live-bar" style="width: {}%"></div>'
        '<div class="live-bar-retrying" style="left: {}%; width: {}%" title="{} backing off"></div>'
        '<span class="live-label">{}% ({}/{})</span></div>',
        batch.pk, batch.status, percent, percent, retry_width, retrying,
        percent, batch.done_jobs, batch.total_jobs,
    )  # fmt: skip


def _retry_width(batch: Batch, activity: dict[str, Any] | None) -> int:
    """The share of the bar for jobs backing off (after the done part)."""
    retrying = (activity or {}).get("retrying", 0)
    if not batch.total_jobs:
        return 0
    return min(100 - batch.progress_percent, round(100 * retrying / batch.total_jobs))


def job_counts(batch: Batch, activity: dict[str, Any] | None = None) -> str:
    activity = activity or {}
    return format_html(
        '<span class="live-counts" data-live-batch-counts="{}">'
        '<span class="count-running" title="running">▶ <b data-count="running">{}</b></span> '
        '<span class="count-retrying" title="backing off, will retry">↻ <b data-count="retrying">{}</b></span> '
        '<span class="count-completed" title="completed">✓ <b data-count="completed">{}</b></span> '
        '<span class="count-failed" title="failed">✗ <b data-count="failed">{}</b></span> '
        '<span class="count-cancelled" title="cancelled">⊘ <b data-count="cancelled">{}</b></span> '
        '<span class="count-skipped" title="skipped">↷ <b data-count="skipped">{}</b></span></span>',
        batch.pk, activity.get("running", 0), activity.get("retrying", 0), batch.completed_jobs,
        batch.failed_jobs, batch.cancelled_jobs, batch.skipped_jobs,
    )  # fmt: skip


def next_attempt(job: MarketplaceJob) -> str:
    """What happens next to a job: its reservation, its next attempt, or nothing."""
    if job.direct and job.status in (*JOB_CLAIMABLE, JobStatus.RUNNING):
        reserved = format_html(
            '<span class="live-badge status-direct" title="Run now: the next free place on {} is '
            'reserved for this job; other queued work there waits">run now · reserved</span>',
            job.resource_key,
        )
        if job.status == JobStatus.RETRYING:
            return format_html("{} {}", reserved, when(job.run_after, "countdown"))
        return reserved
    if job.status == JobStatus.RETRYING:
        return format_html(
            '<span class="next-attempt">next attempt {}</span>', when(job.run_after, "countdown")
        )
    return ""


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
        choices = [(str(pk), f"#{pk} {name}") for pk, name in latest]
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


# --- jobs ---------------------------------------------------------------------------------


def _run_service(modeladmin, request, job_ids, service, verb: str, action: str = "") -> int:
    done, refused = [], []
    for job_id in job_ids:
        try:
            service(job_id=job_id)
            done.append(job_id)
        except services.JobError as exc:
            refused.append(str(exc))
    if done and action:
        _audit(request, action, [("job", pk) for pk in done])
    return _report(modeladmin, request, len(done), refused, verb)


def _audit(request: HttpRequest, action: str, objects, **extra: Any) -> None:
    """An audit entry for a staff action made in the admin (see audit.services)."""
    from audit.services import record

    record(request.user.get_username(), "admin", action, objects, **extra)


def _report(modeladmin, request, done: int, refused: list[str], verb: str) -> int:
    if done:
        modeladmin.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
    for reason in refused[:10]:
        modeladmin.message_user(request, reason, messages.WARNING)
    if len(refused) > 10:
        modeladmin.message_user(request, f"… and {len(refused) - 10} more.", messages.WARNING)
    return done


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


@admin.register(MarketplaceJob, site=tenant_admin_site)
class MarketplaceJobAdmin(EngineRowAdminMixin, LiveAdminMixin, admin.ModelAdmin):
    # What matters first (status, error, what happens next), so a narrow screen keeps it.
    list_display = ("id", "sku_column", "status_badge", "error_column", "next_column", "attempts",
                    "duration", "updated", "what")  # fmt: skip
    list_display_links = ("id", "sku_column")
    list_filter = ("status", MarketplaceFilter, "action", BatchFilter, "created_at")
    search_fields = ("sku", "error_message")
    search_help_text = "SKU (or its beginning) or error text"
    ordering = ("-created_at", "-id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_select_related = ("batch",)
    readonly_fields = ("batch", "sequence", "product", "sku", "marketplace", "resource_key", "action",
                       "params", "direct", "run_after", "cancel_requested", "result",
                       "current_run", "created")  # fmt: skip
    raw_id_fields = ("batch", "product", "current_run")
    # The status, error, attempts and what happens next are in the live timeline above the
    # form (once); engine internals are folded away.
    fieldsets = (
        (None, {"fields": ("product", "batch", "priority", "max_retries", "created")}),
        ("Engine internals", {"classes": ("collapse",),
                              "fields": ("sku", "marketplace", "action", "resource_key",
                                         "sequence", "direct", "run_after",
                                         "cancel_requested", "current_run", "params", "result")}),
    )  # fmt: skip
    actions = ("retry", "cancel", "run_now")

    def has_add_permission(self, request):
        return False

    terminal_statuses = frozenset(JOB_TERMINAL)

    def save_model(self, request, obj, form, change):
        """Only the options staff may change, through the service that writes those columns
        alone (never ``obj.save()``: the loaded copy of the engine's fields may be stale)."""
        changed = set(form.changed_data)
        services.job_set_options(
            job_id=obj.pk,
            priority=obj.priority if "priority" in changed else None,
            max_retries=obj.max_retries if "max_retries" in changed else None,
        )
        if changed & {"priority", "max_retries"}:
            _audit(request, "job.set_options", [("job", obj.pk)],
                   details={f: getattr(obj, f) for f in sorted(changed & {"priority", "max_retries"})})  # fmt: skip

    def delete_model(self, request, obj):
        # The job may have been retried since the page was loaded: decide under its row lock.
        with transaction.atomic():
            status = (
                MarketplaceJob.objects.select_for_update()
                .filter(pk=obj.pk)
                .values_list("status", flat=True)
                .first()
            )
            if status is not None and status not in JOB_TERMINAL:
                raise PermissionDenied(f"job {obj.pk} is {status}: cancel it first")
            super().delete_model(request, obj)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: MarketplaceJob) -> str:
        return status_badge(obj.status, job_id=obj.pk)

    @admin.display(description="Batch", ordering="batch_id")
    def batch_link(self, obj: MarketplaceJob) -> str:
        if obj.batch is None:
            return "—"
        url = reverse("tenant_admin:orchestration_batch_change", args=[obj.batch_id])
        return format_html('<a href="{}" title="{}">#{}</a>', url, obj.batch.name, obj.batch_id)

    @admin.display(description="What", ordering="marketplace")
    def what(self, obj: MarketplaceJob) -> str:
        if obj.batch is None:
            return format_html('<span class="nowrap">{} · {}</span>', obj.marketplace, obj.action)
        return format_html('<span class="nowrap">{} · {} · {}</span>', obj.marketplace, obj.action,
                           self.batch_link(obj))  # fmt: skip

    @admin.display(description="SKU", ordering="sku")
    def sku_column(self, obj: MarketplaceJob) -> str:
        return format_html('<span class="sku-cell" title="{}">{}</span>', obj.sku, obj.sku or "—")

    @admin.display(description="Retries", ordering="retry_count")
    def attempts(self, obj: MarketplaceJob) -> str:
        return format_html('<span class="nowrap">{}/{}</span>', obj.retry_count, obj.max_retries)

    @admin.display(description="Next")
    def next_column(self, obj: MarketplaceJob) -> str:
        return next_attempt(obj)

    @admin.display(description="Error")
    def error_column(self, obj: MarketplaceJob) -> str:
        if not obj.error_message:
            return ""
        return format_html('<span class="error-cell" title="{}">{}</span>', obj.error_message,
                           Truncator(obj.error_message).chars(90))  # fmt: skip

    @admin.display(description="Duration")
    def duration(self, obj: MarketplaceJob) -> str:
        if obj.started_at and obj.completed_at:
            return f"{(obj.completed_at - obj.started_at).total_seconds():.1f} s"
        return ""

    @admin.display(description="Updated", ordering="updated_at")
    def updated(self, obj: MarketplaceJob) -> str:
        return when(obj.updated_at)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: MarketplaceJob) -> str:
        return when(obj.created_at)

    # The list's actions (selected rows, or "select all" across pages).

    @admin.action(description="Retry the selected jobs", permissions=["change"])
    def retry(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        _run_service(self, request, ids, services.job_retry, "Retried", "job.retry")
        return _show_acted_on(ids)

    @admin.action(description="Cancel the selected jobs", permissions=["change"])
    def cancel(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        _run_service(self, request, ids, services.job_cancel, "Cancelled", "job.cancel")
        return _show_acted_on(ids)

    @admin.action(description="Run the selected jobs now", permissions=["change"])
    def run_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:BULK_CHUNK])
        if _run_service(self, request, ids, services.job_run_now, "Reserved the next place for",
                        "job.run_now"):  # fmt: skip
            for key in sorted(set(queryset.values_list("resource_key", flat=True)[:BULK_CHUNK])):
                self.message_user(request, _run_now_outlook(key), messages.INFO)
        return _show_acted_on(ids)

    # Pages and buttons.

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("bulk/<str:verb>/", wrap(self.bulk_view), name="orchestration_job_bulk"),
            path(
                "<int:object_id>/control/<str:verb>/",
                wrap(self.control_view),
                name="orchestration_job_control",
            ),
            path(
                "<int:object_id>/timeline/",
                wrap(self.timeline_view),
                name="orchestration_job_timeline",
            ),
            *super().get_urls(),
        ]

    def get_search_results(self, request, queryset, search_term):
        """A term shaped like a SKU that prefixes some SKU returns those jobs, from an index
        (``job_sku_prefix_idx``); anything else searches SKU and error text by substring
        (trigram indexes where pg_trgm exists, else a scan)."""
        term = search_term.strip()
        if _SKU_TERM.fullmatch(term):
            by_sku = queryset.filter(sku__istartswith=term)
            if by_sku.exists():
                return by_sku, False
        return super().get_search_results(request, queryset, search_term)

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(
            request, {**self.live_context(request), **(extra_context or {})}
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = self.live_context(request, **(extra_context or {}))
        job = (
            MarketplaceJob.objects.filter(pk=object_id).first()
            if str(object_id).isdigit()
            else None
        )
        if job is not None:
            context.update(self._timeline_context(request, job))
            context.update(title=f"Job #{job.pk} · {job.marketplace} {job.action} {job.sku}",
                           subtitle=None)  # fmt: skip
        return super().change_view(request, object_id, form_url, context)

    def timeline_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The timeline fragment the job page re-fetches when a live message says it moved."""
        job = get_object_or_404(MarketplaceJob, pk=object_id)
        if not self.has_view_permission(request, job):
            raise PermissionDenied
        return TemplateResponse(
            request, "orchestration/_timeline.html", self._timeline_context(request, job)
        )

    def _timeline_context(self, request: HttpRequest, job: MarketplaceJob) -> dict[str, Any]:
        can_act = self.has_change_permission(request, job)
        status = job.status
        controls = {
            "retry": status in JOB_RETRYABLE_BY_STAFF,
            "retry_from_step": status in {*JOB_RETRYABLE_BY_STAFF, JobStatus.COMPLETED},
            "cancel": status not in JOB_TERMINAL or status == JobStatus.SKIPPED,
            # Not again while its reservation holds (it is already first in line).
            "run_now": status in {*JOB_RETRYABLE_BY_STAFF, *JOB_CLAIMABLE, JobStatus.PENDING}
            and not (job.direct and status in JOB_CLAIMABLE),
        }
        timeline = selectors.job_timeline(job.pk)
        tasks = [row["task"] for row in timeline["tasks"]]
        # "Retry from step" offers the step that failed (else the first unfinished one).
        failed = [t for t in tasks if t.status == "failed"]
        unfinished = [t for t in tasks if t.status != "completed"]
        default_step = (failed or unfinished or tasks[:1] or [None])[0]
        reserved = job.direct and status in (*JOB_CLAIMABLE, JobStatus.RUNNING)
        stopped_by = None
        if status == JobStatus.SKIPPED and job.batch_id:
            stopped_by = (
                MarketplaceJob.objects.filter(
                    batch_id=job.batch_id, sequence__lt=job.sequence,
                    status__in=[JobStatus.FAILED, JobStatus.CANCELLED],
                ).order_by("-sequence").only("id", "status", "sku").first()
            )  # fmt: skip
        return {
            "job": job,
            "can_act": can_act,
            "controls": controls if can_act else {},
            "default_step": default_step.step_order if default_step else None,
            "outlook": selectors.resource_outlook(job.resource_key) if reserved else None,
            "stopped_by": stopped_by,
            **timeline,
        }

    @staticmethod
    def _job_controls() -> dict[str, Any]:
        return {
            "retry": (services.job_retry, "Retried"),
            "cancel": (services.job_cancel, "Cancel requested for"),
            "run_now": (services.job_run_now, "Run now:"),
        }

    def control_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        """One job's buttons (POST): retry, retry from a step, cancel, run now."""
        if request.method != "POST":
            return HttpResponse(status=405)
        job = get_object_or_404(MarketplaceJob, pk=object_id)
        if not self.has_change_permission(request, job):
            raise PermissionDenied
        try:
            if verb == "retry_from_step":
                step = request.POST.get("step_order", "")
                if not step.isdigit():
                    raise services.JobError("choose the step to retry from")
                job = services.job_retry_from_step(job_id=job.pk, step_order=int(step))
                message = f"Job {job.pk} will run again from step {step}."
                _audit(request, "job.retry_from_step", [("job", job.pk)],
                       details={"step_order": int(step)})  # fmt: skip
            elif verb in self._job_controls():
                service, done = self._job_controls()[verb]
                job = service(job_id=job.pk)
                _audit(request, f"job.{verb}", [("job", job.pk)])
                message = f"{done} job {job.pk}."
                if verb == "run_now":
                    message = f"Run now: job {job.pk} {_run_now_outlook(job.resource_key)}"
                elif verb == "cancel" and job.status == JobStatus.RUNNING:
                    message = (f"Cancel requested for job {job.pk}: it stops after the step it is "
                               "running; if that is its last step, the job completes.")  # fmt: skip
            else:
                return HttpResponse(status=404)
        except services.JobError as exc:
            return self._answer(request, job, str(exc), ok=False)
        return self._answer(request, job, message, ok=True)

    def _answer(self, request: HttpRequest, job: MarketplaceJob, text: str, *, ok: bool):
        if request.headers.get("x-requested-with") == "fetch":
            return JsonResponse({"ok": ok, "message": text, "job_id": job.pk,
                                 "status": job.status}, status=200 if ok else 409)  # fmt: skip
        self.message_user(request, text, messages.SUCCESS if ok else messages.WARNING)
        target = request.POST.get("next", "")
        if not target.startswith("/") or target.startswith("//"):
            target = reverse("tenant_admin:orchestration_marketplacejob_change", args=[job.pk])
        return HttpResponseRedirect(target)

    def bulk_view(self, request: HttpRequest, verb: str) -> HttpResponse:
        """Retry or cancel everything the current filter matches (every page), after confirming."""
        if verb not in ("retry", "cancel", "run_now"):
            return HttpResponse(status=404)
        if not self.has_change_permission(request):
            raise PermissionDenied
        params = request.GET if request.method == "GET" else request.POST
        try:
            changelist = self._filtered_changelist(request, params)
        except IncorrectLookupParameters:
            return HttpResponseRedirect(
                reverse("tenant_admin:orchestration_marketplacejob_changelist")
            )
        # The verb acts on the matching jobs in its statuses (``_BULK_STATUSES``).
        matching = changelist.get_queryset(request)
        query = params.get("_changelist_filters", "")
        if request.method == "POST" and "confirm" in request.POST:
            # A tracked operation (operations app): small ones finish inside this request,
            # large ones go on in a worker and their page shows the progress.
            from audit.services import Actor
            from operations import filters as operation_filters
            from operations import services as operations

            try:
                job_filter = operation_filters.from_changelist_query(query)
                operation = operations.operation_start(
                    kind=verb, job_filter=_actionable_filter(verb, job_filter),
                    actor=Actor(request.user.get_username(), "admin"),
                )  # fmt: skip
            except (operation_filters.FilterError, operations.OperationError) as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return HttpResponseRedirect(
                    reverse("tenant_admin:orchestration_marketplacejob_changelist")
                )
            if not operation.finished:
                self.message_user(request, f"Operation {operation.pk} started: {operation.total} "
                                  "job(s); it goes on in the background.", messages.SUCCESS)  # fmt: skip
                return HttpResponseRedirect(
                    reverse("tenant_admin:operations_operation_change", args=[operation.pk])
                )
            verbs = {"retry": "Retried", "cancel": "Cancelled", "run_now": "Run now:"}
            self.message_user(request, f"{verbs[verb]} {operation.succeeded} job(s).",
                              messages.SUCCESS)  # fmt: skip
            for reason, count in list(operation.skipped_reasons.items())[:10]:
                self.message_user(request, f"{count} skipped: {reason}", messages.WARNING)
            # Back to the same filter, any status: the jobs acted on left the status they
            # were chosen by (a "Failed" filter would now show none of them).
            kept = QueryDict(query, mutable=True)
            for key in ("status__exact", "status", "p"):
                kept.pop(key, None)
            target = reverse("tenant_admin:orchestration_marketplacejob_changelist")
            return HttpResponseRedirect(f"{target}?{kept.urlencode()}" if kept else target)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{verb.replace('_', ' ').capitalize()} every matching job?",
            "verb": verb,
            "verb_label": verb.replace("_", " "),
            "inline_max": operations_inline_max(),
            # One scan for both numbers (100,000 matching jobs: two COUNTs took 1.6 s).
            **matching.order_by().aggregate(
                matching=Count("pk"),
                count=Count("pk", filter=Q(status__in=sorted(_BULK_STATUSES[verb]))),
            ),
            "filters": [
                (key, value)
                for key, values in QueryDict(query).lists()
                if key not in ("p", "o", "q")
                for value in values
            ],
            "search": changelist.query,
            "changelist_filters": query,
        }
        return TemplateResponse(
            request, "admin/orchestration/marketplacejob/bulk_confirm.html", context
        )

    def _filtered_changelist(self, request: HttpRequest, params):
        """The changelist as filtered by ``_changelist_filters`` (the list's own query string)."""
        filtered = copy.copy(request)
        filtered.GET = QueryDict(params.get("_changelist_filters", ""))
        return self.get_changelist_instance(filtered)


def operations_inline_max() -> int:
    from operations.services import INLINE_MAX

    return INLINE_MAX


# The statuses each bulk verb acts on (the confirmation counts the same jobs).
_BULK_STATUSES = {
    "retry": set(JOB_RETRYABLE_BY_STAFF),
    "run_now": {*JOB_RETRYABLE_BY_STAFF, *JOB_CLAIMABLE, JobStatus.PENDING},
    "cancel": set(JobStatus) - {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
}


def _actionable_filter(verb: str, job_filter: dict[str, Any]) -> dict[str, Any]:
    """The list's filter narrowed to the statuses the verb acts on."""
    wanted = _BULK_STATUSES[verb]
    chosen = set(job_filter.get("status") or wanted)
    return {**job_filter, "status": sorted(str(s) for s in chosen & wanted)}


SHOW_ACTED_ON = 500  # jobs an action's answer lists by id (more: the list as it was)


def _show_acted_on(ids: list[int]) -> HttpResponseRedirect | None:
    """After acting on selected jobs, list those jobs (whatever their status is now): the
    filter the action was chosen from (e.g. Failed) would show none of them any more."""
    if not ids or len(ids) > SHOW_ACTED_ON:
        return None
    target = reverse("tenant_admin:orchestration_marketplacejob_changelist")
    return HttpResponseRedirect(f"{target}?id__in={','.join(map(str, sorted(ids)))}")


def _run_now_outlook(resource_key: str) -> str:
    """What "Run now" really does, said the way it will happen."""
    outlook = selectors.resource_outlook(resource_key)
    busy = f"{outlook['running']}/{outlook['concurrency']} busy"
    if outlook["paused"]:
        return (f"waits: {resource_key} is paused. It is first in line when {resource_key} "
                "resumes; other queued work there waits behind it.")  # fmt: skip
    if outlook["full"]:
        return (f"runs next on {resource_key} ({busy}): it starts when a running job there "
                f"finishes; other queued {resource_key} work waits behind it.")  # fmt: skip
    return (f"starts now on {resource_key} ({busy} before it); other queued {resource_key} "
            "work waits until it has started.")  # fmt: skip


# --- batches ----------------------------------------------------------------------------------


class StartBatchForm(forms.Form):
    name = forms.CharField(max_length=200)
    job_type = forms.ChoiceField(label="Marketplace and action")
    mode = forms.ChoiceField(choices=Batch.Mode.choices, initial=Batch.Mode.PARALLEL)
    all_products = forms.BooleanField(
        required=False, label="All products", help_text="Every product of this workspace."
    )
    skus = forms.CharField(
        label="Or products by SKU", widget=forms.Textarea(attrs={"rows": 6}), required=False,
        help_text="One SKU per line (or separated by commas or spaces); case does not matter.",
    )  # fmt: skip
    priority = forms.IntegerField(initial=0, help_text="Higher runs first")
    # Set on the second step to the fingerprint of what the summary showed: staff saw how
    # many jobs start and where; a change after that shows a new summary.
    confirmed = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        job_type = self.fields["job_type"]
        assert isinstance(job_type, forms.ChoiceField)
        policies = resource_policies()
        choices = []
        for m in steps.registered_marketplaces():
            provider = steps.get_provider(m)
            policy = policies.get(provider.resource.key)
            limit = f" ({policy.concurrency} at a time)" if policy else ""
            choices += [(f"{m}:{a}", f"{m} · {a}{limit}") for a in provider.actions()]
        job_type.choices = choices

    def clean(self) -> dict[str, Any]:
        from django.db.models.functions import Lower

        from marketplaces.models import Product

        cleaned = super().clean() or {}
        if cleaned.get("all_products"):
            found = dict(
                Product.objects.order_by("pk").values_list("sku", "pk")[: MAX_FORM_JOBS + 1]
            )
            if not found:
                raise forms.ValidationError("This workspace has no products yet.")
        else:
            wanted = list(dict.fromkeys(cleaned.get("skus", "").replace(",", " ").split()))
            if not wanted:
                raise forms.ValidationError("Tick “All products” or give at least one SKU.")
            by_lower = dict(
                Product.objects.annotate(key=Lower("sku"))
                .filter(key__in=[w.lower() for w in wanted])
                .values_list("key", "pk")
            )
            missing = [w for w in wanted if w.lower() not in by_lower]
            if missing:
                raise forms.ValidationError(f"Unknown SKU(s): {', '.join(missing[:20])}")
            skus = dict(Product.objects.filter(pk__in=by_lower.values()).values_list("pk", "sku"))
            found = {skus[pk]: pk for pk in dict.fromkeys(by_lower[w.lower()] for w in wanted)}
        if len(found) > MAX_FORM_JOBS:
            raise forms.ValidationError(
                f"At most {MAX_FORM_JOBS:,} products per batch from this form "
                "(the publish command takes more)."
            )
        self.product_ids = found
        cleaned["skus"] = list(found)
        return cleaned


SELECTED_SKUS_KEY = "orchestration.start_batch_skus"  # session: products picked on their list


def _start_fingerprint(form: StartBatchForm) -> str:
    import hashlib

    data = form.cleaned_data
    what = [data["job_type"], data["mode"], str(data["priority"]), *data["skus"]]
    return hashlib.sha256("\n".join(what).encode()).hexdigest()[:16]


def _start_summary(form: StartBatchForm) -> dict[str, Any]:
    """What the start form is about to do: how many jobs, on which resource, how busy it is."""
    marketplace, action = form.cleaned_data["job_type"].split(":", 1)
    key = steps.get_provider(marketplace).resource.key
    outlook = selectors.resource_outlook(key)
    policy = ResourcePolicy.objects.filter(key=key).first()
    waiting = MarketplaceJob.objects.filter(
        resource_key=key, status__in=[JobStatus.QUEUED, JobStatus.RETRYING]
    ).count()
    return {
        "jobs": len(form.cleaned_data["skus"]), "marketplace": marketplace, "action": action,
        "resource": key, "running": outlook["running"], "concurrency": outlook["concurrency"],
        "rate": policy.rate_per_minute if policy else None, "paused": outlook["paused"],
        "waiting": waiting, "mode": form.cleaned_data["mode"],
    }  # fmt: skip


class BatchChangeList(ChangeList):
    """Reads the running and backing-off counts of the page's batches in one query."""

    def get_results(self, request):
        super().get_results(request)
        activity = selectors.batch_activity(b.pk for b in self.result_list)
        for batch in self.result_list:
            batch.activity = activity.get(batch.pk, {})


def _batch_controls(batch: Batch) -> dict[str, bool]:
    """Cancel while it runs; resume (retry the failed, put the rest back in line) when
    something did not complete; a batch that completed offers neither."""
    unfinished = batch.status not in BATCH_TERMINAL
    stopped = batch.failed_jobs + batch.cancelled_jobs + batch.skipped_jobs
    return {"cancel": unfinished, "resume": bool(stopped) and batch.status != BatchStatus.COMPLETED}


@admin.register(Batch, site=tenant_admin_site)
class BatchAdmin(EngineRowAdminMixin, LiveAdminMixin, admin.ModelAdmin):
    list_display = ("id", "name_column", "status_badge", "progress", "counts", "next_column",
                    "created", "mode")  # fmt: skip
    list_display_links = ("id", "name_column")
    list_filter = ("status", "mode", "created_at")
    search_fields = ("name",)
    ordering = ("-created_at", "-id")
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ("name", "mode", "status", "live_progress", "total_jobs", "completed_jobs",
                       "failed_jobs", "cancelled_jobs", "skipped_jobs", "created_by", "created_at",
                       "started_at", "completed_at")  # fmt: skip
    fields = readonly_fields
    actions = ("cancel", "resume")

    def has_add_permission(self, request):
        return request.user.has_perm("orchestration.add_batch")

    terminal_statuses = frozenset(BATCH_TERMINAL)

    def save_model(self, request, obj, form, change):
        """Nothing of a batch is edited here (its counters move with its jobs; a save of the
        loaded copy would overwrite what workers counted meanwhile)."""

    def save_related(self, request, form, formsets, change):
        pass

    def delete_model(self, request, obj):
        # Job rows before the batch row (docs/engine.md, lock order); a job may have been
        # retried since the page was loaded.
        with transaction.atomic():
            unfinished = list(
                MarketplaceJob.objects.select_for_update()
                .filter(batch_id=obj.pk)
                .exclude(status__in=JOB_TERMINAL)
                .order_by("pk")
                .values_list("pk", flat=True)[:1]
            )
            status = (
                Batch.objects.select_for_update()
                .filter(pk=obj.pk)
                .values_list("status", flat=True)
                .first()
            )
            if unfinished or (status is not None and status not in BATCH_TERMINAL):
                raise PermissionDenied(f"batch {obj.pk} has unfinished jobs: cancel it first")
            super().delete_model(request, obj)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Batch) -> str:
        return format_html(
            '<span class="live-badge status-{}" data-live-batch-status="{}">{}</span>',
            obj.status, obj.pk, obj.status,
        )  # fmt: skip

    @admin.display(description="Progress")
    def progress(self, obj: Batch) -> str:
        return progress_bar(obj, getattr(obj, "activity", None))

    @admin.display(description="Progress")
    def live_progress(self, obj: Batch) -> str:
        return format_html("{} {}", progress_bar(obj), job_counts(obj))

    @admin.display(description="Jobs")
    def counts(self, obj: Batch) -> str:
        return job_counts(obj, getattr(obj, "activity", None))

    @admin.display(description="Name", ordering="name")
    def name_column(self, obj: Batch) -> str:
        return format_html('<span class="name-cell" title="{}">{}</span>', obj.name, obj.name)

    @admin.display(description="Next attempt")
    def next_column(self, obj: Batch) -> str:
        at = getattr(obj, "activity", {}).get("next_attempt_at")
        return when(at, "countdown") if at else ""

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Batch) -> str:
        return when(obj.created_at)

    def get_changelist(self, request, **kwargs):
        return BatchChangeList

    @admin.action(description="Cancel the selected batches", permissions=["change"])
    def cancel(self, request, queryset):
        cancelled = 0
        for batch_id, status in queryset.values_list("pk", "status"):
            if status in BATCH_TERMINAL:
                self.message_user(request, f"Batch {batch_id} is {status}: nothing to cancel.",
                                  messages.WARNING)  # fmt: skip
                continue
            services.batch_cancel(batch_id=batch_id)
            _audit(request, "batch.cancel", [("batch", batch_id)])
            cancelled += 1
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} batch(es).", messages.SUCCESS)

    @admin.action(description="Resume the selected groups", permissions=["change"])
    def resume(self, request, queryset):
        resumed = 0
        for batch_id in queryset.values_list("pk", flat=True):
            try:
                services.batch_resume(batch_id=batch_id)
                _audit(request, "batch.resume", [("batch", batch_id)])
                resumed += 1
            except services.JobError as exc:  # a group with a job still queued or running
                self.message_user(request, str(exc), messages.WARNING)
        if resumed:
            self.message_user(request, f"Resumed {resumed} batch(es).", messages.SUCCESS)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:object_id>/control/<str:verb>/",
                wrap(require_POST(self.control_view)),
                name="orchestration_batch_control",
            ),
            path(
                "<int:object_id>/summary/",
                wrap(self.summary_view),
                name="orchestration_batch_summary",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        context = self.live_context(request, status_counts=selectors.batch_status_counts())
        return super().changelist_view(request, {**context, **(extra_context or {})})

    def summary_context(self, request: HttpRequest, batch: Batch) -> dict[str, Any]:
        can_act = self.has_change_permission(request, batch)
        activity = selectors.batch_activity([batch.pk]).get(batch.pk, {})
        return {
            "batch": batch,
            "activity": activity,
            "counts": job_counts(batch, activity),
            "retry_width": _retry_width(batch, activity),
            "jobs": selectors.batch_jobs_page(batch.pk, request.GET.get("page", 1)),
            "can_act": can_act,
            "controls": _batch_controls(batch) if can_act else {},
        }

    def summary_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The batch page's live part (counts, times, buttons, its jobs), re-fetched when a
        message says the batch or one of its jobs moved."""
        batch = get_object_or_404(Batch, pk=object_id)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        return TemplateResponse(
            request, "orchestration/_batch_summary.html", self.summary_context(request, batch)
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = self.live_context(request, **(extra_context or {}))
        batch = Batch.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if batch is not None:
            context.update(self.summary_context(request, batch))
            context.update(title=f"Batch #{batch.pk} · {batch.name}", subtitle=None)
        context["terminal_statuses"] = [str(s) for s in BATCH_TERMINAL]
        # A details page: nothing to save (the controls above act through the services).
        context.update(show_save=False, show_save_and_continue=False,
                       show_save_and_add_another=False)  # fmt: skip
        return super().change_view(request, object_id, form_url, context)

    def control_view(self, request: HttpRequest, object_id: int, verb: str) -> HttpResponse:
        batch = get_object_or_404(Batch, pk=object_id)
        if not self.has_change_permission(request, batch):
            raise PermissionDenied
        if verb == "resume":
            try:
                services.batch_resume(batch_id=batch.pk)
                _audit(request, "batch.resume", [("batch", batch.pk)])
                self.message_user(request, f"Resumed batch {batch.pk}.", messages.SUCCESS)
            except services.JobError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        elif verb == "cancel":
            if batch.status in BATCH_TERMINAL:
                self.message_user(request, f"Batch {batch.pk} is {batch.status}: nothing to cancel.",
                                  messages.WARNING)  # fmt: skip
            else:
                services.batch_cancel(batch_id=batch.pk)
                _audit(request, "batch.cancel", [("batch", batch.pk)])
                self.message_user(request, f"Cancelled batch {batch.pk}.", messages.SUCCESS)
        else:
            return HttpResponse(status=404)
        return HttpResponseRedirect(
            reverse("tenant_admin:orchestration_batch_change", args=[batch.pk])
        )

    def add_view(self, request, form_url="", extra_context=None):
        """ "Add batch" starts one: marketplace and action, products by SKU."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        initial = {}
        selected = request.session.pop(SELECTED_SKUS_KEY, None) if request.method == "GET" else None
        if selected:  # "Publish to…" on the product list
            initial = {"skus": "\n".join(selected), "name": f"{len(selected)} selected products"}
        form = StartBatchForm(request.POST or None, initial=initial)
        summary = None
        if (
            request.method == "POST"
            and form.is_valid()
            and (form.cleaned_data["confirmed"] != _start_fingerprint(form))
        ):
            # First step: say what will start, and where, before anything is created.
            summary = _start_summary(form)
            data = request.POST.copy()
            data["confirmed"] = _start_fingerprint(form)
            form = StartBatchForm(data)
            form.is_valid()
        elif request.method == "POST" and form.is_valid():
            marketplace, action = form.cleaned_data["job_type"].split(":", 1)
            specs = [
                services.JobSpec(
                    marketplace=marketplace,
                    action=action,
                    sku=sku,
                    product_id=form.product_ids[sku],
                    priority=form.cleaned_data["priority"],
                )
                for sku in form.cleaned_data["skus"]
            ]
            batch = services.batch_create(
                name=form.cleaned_data["name"], jobs=specs, mode=form.cleaned_data["mode"],
                created_by=request.user.get_username(),
            )  # fmt: skip
            _audit(request, "batch.start", [("batch", batch.pk)], count=len(specs),
                   details={"job_type": form.cleaned_data["job_type"]})  # fmt: skip
            self.message_user(request, f"Started batch {batch.pk} ({len(specs)} jobs).")
            return HttpResponseRedirect(
                reverse("tenant_admin:orchestration_batch_change", args=[batch.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Start a batch",
            "form": form,
            "summary": summary,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/orchestration/batch/start.html", context)
