from django.urls import path

from config.consumers import WhoAmIConsumer
from orchestration.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/whoami/", WhoAmIConsumer.as_asgi()),
    path("ws/live/", LiveConsumer.as_asgi()),
]
