"""Live quota for pages: each slot's state read from Redis, and the broadcaster that pushes changes.

The reservation path never publishes anything (no extra Redis round trip, no per-reservation fan-out).
Instead one ``live_quota`` process polls: every tick it reads ``quota/sold/ver/opens/closes`` of every
slot in the catalog in ONE pipeline and sends the states of the slots whose ``ver`` moved since it last
sent as ONE ``group_send`` to ``LIVE_GROUP``, whose members are the WebSocket processes' fan-out hubs
(``services/fanout.py``). A viewer therefore gets at most one message per tick (4/s at 250 ms) however
many reservations land, and the last change is always followed by a message (trailing edge).

Why every catalog slot rather than only the watched ones: the catalog holds tens of slots (days ahead x
boutiques x time labels), so one pipelined HMGET each per tick costs Redis well under a millisecond,
while tracking who watches what would need presence bookkeeping shared by every daphne process. A
state nobody watches is dropped by each hub at the cost of a dictionary lookup.

Channels' group_send is at-most-once (full channels drop messages), so every message carries the
slot's Redis ``ver``: pages ignore anything not newer than what they hold and resync on reconnect, and
the broadcaster repeats each slot's final state once after it has settled in case that one was dropped,
and each hub re-reads its watched slots every couple of seconds (``fanout.MEMBERSHIP_REFRESH_SECONDS``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from queueing.models import Slot
from queueing.services import catalog
from queueing.services.catalog import SlotRef
from queueing.services.errors import ReservationError
from queueing.services.store import ms_to_datetime, slot_keys
from wartiket.outages import is_outage
from wartiket.redis_client import get_redis

log = logging.getLogger(__name__)

UPCOMING, OPEN, SOLD_OUT, CLOSED = "upcoming", "open", "sold_out", "closed"
STATES = (UPCOMING, OPEN, SOLD_OUT, CLOSED)
# The channel-layer group every WebSocket process's fan-out hub joins, and its one message type:
# {"type": MESSAGE_TYPE, "states": [state message, ...]}.
LIVE_GROUP = "live-quota"
MESSAGE_TYPE = "live.states"
# A slot whose ``ver`` has not moved for this long gets its state sent once more (see the module doc).
SETTLE_SECONDS = 1.0
# The catalog only changes when staff edit slots: re-reading it every few ticks is plenty.
CATALOG_REFRESH_SECONDS = 2.0


def slot_state(*, now_ms: int, opens_ms: int, closes_ms: int, remaining: int | None) -> str:
    """The one rule for what a buyer sees, by the server's clock: pages, consumer and broadcaster use it."""
    if now_ms < opens_ms:
        return UPCOMING
    if remaining is not None and remaining <= 0:
        # Sold out says more than closed: a closed war that still had seats reads "closed".
        return SOLD_OUT
    if now_ms >= closes_ms:
        return CLOSED
    return OPEN


@dataclass(frozen=True)
class LiveState:
    slot_id: int
    quota: int | None
    remaining: int | None  # None: Redis has no state for the slot yet (sync_quota has not run)
    version: int
    opens_ms: int
    closes_ms: int
    server_ms: int
    # Draw mode: whether the draw's result is in Redis (the page then asks for its own result); None for
    # first-come slots.
    drawn: bool | None = None

    @property
    def state(self) -> str:
        return slot_state(
            now_ms=self.server_ms, opens_ms=self.opens_ms, closes_ms=self.closes_ms, remaining=self.remaining
        )

    def message(self) -> dict:
        """What the page receives, over the socket and from the polling endpoint alike."""
        return {
            "type": "state",
            "slot": self.slot_id,
            "remaining": self.remaining,
            "quota": self.quota,
            "state": self.state,
            "version": self.version,
            "server_time": ms_to_datetime(self.server_ms).isoformat(),
            "server_ms": self.server_ms,
            "opens_at": ms_to_datetime(self.opens_ms).isoformat(),
            "opens_ms": self.opens_ms,
            "closes_at": ms_to_datetime(self.closes_ms).isoformat(),
            "closes_ms": self.closes_ms,
            "drawn": self.drawn,
        }


def read_states(refs: Iterable[SlotRef]) -> dict[int, LiveState]:
    """Live state of each slot plus the Redis clock, in one round trip."""
    refs = list(refs)
    pipe = get_redis().pipeline(transaction=False)
    pipe.time()
    for ref in refs:
        pipe.hmget(slot_keys(ref.id, ref.day).slot, "quota", "sold", "ver", "opens", "closes", "draw")
    (seconds, micros), *rows = pipe.execute()
    now_ms = seconds * 1000 + micros // 1000
    states = {}
    for ref, (quota, sold, ver, opens, closes, draw) in zip(refs, rows, strict=True):
        states[ref.id] = LiveState(
            slot_id=ref.id,
            quota=None if quota is None else int(quota),
            remaining=None if quota is None else int(quota) - int(sold or 0),
            version=int(ver or 0),
            # Redis' copy is what reserve.lua enforces; the catalog's only stands in before sync_quota ran.
            opens_ms=int(opens) if opens else ref.opens_ms,
            closes_ms=int(closes) if closes else ref.closes_ms,
            server_ms=now_ms,
            drawn=(draw == "done") if ref.is_draw else None,
        )
    return states


def ref_for_id(slot_id: int) -> SlotRef | None:
    """A slot by id from the Redis catalog; PostgreSQL only when the catalog lacks it (old slot, empty Redis)."""
    try:
        ref = catalog.by_id(slot_id)
    except ReservationError:
        ref = None
    if ref is not None:
        return ref
    slot = Slot.objects.select_related("location").filter(pk=slot_id).first()
    return catalog.ref_for(slot) if slot else None


def read_states_by_id(slot_ids: Iterable[int]) -> dict[int, LiveState]:
    """Live state of each known slot among ``slot_ids`` (unknown ones are left out), in one Redis read."""
    refs = [ref for ref in map(ref_for_id, slot_ids) if ref is not None]
    return read_states(refs) if refs else {}


def read_state(slot_id: int) -> LiveState | None:
    return read_states_by_id([slot_id]).get(slot_id)


def catalog_refs() -> list[SlotRef]:
    """Every slot the catalog can resolve (upcoming and recently closed wars)."""
    refs = []
    for name, raw in get_redis().hgetall(catalog.CATALOG_KEY).items():
        if name.startswith("id:"):
            refs.append(SlotRef(**json.loads(raw)))
    return sorted(refs, key=lambda ref: ref.id)


async def publish(layer, states: list[dict]) -> None:
    """Hand slot states to every WebSocket process's hub, in one channel-layer message."""
    await layer.group_send(LIVE_GROUP, {"type": MESSAGE_TYPE, "states": states})


@dataclass
class _Sent:
    version: int
    at: float
    repeated: bool = False


@dataclass
class Broadcaster:
    """Pushes the changed slots' states to the fan-out hubs, at most once per tick. Run one of them.

    Running two broadcasters is harmless (pages drop versions they already have), only wasteful.
    """

    layer: object = None
    settle_seconds: float = SETTLE_SECONDS
    refresh_seconds: float = CATALOG_REFRESH_SECONDS
    _sent: dict[int, _Sent] = field(default_factory=dict)
    _refs: list[SlotRef] = field(default_factory=list)
    _refs_read_at: float = float("-inf")

    def __post_init__(self):
        if self.layer is None:
            self.layer = get_channel_layer()

    def collect(self) -> list[dict]:
        """Read every slot once (one pipeline) and return the messages due; remembers them as sent."""
        now = time.monotonic()
        if now - self._refs_read_at >= self.refresh_seconds:
            self._refs = catalog_refs()
            self._refs_read_at = now
        if not self._refs:
            return []
        due = []
        for state in read_states(self._refs).values():
            sent = self._sent.get(state.slot_id)
            if sent is None or state.version != sent.version:
                # First sight included: a restarted broadcaster may have missed changes pages are waiting for.
                self._sent[state.slot_id] = _Sent(state.version, now)
                due.append(state.message())
            elif not sent.repeated and now - sent.at >= self.settle_seconds:
                sent.repeated = True
                due.append(state.message())
        return due

    async def tick(self) -> list[dict]:
        """One round: read, then send. Returns the messages sent (tests drive the broadcaster with this)."""
        messages = await sync_to_async(self.collect, thread_sensitive=False)()
        if messages:
            try:
                await publish(self.layer, messages)
            except BaseException:
                # Not sent after all: forget them, so the next tick that can publish sends them again
                # (otherwise a change read during an outage would count as sent and never reach a page).
                for message in messages:
                    self._sent.pop(message["slot"], None)
                raise
        return messages

    async def run(self, stop: asyncio.Event, *, interval: float, chores: Iterable[Chore] = ()) -> int:
        """Tick every ``interval`` seconds until ``stop`` is set. Returns the number of messages sent.

        Never gives up: Redis (the data and the channel layer) down, read-only (a replica after a failover,
        a full disk) or answering errors is an outage to wait out, logged once when it starts and once when
        it ends, with ticks retried after a growing pause (capped at ``BACKOFF_CAP_SECONDS``) instead of
        every tick. Pages poll meanwhile, and the first tick that can publish sends every change it missed.
        ``chores`` run between ticks on their own schedules (see ``Chore``).
        """
        total = 0
        outage = Outage("live_quota", "push live quota")
        chores = list(chores)
        while not stop.is_set():
            started = time.monotonic()
            try:
                total += len(await self.tick())
            except Exception as exc:  # any failure is an outage to wait out, see above
                outage.failed(exc)
            else:
                outage.recovered()
            for chore in chores:
                await chore.run_if_due()
            if outage.down:
                pause = outage.backoff(interval)
            else:
                # Fixed cadence rather than a fixed pause, so a slow tick does not stretch the coalescing window.
                pause = max(0.0, interval - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=pause)
            except TimeoutError:
                pass
        return total


# The longest pause between two attempts while Redis is failing: back within about this long after it is.
BACKOFF_CAP_SECONDS = 5.0


@dataclass
class Outage:
    """One log line when a run of failures starts and one when it ends, and the backoff in between."""

    name: str  # who is failing, e.g. "live_quota"
    action: str  # what fails, e.g. "push live quota"
    failures: int = 0
    since: float = 0.0

    @property
    def down(self) -> bool:
        return self.failures > 0

    def failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.failures > 1:
            return
        self.since = time.monotonic()
        if is_outage(exc) or isinstance(exc, OSError):
            log.warning(
                "%s: cannot %s (%s: %s); retrying at growing intervals of up to %.0f s",
                self.name,
                self.action,
                type(exc).__name__,
                exc,
                BACKOFF_CAP_SECONDS,
            )
        else:
            # Not an outage we know: the traceback, once, is what a bug report needs.
            log.exception("%s: cannot %s (unexpected error); retrying at growing intervals", self.name, self.action)

    def recovered(self) -> None:
        if self.failures:
            log.warning(
                "%s: can %s again, after %d failed attempt(s) in %.1f s",
                self.name,
                self.action,
                self.failures,
                time.monotonic() - self.since,
            )
        self.failures = 0

    def backoff(self, base: float) -> float:
        """The pause before the next attempt: ``base``, doubled per failure in a row, at most the cap."""
        return min(base * 2 ** (self.failures - 1), BACKOFF_CAP_SECONDS)


@dataclass
class Chore:
    """Synchronous work the ``live_quota`` loop does every ``every`` seconds, in a worker thread.

    ``live_quota`` is the one process that runs next to the war for its whole length, so periodic checks
    of Redis belong in its loop. A failing chore is logged once per run of failures and never stops the
    broadcasts.
    """

    every: float
    call: Callable[[], object]
    _due: float = 0.0
    _outage: Outage | None = None

    async def run_if_due(self) -> None:
        now = time.monotonic()
        if now < self._due:
            return
        self._due = now + self.every
        if self._outage is None:
            self._outage = Outage("live_quota", f"run {getattr(self.call, '__qualname__', self.call)}")
        try:
            await sync_to_async(self.call, thread_sensitive=False)()
        except Exception as exc:  # logged; the broadcasts go on
            self._outage.failed(exc)
        else:
            self._outage.recovered()
