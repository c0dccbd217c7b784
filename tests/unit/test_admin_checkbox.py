"""The live lists' row checkbox is Django's, byte for byte, without its widget template."""

from __future__ import annotations

import pytest
from django.contrib import admin

from orchestration.admin.batches import BatchAdmin
from orchestration.admin.jobs import MarketplaceJobAdmin
from orchestration.models import Batch, MarketplaceJob


@pytest.mark.parametrize(
    ("admin_class", "obj"),
    [
        (MarketplaceJobAdmin, MarketplaceJob(pk=7, marketplace="etsy", action="publish",
                                             sku='<b>"quoted" & odd</b>')),
        (BatchAdmin, Batch(pk=12, name="Spring <sale> & 'more'")),
    ],
)  # fmt: skip
def test_the_row_checkbox_is_djangos_markup(admin_class, obj):
    model_admin = admin_class(type(obj), admin.site)
    ours = model_admin.action_checkbox(obj)
    assert ours == admin.ModelAdmin.action_checkbox(model_admin, obj)
    assert "<b>" not in ours and "&lt;" in ours
