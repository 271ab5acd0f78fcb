"""WebSockets: a slot's live remaining quota, for anyone watching its war page (anonymous viewers too)."""

from __future__ import annotations

from functools import partial

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from queueing.services import fanout, live

# Close code for "no such slot" (4000-4999 are the application's own).
CLOSE_UNKNOWN_SLOT = 4404


class SlotConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/slots/<id>/``: the current state on connect, then every change ``live_quota`` pushes.

    Changes arrive through this process's fan-out hub (``services/fanout.py``), not through a channel
    of the consumer's own: a viewer costs the channel layer nothing.
    """

    # No channel per viewer (Channels gives a consumer none when its alias names no configured layer).
    channel_layer_alias = None

    async def connect(self):
        self.slot_id = int(self.scope["url_route"]["kwargs"]["slot_id"])
        self.version = -1
        self.socket = _daphne_socket(self.base_send)
        await self.accept()
        # Join before reading: a change landing between the two then arrives through the hub (dropped
        # by push() if the read already covered it) instead of being missed until the next change.
        self.hub = fanout.hub()
        await self.hub.add(self.slot_id, self)
        state = await database_sync_to_async(live.read_state)(self.slot_id)
        if state is None:
            self.hub.discard(self.slot_id, self)
            await self.close(code=CLOSE_UNKNOWN_SLOT)
            return
        if self._newer(state.version):
            await self.send_json(state.message())

    async def disconnect(self, code):
        if hasattr(self, "hub"):
            self.hub.discard(self.slot_id, self)

    async def receive_json(self, content, **kwargs):
        # Viewers only listen; the war itself goes through POST /api/war.
        pass

    async def push(self, version: int, frame: fanout.Frame) -> None:
        """Called by the hub with a state already encoded (and framed) once for all viewers of the slot."""
        if not self._newer(version):
            return
        socket = self.socket
        if socket is not None:
            # The frame straight to the socket: at a sell-out this runs once per viewer, thousands of times,
            # and the ASGI path (Channels' send, daphne's reply dispatch, autobahn framing each copy anew) cost
            # about 2/3 of a push's CPU (py-spy of daphne during a 5,000-viewer storm, docs/benchmarks.md).
            if socket.state == socket.STATE_OPEN:
                socket.sendPreparedMessage(frame.prepared(socket))
        else:
            await self.send(text_data=frame.text)

    def _newer(self, version: int) -> bool:
        # The hub may deliver a state before the initial read, or repeat a settled one: only newer ones go out.
        if version <= self.version:
            return False
        self.version = version
        return True


def _daphne_socket(send):
    """The autobahn protocol behind daphne's ASGI ``send`` (``partial(Server.handle_reply, protocol)``), else None.

    Under another server, or Channels' test communicator, pushes take the ASGI send.
    """
    if isinstance(send, partial) and send.args and hasattr(send.args[0], "sendPreparedMessage"):
        return send.args[0]
    return None
