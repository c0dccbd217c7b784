import contextlib

import pytest_asyncio
from django.test import override_settings

import tests.engine_providers  # noqa: F401  (registers the "testmkt" provider)
from config.channel_layer import close_channel_layers
from orchestration import live
from tests.integration.live.layers import LAYER_KINDS, REDIS_CHANNEL_LAYERS


@pytest_asyncio.fixture(params=LAYER_KINDS)
async def layer_kind(request):
    """Runs the test against channels-postgres, then channels-redis (publisher and receivers)."""
    live.stop_publisher()
    await close_channel_layers()
    use = (
        override_settings(CHANNEL_LAYERS=REDIS_CHANNEL_LAYERS)
        if request.param == "redis"
        else contextlib.nullcontext()
    )
    with use:
        try:
            yield request.param
        finally:
            live.stop_publisher()
            await close_channel_layers()
