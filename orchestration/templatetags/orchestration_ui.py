"""Template helpers shared by the staff pages: one way to show a time, a status badge.

Every time is rendered as ``<time datetime=… data-when>`` with the absolute time (seconds and
zone) as its text; ``live.js`` turns it into a relative time ("12 s ago", "in 12 s") in the
reader's zone and keeps the absolute one on hover.
"""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


def absolute(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z") if value else ""


@register.filter
def when(value: datetime | None, style: str = "") -> str:
    """A time; ``style``: "" (relative), "countdown" ("in 12 s (11:50:27)"), "abs"."""
    if not value:
        return mark_safe('<span class="muted">—</span>')
    text = absolute(value)
    return format_html(
        '<time datetime="{}" data-when="{}" title="{}">{}</time>',
        value.isoformat(), style or "rel", text, text,
    )  # fmt: skip


@register.filter
def badge(status: str) -> str:
    return format_html(
        '<span class="live-badge status-{}">{}</span>', status, str(status).replace("_", " ")
    )
