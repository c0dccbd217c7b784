"""A job's buttons and the "… all matching" pages, the base of ``MarketplaceJobAdmin``.

Every button and action calls one service per job (``orchestration.services``); acting
on everything a filter matches is a tracked operation (``operations``) after a page that
says how many jobs it will touch.
"""

from __future__ import annotations

import copy
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse

from audit.services import Actor
from operations import filters as operation_filters
from operations import services as operations
from operations.services import INLINE_MAX
from orchestration import selectors, services
from orchestration.admin.shared import audit
from orchestration.models import MarketplaceJob
from orchestration.states import JOB_CLAIMABLE, JOB_RETRYABLE_BY_STAFF, JobStatus

BULK_CHUNK = 500  # job ids per query when acting on everything a filter matches


def run_service(modeladmin, request, job_ids, service, verb: str, action: str = "") -> int:
    done, refused = [], []
    for job_id in job_ids:
        try:
            service(job_id=job_id)
            done.append(job_id)
        except services.JobError as exc:
            refused.append(str(exc))
    if done and action:
        audit(request, action, [("job", pk) for pk in done])
    return report(modeladmin, request, len(done), refused, verb)


def report(modeladmin, request, done: int, refused: list[str], verb: str) -> int:
    if done:
        modeladmin.message_user(request, f"{verb} {done} job(s).", messages.SUCCESS)
    for reason in refused[:10]:
        modeladmin.message_user(request, reason, messages.WARNING)
    if len(refused) > 10:
        modeladmin.message_user(request, f"… and {len(refused) - 10} more.", messages.WARNING)
    return done


class JobControlsAdmin(admin.ModelAdmin):
    """One job's buttons (``control_view``) and the confirm page of retry, cancel or run
    now on everything the list's filter matches (``bulk_view``)."""

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
                audit(request, "job.retry_from_step", [("job", job.pk)],
                       details={"step_order": int(step)})  # fmt: skip
            elif verb in self._job_controls():
                service, done = self._job_controls()[verb]
                job = service(job_id=job.pk)
                audit(request, f"job.{verb}", [("job", job.pk)])
                message = f"{done} job {job.pk}."
                if verb == "run_now":
                    message = f"Run now: job {job.pk} {run_now_outlook(job.resource_key)}"
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
        # The verb acts on the matching jobs in its statuses (``BULK_STATUSES``).
        matching = changelist.get_queryset(request)
        query = params.get("_changelist_filters", "")
        if request.method == "POST" and "confirm" in request.POST:
            # A tracked operation (operations app): small ones finish inside this request,
            # large ones go on in a worker and their page shows the progress.
            try:
                job_filter = operation_filters.from_changelist_query(query)
                operation = operations.operation_start(
                    kind=verb, job_filter=actionable_filter(verb, job_filter),
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
                count=Count("pk", filter=Q(status__in=sorted(BULK_STATUSES[verb]))),
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
    return INLINE_MAX


# The statuses each bulk verb acts on (the confirmation counts the same jobs).
BULK_STATUSES = {
    "retry": set(JOB_RETRYABLE_BY_STAFF),
    "run_now": {*JOB_RETRYABLE_BY_STAFF, *JOB_CLAIMABLE, JobStatus.PENDING},
    "cancel": set(JobStatus) - {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED},
}


def actionable_filter(verb: str, job_filter: dict[str, Any]) -> dict[str, Any]:
    """The list's filter narrowed to the statuses the verb acts on."""
    wanted = BULK_STATUSES[verb]
    chosen = set(job_filter.get("status") or wanted)
    return {**job_filter, "status": sorted(str(s) for s in chosen & wanted)}


SHOW_ACTED_ON = 500  # jobs an action's answer lists by id (more: the list as it was)


def show_acted_on(ids: list[int]) -> HttpResponseRedirect | None:
    """After acting on selected jobs, list those jobs (whatever their status is now): the
    filter the action was chosen from (e.g. Failed) would show none of them any more."""
    if not ids or len(ids) > SHOW_ACTED_ON:
        return None
    target = reverse("tenant_admin:orchestration_marketplacejob_changelist")
    return HttpResponseRedirect(f"{target}?id__in={','.join(map(str, sorted(ids)))}")


def run_now_outlook(resource_key: str) -> str:
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
