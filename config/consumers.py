"""A diagnostic WebSocket: answers who the socket is (tenant, user). Used by the smoke test."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class WhoAmIConsumer(AsyncJsonWebsocketConsumer):
    # Needs no groups: an alias with no layer keeps it off the channel layer.
    channel_layer_alias = "__no_layer__"

    async def connect(self):
        await self.accept()

    async def receive_json(self, content, **kwargs):
        user = self.scope["user"]
        await self.send_json(
            {
                "type": "whoami",
                "echo": content,
                "tenant": self.scope["tenant"].schema_name,
                "user": user.get_username() if user.is_authenticated else None,
            }
        )
