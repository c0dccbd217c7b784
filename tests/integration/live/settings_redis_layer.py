"""Project settings with the Redis channel layer only (the q2 broker stays in PostgreSQL)."""

from config.settings import *  # noqa: F403
from tests.integration.live.layers import REDIS_CHANNEL_LAYERS

CHANNEL_LAYERS = REDIS_CHANNEL_LAYERS
