"""``{% job_webhook_deliveries job %}``: the job page's list of its webhook deliveries."""

from __future__ import annotations

from django import template
from django.urls import reverse

from webhooks.models import WebhookDelivery, WebhookEndpoint

register = template.Library()
SHOWN = 20


@register.inclusion_tag("webhooks/_job_deliveries.html")
def job_webhook_deliveries(job) -> dict:
    rows = list(
        WebhookDelivery.objects.filter(job_id=job.pk)
        .select_related("endpoint")
        .order_by("id")[: SHOWN + 1]
    )
    url = reverse("tenant_admin:webhooks_webhookdelivery_changelist") + f"?q={job.pk}"
    return {
        "deliveries": rows[:SHOWN],
        "more": len(rows) > SHOWN,
        "log_url": url,
        "endpoints": WebhookEndpoint.objects.exists(),
    }
