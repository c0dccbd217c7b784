"""Resume a resource (``--resource <key>``) or a whole tenant's work; audited."""

from __future__ import annotations

from operations.management.commands.pause import Command as PauseCommand


class Command(PauseCommand):
    help = "Resume a resource of a tenant (--resource) or the tenant's whole queue."
    paused = False
