"""The live socket (``/ws/live/``): a tenant's staff subscribe to its overview, a batch or jobs.

Thin: it checks who may listen, joins the tenant-prefixed groups that
``orchestration.live`` publishes to, and answers every subscription with a fresh
snapshot so a page that (re)connects resynchronises. Every database read runs in
``tenant_context(scope["tenant"])`` (Channels shares one DB thread between all
consumers; PITFALLS).

Client → server: ``{"subscribe": "overview"}``, ``{"subscribe": "batch", "id": 5}``,
``{"subscribe": "job", "id": 7}``, ``{"subscribe": "jobs", "ids": [7, 8]}``, the same
with ``"unsubscribe"``, and ``{"ping": 1}``. ``"statuses_only": true`` on a job or jobs
subscription leaves out those jobs' step and run messages (``live.STEP_TYPES``: a list row
shows a status, not steps) unless another subscription of the socket wants them; an
unsubscribe stops a job's messages whichever subscription asked for them. Server → client: ``hello``, ``snapshot``,
the live messages (docs/live.md), ``error``, ``pong``. Close codes: 4403 (not a staff
user of this tenant with view permission), 4404 (unknown host, from the middleware).

Who is behind the socket is checked again from its session at every subscription and at
least every ``RECHECK_SECONDS`` while messages flow: after a logout, a deactivation or a
lost permission the socket closes with 4403 (a page that may still watch something
reconnects and subscribes again to what it may).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from django_tenants.utils import get_public_schema_name, tenant_context

from config.channel_layer import group_discard
from orchestration import live, selectors

logger = logging.getLogger(__name__)

CLOSE_FORBIDDEN = 4403
MAX_GROUPS = 300  # per connection: a list page subscribes to its rows' jobs
MAX_IDS = 200  # per "jobs" subscription
_TRACKED_ENTITIES = 20_000  # last-seen timestamps kept per connection
RECHECK_SECONDS = 30.0  # while messages flow, the session is checked again this often

_NEEDS = {
    "overview": ("orchestration.view_batch", "orchestration.view_marketplacejob"),
    "batch": ("orchestration.view_batch",),
    "job": ("orchestration.view_marketplacejob",),
    "jobs": ("orchestration.view_marketplacejob",),
}


def permitted_kinds(tenant, user) -> frozenset[str]:
    """What this user may watch in this tenant: nothing unless active staff of the tenant."""
    if tenant is None or tenant.schema_name == get_public_schema_name():
        return frozenset()
    with tenant_context(tenant):
        if not (user is not None and user.is_authenticated and user.is_active and user.is_staff):
            return frozenset()
        return frozenset(kind for kind, perms in _NEEDS.items() if user.has_perms(perms))


def permitted_kinds_now(tenant, session_key: str | None) -> frozenset[str]:
    """``permitted_kinds`` for whoever the session names now (nobody after a logout; the
    session-hash check of ``get_user`` also drops sessions of a changed password)."""
    from django.contrib.auth import get_user

    if tenant is None or not session_key:
        return frozenset()
    with tenant_context(tenant):
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return permitted_kinds(tenant, user)


def _read_snapshot(tenant, kind: str, ids: list[int]) -> dict[str, Any] | None:
    schema = tenant.schema_name
    with tenant_context(tenant):
        if kind == "overview":
            return selectors.overview_snapshot(schema)
        if kind == "batch":
            return selectors.batch_snapshot(schema, ids[0])
        if kind == "job":
            return selectors.job_snapshot(schema, ids[0])
        snapshot = selectors.jobs_snapshot(schema, ids)
        return snapshot if snapshot["jobs"] else None


def _entity(message: dict[str, Any]) -> tuple | None:
    """What a live message is a snapshot of (to drop one older than what was already sent)."""
    kind = message.get("type")
    if kind == "complete" and message.get("batch_id") is None:
        # A step's own "complete" (a plan's steps): one per job, step and attempt, never
        # mistaken for another job's or step's.
        return (kind, "job", message.get("job_id"), message.get("step"), message.get("attempt"))
    if kind in ("batch_progress", "complete"):
        return (kind, message.get("batch_id"))
    if kind == "job_status":
        return (kind, message.get("job_id"))
    if kind == "task_progress":
        return (kind, message.get("task_id"))
    if isinstance(kind, str) and kind.startswith("run_"):
        return (kind, message.get("run_id"))
    return None


def _ids(content: dict[str, Any], kind: str) -> list[int] | None:
    if kind == "overview":
        return []
    raw = content.get("ids") if kind == "jobs" else [content.get("id")]
    if not isinstance(raw, list) or not raw or len(raw) > MAX_IDS:
        return None
    if not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in raw):
        return None
    return sorted(set(raw))


_NOT_JSON = object()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        self.tenant = self.scope.get("tenant")
        self.kinds = await database_sync_to_async(permitted_kinds)(
            self.tenant, self.scope.get("user")
        )
        # Accept, then close with a code the page can read (a refusal before accept
        # reaches browsers as a bare 1006, which they would retry for ever).
        await self.accept()
        self.closing = not self.kinds
        if not self.kinds:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        session = self.scope.get("session")
        self.session_key = getattr(session, "session_key", None)
        self.checked_at = time.monotonic()
        self.schema = self.tenant.schema_name
        self.joined: set[str] = set()
        self.subscriptions: dict[tuple[str, int | None], set[str]] = {}
        # Jobs whose live.STEP_TYPES messages this socket wants. A list of 100 running jobs
        # gets ~4 of those per status it shows, each a JSON frame here and a parse in the page.
        self.steps_of: set[int] = set()
        self.last_seen: dict[tuple, datetime] = {}
        self.catching_up: set[asyncio.Future] = set()
        await self.send_json(
            {"type": "hello", "tenant": self.schema, "user": self.scope["user"].get_username(),
             "may_watch": sorted(self.kinds), "timestamp": timezone.now().isoformat()}
        )  # fmt: skip

    async def disconnect(self, code: int) -> None:
        for task in list(getattr(self, "catching_up", ())):
            task.cancel()
        for group in list(getattr(self, "joined", ())):
            try:
                await group_discard(self.channel_layer, group, self.channel_name)
            except Exception:
                logger.exception("could not leave %s", group)
        self.joined = set()

    async def _allowed_now(self, *, force: bool = False) -> bool:
        """Re-read the session's permissions (at most every ``RECHECK_SECONDS`` unless
        ``force``); close with 4403 if any was lost."""
        if self.closing:
            return False
        if not force and time.monotonic() - self.checked_at < RECHECK_SECONDS:
            return True
        kinds = await database_sync_to_async(permitted_kinds_now)(self.tenant, self.session_key)
        self.checked_at = time.monotonic()
        lost = not kinds or not kinds >= self.kinds
        self.kinds = kinds
        if lost:
            self.closing = True
            await self.close(code=CLOSE_FORBIDDEN)
            return False
        return True

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except ValueError:  # not JSON: answered as an error below, the socket stays open
            return _NOT_JSON

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if content is _NOT_JSON:
            await self._error("expected JSON text")
            return
        if not await self._allowed_now(
            force="subscribe" in content if isinstance(content, dict) else False
        ):
            return
        if not isinstance(content, dict):
            await self._error("expected a JSON object")
        elif "subscribe" in content:
            await self._subscribe(content)
        elif "unsubscribe" in content:
            await self._unsubscribe(content)
        elif "ping" in content:
            await self.send_json({"type": "pong", "timestamp": timezone.now().isoformat()})
        else:
            await self._error("expected subscribe, unsubscribe or ping")

    async def _subscribe(self, content: dict[str, Any]) -> None:
        kind = content.get("subscribe")
        if not isinstance(kind, str) or kind not in _NEEDS:
            await self._error(f"unknown subscription {kind!r}", request=content)
            return
        if kind not in self.kinds:
            await self._error(f"not allowed to watch {kind}", request=content)
            return
        ids = _ids(content, kind)
        if ids is None:
            await self._error("expected a positive integer id (ids: up to 200)", request=content)
            return
        statuses_only = content.get("statuses_only", False)
        if not isinstance(statuses_only, bool) or (statuses_only and kind not in ("job", "jobs")):
            await self._error("statuses_only: true or false, on job or jobs", request=content)
            return
        snapshot = await database_sync_to_async(_read_snapshot)(self.tenant, kind, ids)
        if snapshot is None:
            await self._error(f"no such {kind} in this tenant", request=content)
            return
        found = ids
        if kind == "jobs":
            found = [j["job_id"] for j in snapshot["jobs"]]
        groups = self._groups(kind, found)
        if len(self.joined | groups) > MAX_GROUPS:
            await self._error(f"too many subscriptions (at most {MAX_GROUPS})", request=content)
            return
        # Join first, then send the snapshot read above or newer: nothing falls in between.
        for group in groups - self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self.joined |= groups
        for key in self._keys(kind, found):
            self.subscriptions[key] = self._groups(key[0], [key[1]] if key[1] else [])
        if kind in ("job", "jobs") and not statuses_only:
            self.steps_of.update(found)
        await self.send_json(snapshot)
        if kind in ("job", "jobs"):
            # Publishers learn within ``live.WATCH_MAX_AGE`` that a job group has a member; what
            # they left out before is in this second snapshot (docs/live.md).
            task = asyncio.ensure_future(self._catch_up(kind, found))
            self.catching_up.add(task)
            task.add_done_callback(self.catching_up.discard)

    async def _catch_up(self, kind: str, ids: list[int]) -> None:
        await asyncio.sleep(live.CATCH_UP_SECONDS)
        still = [pk for pk in ids if ("job", pk) in self.subscriptions]
        if not still or self.closing:
            return
        try:
            snapshot = await database_sync_to_async(_read_snapshot)(self.tenant, kind, still)
        except Exception:
            logger.exception("could not read the catch-up snapshot of %s %s", kind, still)
            return
        if snapshot is not None and not self.closing:
            await self.send_json(snapshot)

    async def _unsubscribe(self, content: dict[str, Any]) -> None:
        kind = str(content.get("unsubscribe"))
        ids = _ids(content, kind) if kind in _NEEDS else None
        if ids is None:
            await self._error("nothing to unsubscribe", request=content)
            return
        for key in self._keys(kind, ids):
            self.subscriptions.pop(key, None)
        if kind in ("job", "jobs"):
            self.steps_of.difference_update(ids)
        still_needed = set().union(*self.subscriptions.values()) if self.subscriptions else set()
        for group in self.joined - still_needed:
            await group_discard(self.channel_layer, group, self.channel_name)
        self.joined &= still_needed

    def _groups(self, kind: str, ids: list[int]) -> set[str]:
        if kind == "overview":
            return {live.group_name(self.schema, "overview")}
        group_kind = "batch" if kind == "batch" else "job"
        return {live.group_name(self.schema, group_kind, pk) for pk in ids}

    @staticmethod
    def _keys(kind: str, ids: list[int]) -> list[tuple[str, int | None]]:
        if kind == "overview":
            return [("overview", None)]
        return [("batch" if kind == "batch" else "job", pk) for pk in ids]

    async def _error(self, error: str, *, request: Any = None) -> None:
        message: dict[str, Any] = {"type": "error", "error": error,
                                   "timestamp": timezone.now().isoformat()}  # fmt: skip
        if request is not None:
            message["request"] = request
        await self.send_json(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every handler, through a thread:
        # a hop per message, most of this consumer's time while a tenant is busy (and a wait
        # behind whatever that thread is doing). A live message reads nothing; its session
        # recheck goes through database_sync_to_async, which closes them itself.
        if message.get("type") == live.LIVE_MESSAGE:
            await self.live_message(message)
        else:
            await super().dispatch(message)

    async def live_message(self, envelope: dict[str, Any]) -> None:
        """A message from ``orchestration.live``: forward it unless it is stale or a duplicate."""
        message = envelope["message"]
        if message.get("tenant") != self.schema:
            return  # cannot happen (groups carry the schema); never forward another tenant's data
        if message.get("type") in live.STEP_TYPES and message.get("job_id") not in self.steps_of:
            return  # its job is watched for its status only
        if not await self._allowed_now():
            return
        entity = _entity(message)
        if entity is not None:
            try:
                stamp = datetime.fromisoformat(message["timestamp"])
            except (KeyError, TypeError, ValueError):
                stamp = None
            if stamp is not None:
                seen = self.last_seen.get(entity)
                if seen is not None and stamp <= seen:
                    return  # the same message through a second group, or an older state
                if len(self.last_seen) >= _TRACKED_ENTITIES:
                    self.last_seen.clear()
                self.last_seen[entity] = stamp
        await self.send_json(message)
