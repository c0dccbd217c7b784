"""Webhooks in the tenant admin: endpoints (the secret is shown once, on the page that
answers the creation or a rotation), the delivery log per endpoint and per job with each
attempt, redeliver one or many, test ping. Every action calls ``webhooks.services``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from config.admin_sites import tenant_admin_site
from webhooks import services
from webhooks.models import SUBSCRIBABLE, WebhookAttempt, WebhookDelivery, WebhookEndpoint


class EndpointForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=[(t, t) for t in SUBSCRIBABLE], required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Events sent to this endpoint; none selected = all of them.",
    )  # fmt: skip

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "event_types", "active"]

    def clean_url(self) -> str:
        try:
            return services.check_endpoint_url(self.cleaned_data["url"])
        except services.WebhookError as exc:
            raise forms.ValidationError(str(exc)) from None


def _deliveries_url(**filters: Any) -> str:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return f"{reverse('tenant_admin:webhooks_webhookdelivery_changelist')}?{query}"


@admin.register(WebhookEndpoint, site=tenant_admin_site)
class WebhookEndpointAdmin(admin.ModelAdmin):
    form = EndpointForm
    list_display = ["url", "description", "events", "active", "health", "last_success_at",
                    "log"]  # fmt: skip
    list_filter = ["active"]
    search_fields = ["url", "description"]
    readonly_fields = ["health", "failing_since", "last_success_at", "created_by", "created_at",
                       "log"]  # fmt: skip
    actions = ["send_ping", "rotate_secrets", "enable_endpoints"]

    def get_fields(self, request, obj=None):
        base = ["url", "description", "event_types", "active"]
        return base if obj is None else [*base, *self.readonly_fields]

    @admin.display(description="events")
    def events(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types) or "all"

    @admin.display(description="health")
    def health(self, obj: WebhookEndpoint) -> str:
        if obj.disabled_at:
            return format_html(
                '<strong class="errornote">disabled</strong> {}', obj.disabled_reason
            )
        if not obj.active:
            return "inactive"
        if obj.failing_since:
            return format_html('<span class="errornote">failing since {:%Y-%m-%d %H:%M}</span>',
                               obj.failing_since)  # fmt: skip
        return "ok"

    @admin.display(description="deliveries")
    def log(self, obj: WebhookEndpoint) -> str:
        return format_html(
            '<a href="{}">delivery log</a>', _deliveries_url(endpoint__id__exact=obj.pk)
        )

    @method_decorator(sensitive_post_parameters())
    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        endpoint = (
            WebhookEndpoint.objects.filter(pk=object_id).first()
            if str(object_id).isdigit()
            else None
        )
        if endpoint is not None and endpoint.disabled_at and request.method == "GET":
            messages.error(request, endpoint.disabled_reason)
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.endpoint_update(
                endpoint_id=obj.pk, url=data["url"], event_types=data["event_types"],
                description=data["description"], active=data["active"],
            )  # fmt: skip
        else:
            created = services.endpoint_create(
                url=data["url"], event_types=data["event_types"], description=data["description"],
                active=data["active"], created_by=request.user.get_username(),
            )  # fmt: skip
            saved = created.endpoint
            request._webhook_secret = created.secret  # for response_add, this response only
        obj.pk, obj.secret = saved.pk, saved.secret

    def response_add(self, request, obj, post_url_continue=None):
        return self._secret_page(request, [(obj, request._webhook_secret)], created=True)

    def _secret_page(self, request, pairs, *, created: bool) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Webhook endpoint created" if created else "New webhook secrets",
            "pairs": pairs, "opts": self.model._meta,
            "changelist": reverse("tenant_admin:webhooks_webhookendpoint_changelist"),
        }  # fmt: skip
        response = TemplateResponse(request, "admin/webhooks/secret_once.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Send a test ping", permissions=["change"])
    def send_ping(self, request, queryset: QuerySet[WebhookEndpoint]):
        sent = 0
        for endpoint in queryset:
            try:
                services.endpoint_ping(endpoint_id=endpoint.pk)
                sent += 1
            except services.WebhookError as exc:
                self.message_user(request, str(exc), messages.WARNING)
        if sent:
            self.message_user(request, f"Ping queued for {sent} endpoint(s); see the delivery log.",
                              messages.SUCCESS)  # fmt: skip

    @admin.action(description="Rotate the signing secret (shown once)", permissions=["change"])
    def rotate_secrets(self, request, queryset: QuerySet[WebhookEndpoint]):
        pairs = []
        for endpoint in queryset:
            rotated = services.endpoint_rotate_secret(endpoint_id=endpoint.pk)
            pairs.append((rotated.endpoint, rotated.secret))
        return self._secret_page(request, pairs, created=False)

    @admin.action(description="Enable (resume pending deliveries)", permissions=["change"])
    def enable_endpoints(self, request, queryset: QuerySet[WebhookEndpoint]):
        for endpoint in queryset.filter(active=False):
            services.endpoint_update(endpoint_id=endpoint.pk, active=True)
        self.message_user(request, "Enabled.", messages.SUCCESS)


class AttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = readonly_fields = ("number", "started_at", "status_code", "latency_ms", "error",
                                "response_excerpt", "worker")  # fmt: skip
    extra = 0
    can_delete = False
    ordering = ["number", "pk"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery, site=tenant_admin_site)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event_type", "endpoint", "job_link", "status", "attempts",
                    "last_status_code", "last_latency_ms", "created_at", "delivered_at",
                    "next_attempt_at"]  # fmt: skip
    list_filter = ["status", "event_type", "endpoint"]
    search_fields = ["=event_id", "=job_id", "=run_id"]
    show_full_result_count = False
    list_select_related = ["endpoint"]
    inlines = [AttemptInline]
    actions = ["redeliver"]
    fields = readonly_fields = (
        "event_id", "event_type", "endpoint", "job_link", "run_id", "batch_id", "status",
        "attempts", "next_attempt_at", "created_at", "delivered_at", "last_status_code",
        "last_latency_ms", "last_error", "payload_json",
    )  # fmt: skip

    @admin.display(description="job")
    def job_link(self, obj: WebhookDelivery) -> str:
        if not obj.job_id:
            return "-"
        url = reverse("tenant_admin:orchestration_marketplacejob_change", args=[obj.job_id])
        return format_html('<a href="{}">job {}</a>', url, obj.job_id)

    @admin.display(description="payload")
    def payload_json(self, obj: WebhookDelivery) -> str:
        import json

        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2, sort_keys=True))

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if term and not term.isdigit() and len(term) != 36:
            return queryset.none(), False  # not an id or a uuid: nothing matches
        if term and not term.isdigit():
            return queryset.filter(event_id=term), False
        if term:
            return queryset.filter(job_id=int(term)) | queryset.filter(run_id=int(term)), False
        return queryset, False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Read-only rows; the "change" permission is what the redeliver action needs.
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Redeliver selected (same event id)", permissions=["change"])
    def redeliver(self, request, queryset: QuerySet[WebhookDelivery]):
        queued = services.deliveries_redeliver(
            delivery_ids=list(queryset.values_list("pk", flat=True))
        )
        self.message_user(
            request, f"{queued} delivery(ies) queued to be sent again.", messages.SUCCESS
        )
