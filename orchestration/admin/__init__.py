"""The seller's admin for the engine. Actions and buttons call the engine's services only.

Lists stay fast on millions of rows: estimated counts (``EstimatedCountPaginator``,
``show_full_result_count=False``), filters whose choices need no query, indexes for
the default ordering under each filter, and a constant number of queries per page.
Status badges and progress bars update live over ``/ws/live/`` (static
``orchestration/live.js``). Staff with view permission only see everything and no
action (Django hides actions they may not run; the templates hide the buttons).

- ``jobs``: the job list and page; ``job_controls``: its buttons and "… all matching";
- ``batches``: the batch list and page; ``batch_start``: "Start a batch";
- ``resources``: resource limits; ``shared``: mixins, filters, the audit entry;
  ``display``: badges, bars and counts the pages share.

Importing this package registers the model admins on ``tenant_admin_site``.
"""

from orchestration.admin.batch_start import MAX_FORM_JOBS, SELECTED_SKUS_KEY, StartBatchForm
from orchestration.admin.batches import BatchAdmin
from orchestration.admin.display import job_counts, next_attempt, progress_bar, status_badge
from orchestration.admin.job_controls import BULK_CHUNK
from orchestration.admin.jobs import MarketplaceJobAdmin
from orchestration.admin.resources import ResourcePolicyAdmin
from orchestration.admin.shared import (
    BatchFilter,
    EngineRowAdminMixin,
    LiveAdminMixin,
    MarketplaceFilter,
)

__all__ = [
    "BULK_CHUNK",
    "MAX_FORM_JOBS",
    "SELECTED_SKUS_KEY",
    "BatchAdmin",
    "BatchFilter",
    "EngineRowAdminMixin",
    "LiveAdminMixin",
    "MarketplaceFilter",
    "MarketplaceJobAdmin",
    "ResourcePolicyAdmin",
    "StartBatchForm",
    "job_counts",
    "next_attempt",
    "progress_bar",
    "status_badge",
]
