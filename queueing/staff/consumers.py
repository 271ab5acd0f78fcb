"""WebSockets for staff: the war room's figures, pushed every half second while someone watches."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from queueing.services import warroom
from wartiket.outages import is_outage

log = logging.getLogger(__name__)

# Numbers on the page must be at most a second old: push twice a second.
INTERVAL_SECONDS = 0.5
CLOSE_FORBIDDEN = 4403


class WarRoomConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/staff/warroom/`` (today's wars) or ``/ws/staff/warroom/<slot id>/``; staff only.

    Each socket samples for itself (one Redis round trip, one PostgreSQL count per push): a handful of
    staff watch, so there is nothing to share, and nothing runs once they close the page.
    """

    async def connect(self):
        user = self.scope.get("user")
        if not (user is not None and user.is_authenticated and user.is_active and user.is_staff):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        slot_id = self.scope["url_route"]["kwargs"].get("slot_id")
        self.sampler = warroom.Sampler([slot_id] if slot_id else None)
        await self.accept()
        self.pusher = asyncio.create_task(self._push())

    async def disconnect(self, code):
        pusher = getattr(self, "pusher", None)
        if pusher is not None:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pusher

    async def receive_json(self, content, **kwargs):
        pass  # the war room only listens

    async def _push(self):
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                figures = await database_sync_to_async(self.sampler.sample)()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("war room: cannot read figures: %r", exc)
                figures = {"type": "unavailable"}
            await self.send_json(figures)
            await asyncio.sleep(max(0.0, INTERVAL_SECONDS - (loop.time() - started)))
