"""Live quota inside each WebSocket process: one channel-layer member per process, fanning out locally.

``live_quota`` sends each tick's changed slot states as ONE group message to ``LIVE_GROUP``. Every
daphne process that has viewers keeps one ``Hub``, the only member of that group on its behalf; the hub
serializes each state once, frames it once, and writes that frame to every local viewer of that slot.

Why not a group per slot with every consumer in it (the textbook Channels layout, which we measured
first): a broadcast then costs one Redis list push per viewer, and each of thousands of consumers wakes,
takes its turn at the layer's receive lock, hops to a thread for Channels' per-message connection
clean-up and JSON-encodes the same state again. At 2,000 viewers the last one saw a sell-out ~19 s late
(docs/benchmarks.md). Here a broadcast costs one push per process and one encode per slot, and the
per-viewer work is the socket write itself.

Anti-entropy: a broadcast can be lost without any error the hub could see (the group key flushed or
evicted while the process was briefly out of the group, a full channel dropping a message). So each
time the hub renews its membership it also re-reads the watched slots from Redis, in one round trip,
and fans out any state newer than the one it last sent: whatever was lost, viewers hold the truth
again within ``MEMBERSHIP_REFRESH_SECONDS``.

Coalescing under load: states received while a fan-out is running replace older pending ones, so a
process short of CPU sends fewer, newer messages instead of falling behind, and the final state always
goes out last. A new state (sold out) even cuts short the fan-out of an older count still in progress
for thousands of viewers: those not reached yet get the final state first.

Pacing: a falling count is news, not a change of state. With many viewers of a slot, its updates are
spaced so that viewers x updates per second stays within ``WAR_LIVE_FRAMES_PER_SECOND`` for the process
(5,000 viewers at 2,000 frames/s: one update every 2.5 s). A new state (open, sold out, closed) always
goes out at once: the moment that matters to a buyer, the final 0, is never held back, and neither the
server nor thousands of phones spend their CPU on counts nobody can read that fast.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import NamedTuple, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings

from queueing.services import live
from wartiket.outages import is_outage

log = logging.getLogger(__name__)

# Give the event loop back (connects, pings, socket writes) every this many viewers of one fan-out.
YIELD_EVERY = 256
# After the channel layer failed (Redis down), wait this long before joining the group again.
RETRY_SECONDS = 1.0
# Group membership lives in a Redis key: it expires (CHANNEL_LAYERS' group_expiry, so members of dead
# processes fade) and a restarted, empty Redis forgets it. Re-adding this often keeps a live process in;
# the watched slots are re-read as often, which bounds how long a lost broadcast can leave a page stale.
MEMBERSHIP_REFRESH_SECONDS = 2.0


class Frame:
    """One state for every viewer of a slot, encoded once: JSON text, and the WebSocket frame built from it.

    The frame is autobahn's broadcast API (``prepareMessage`` once, ``sendPreparedMessage`` per socket), what
    daphne's own send path would frame anew for each viewer.
    """

    __slots__ = ("_prepared", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self._prepared = None

    def prepared(self, protocol):
        """The frame for ``protocol`` (an autobahn server protocol); made on first use, then shared."""
        if self._prepared is None:
            self._prepared = protocol.factory.prepareMessage(self.text.encode())
        return self._prepared


class Viewer(Protocol):
    async def push(self, version: int, frame: Frame) -> None: ...


class Sent(NamedTuple):
    """A slot's last fan-out."""

    at: float  # loop time
    state: str
    version: int


class Hub:
    """The fan-out of one event loop (one daphne process; one ``asyncio.run`` in tests)."""

    def __init__(self, layer, frames_per_second: int) -> None:
        self.layer = layer
        self.frames_per_second = max(1, frames_per_second)
        self.viewers: dict[int, set[Viewer]] = {}
        self.pending: dict[int, dict] = {}
        self.last_sent: dict[int, Sent] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.wakeup = asyncio.Event()
        self.joined = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    async def add(self, slot_id: int, viewer: Viewer) -> None:
        """Start sending ``slot_id``'s changes to ``viewer``; returns once this process is in the group.

        Waiting for the group matters: the caller reads the current state next, and a change landing
        after that read must already reach this process.
        """
        self.viewers.setdefault(slot_id, set()).add(viewer)
        if not self.tasks:
            self.tasks = [asyncio.create_task(self._receive()), asyncio.create_task(self._fan_out())]
        await self.joined.wait()

    async def close(self) -> None:
        """Stop the hub's tasks and wait until they have ended. Call it before the event loop closes.

        Left to ``asyncio.run``'s teardown, which cancels every task at once (channels_redis' own helper
        tasks included), the receive task was seen to never end: a CI run hung there (test_live). Here
        only the hub's tasks are cancelled, and again every second until they are done, in case a
        cancellation is lost inside the layer's blocking receive.
        """
        tasks, self.tasks = self.tasks, []
        if self.timer is not None:
            self.timer.cancel()
        while tasks:
            for task in tasks:
                task.cancel()
            _done, pending = await asyncio.wait(tasks, timeout=1.0)
            tasks = list(pending)
            if tasks:
                log.warning("live fan-out: %d task(s) outlived a cancellation; cancelling again", len(tasks))
        self.joined.clear()

    def discard(self, slot_id: int, viewer: Viewer) -> None:
        watching = self.viewers.get(slot_id)
        if watching is not None:
            watching.discard(viewer)
            if not watching:
                del self.viewers[slot_id]
                self.pending.pop(slot_id, None)
                self.last_sent.pop(slot_id, None)

    def offer(self, states: list[dict]) -> None:
        """Queue states for the fan-out: only watched slots, only versions newer than any sent or queued."""
        for state in states:
            slot_id = state["slot"]
            if slot_id not in self.viewers:
                continue
            sent = self.last_sent.get(slot_id)
            if sent is not None and state["version"] <= sent.version:
                continue
            queued = self.pending.get(slot_id)
            if queued is None or state["version"] >= queued["version"]:
                self.pending[slot_id] = state
        if self.pending:
            self.wakeup.set()

    async def _receive(self) -> None:
        rejoined = False
        while True:
            try:
                channel = await self.layer.new_channel()
                await self.layer.group_add(live.LIVE_GROUP, channel)
                self.joined.set()
                if rejoined:
                    # Broadcasts sent while this process was out of the group are lost: catch up.
                    await self._resync()
                refresher = asyncio.create_task(self._stay_in_group(channel))
                try:
                    while True:
                        message = await self.layer.receive(channel)
                        self.offer(message.get("states", []))
                finally:
                    refresher.cancel()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the hub must outlive any Redis or layer failure
                # Viewers stay connected and keep their last state; pages also re-read on reconnect. An
                # outage is expected weather; anything else is a bug, worth its traceback in the log.
                report = log.warning if is_outage(exc) else log.exception
                report("live fan-out: channel layer failed (%r); rejoining in %.0f s", exc, RETRY_SECONDS)
                self.joined.set()  # never keep a connecting viewer waiting on an outage
                rejoined = True
                await asyncio.sleep(RETRY_SECONDS)

    async def _stay_in_group(self, channel: str) -> None:
        while True:
            await asyncio.sleep(MEMBERSHIP_REFRESH_SECONDS)
            try:
                await self.layer.group_add(live.LIVE_GROUP, channel)
                await self._resync()
            except Exception as exc:  # an outage: the receive loop notices it too and rejoins
                log.debug("live fan-out: could not refresh group membership: %r", exc)

    async def _resync(self) -> None:
        """Offer the watched slots' current states; ``offer`` keeps only those newer than what was sent."""
        if self.viewers:
            states = await database_sync_to_async(live.read_states_by_id)(list(self.viewers))
            self.offer([state.message() for state in states.values()])

    def take_due(self, now: float) -> tuple[dict[int, dict], float | None]:
        """The pending states to send now, and when the earliest one held back by pacing is due."""
        due, later = {}, None
        for slot_id, state in self.pending.items():
            sent = self.last_sent.get(slot_id)
            gap = len(self.viewers.get(slot_id, ())) / self.frames_per_second
            if sent is None or state["state"] != sent.state or now - sent.at >= gap:
                due[slot_id] = state
            else:
                later = sent.at + gap if later is None else min(later, sent.at + gap)
        for slot_id in due:
            del self.pending[slot_id]
        return due, later

    def _overtaken(self, slot_id: int, sending: dict) -> bool:
        """Whether a pending state of the slot changes its state (open, sold out, closed): it goes out at once."""
        pending = self.pending.get(slot_id)
        return pending is not None and pending["state"] != sending["state"]

    async def _fan_out(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            now = loop.time()
            batch, later = self.take_due(now)
            if later is not None:
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = loop.call_at(later, self.wakeup.set)
            for slot_id, state in batch.items():
                self.last_sent[slot_id] = Sent(now, state["state"], state["version"])
                frame = Frame(json.dumps(state, separators=(",", ":")))
                for n, viewer in enumerate(list(self.viewers.get(slot_id, ()))):
                    try:
                        await viewer.push(state["version"], frame)
                    except Exception:  # one broken socket must not stop the others' updates
                        log.exception("live fan-out: could not push to a viewer of slot %s", slot_id)
                        self.discard(slot_id, viewer)
                    if n % YIELD_EVERY == YIELD_EVERY - 1:
                        await asyncio.sleep(0)
                        if self._overtaken(slot_id, state):
                            # A new state (sold out) arrived while this slot's older one was still going
                            # out: the viewers not reached yet get the new one first, not after the old.
                            break


_hubs: dict[asyncio.AbstractEventLoop, Hub] = {}


async def close_hub() -> None:
    """Stop this event loop's hub, if it has one (before closing the loop: tests, embedding)."""
    found = _hubs.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


def hub() -> Hub:
    """This event loop's hub (created on first use; it lives as long as the loop)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        # Forget hubs of closed loops (tests run one loop each).
        for old in [old for old in _hubs if old.is_closed()]:
            del _hubs[old]
        found = _hubs[loop] = Hub(get_channel_layer(), settings.WAR_LIVE_FRAMES_PER_SECOND)
    return found
