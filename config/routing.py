from django.conf import settings
from django.urls import path

from config.consumers import WhoAmIConsumer
from orchestration.consumers import LiveConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
]
# The diagnostic socket answers any visitor with the tenant and user it sees: development
# and tests only (settings.DIAGNOSTIC_SOCKETS, refused with DJANGO_ENV=production).
if settings.DIAGNOSTIC_SOCKETS:
    websocket_urlpatterns.append(path("ws/whoami/", WhoAmIConsumer.as_asgi()))
