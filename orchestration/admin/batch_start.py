"""The "Start a batch" page (the batch list's "Add"): marketplace and action, products by
SKU, then a review step that says how many jobs start on which resource before anything
is created."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from marketplaces.models import Product
from orchestration import selectors, services, steps
from orchestration.admin.shared import audit
from orchestration.engine.claims import resource_policies
from orchestration.models import Batch, MarketplaceJob, ResourcePolicy
from orchestration.states import JobStatus

MAX_FORM_JOBS = 10_000  # products per batch started from the admin form


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


class StartBatchAdmin(admin.ModelAdmin):
    """The base of ``BatchAdmin`` whose "Add batch" starts one."""

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
            audit(request, "batch.start", [("batch", batch.pk)], count=len(specs),
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
