"""Live quota over Channels: the consumer, the coalescing broadcaster, and the `live_quota` command.

The channel layer is the real Redis one and the consumer runs behind the real ASGI stack (origin check;
viewers need no session, so none is loaded). The broadcaster is driven tick by tick where a test needs
determinism, and run as its real loop where a test needs a burst racing it.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import signal
import subprocess
import sys
import time

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import connections

from accounts.models import User
from accounts.services.identity import Principal
from accounts.validators import make_nik
from queueing.services import fanout, live, quota, reservations, slots
from queueing.services.errors import ReservationError
from queueing.services.store import slot_keys
from tests.factory import make_slot
from tests.live import ROOT, server_env
from tests.live import run_async as run
from wartiket.asgi import application
from wartiket.redis_client import get_redis, reset_redis

# Consumers and reservations run in worker threads: they must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://127.0.0.1:8000")


def buyers(n: int) -> list[Principal]:
    users = User.objects.bulk_create(
        User(email=f"live{i}@example.com", full_name=f"Live {i}", nik=make_nik(i + 1, birth=datetime.date(1991, 2, 3)))
        for i in range(n)
    )
    return [Principal(id=u.pk, has_nik=True) for u in users]


def reserve_all(slot, principals) -> int:
    """Each principal tries once; returns how many were refused as sold out."""
    sold_out = 0
    for principal in principals:
        try:
            reservations.reserve(principal, slot.location.slug, slot.time_label, slot.date, client_ip="10.1.1.1")
        except ReservationError as exc:
            assert exc.code == "sold_out"
            sold_out += 1
    return sold_out


def redis_version(slot) -> int:
    return int(get_redis().hget(slot_keys(slot.pk, slot.war_day).slot, "ver"))


async def connect(slot_id: int, *, origin=ORIGIN) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/slots/{slot_id}/", headers=[origin])
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def drain(communicator: WebsocketCommunicator, *, quiet: float = 0.3) -> list[dict]:
    """Everything the socket received until it stays quiet for ``quiet`` seconds."""
    messages = []
    # receive_nothing, not a receive timeout: a timed-out receive cancels the consumer.
    while not await communicator.receive_nothing(timeout=quiet):
        messages.append(await communicator.receive_json_from())
    return messages


def in_own_thread(fn):
    """sync_to_async in a throwaway thread that closes its database connection when done."""

    def call(*args):
        try:
            return fn(*args)
        finally:
            connections.close_all()

    return sync_to_async(call, thread_sensitive=False)


def test_the_state_rule_uses_the_server_clock_times_and_remaining():
    opens, closes = 10_000, 20_000
    assert live.slot_state(now_ms=9_999, opens_ms=opens, closes_ms=closes, remaining=5) == "upcoming"
    assert live.slot_state(now_ms=10_000, opens_ms=opens, closes_ms=closes, remaining=5) == "open"
    assert live.slot_state(now_ms=15_000, opens_ms=opens, closes_ms=closes, remaining=0) == "sold_out"
    assert live.slot_state(now_ms=20_000, opens_ms=opens, closes_ms=closes, remaining=3) == "closed"
    assert live.slot_state(now_ms=20_000, opens_ms=opens, closes_ms=closes, remaining=0) == "sold_out"
    assert live.slot_state(now_ms=15_000, opens_ms=opens, closes_ms=closes, remaining=None) == "open"


def test_a_viewer_gets_the_current_state_on_connect():
    slot = make_slot(quota_size=5)
    reserve_all(slot, buyers(2))

    async def scenario():
        communicator = await connect(slot.pk)
        first = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first

    first = run(scenario)
    seconds, _ = get_redis().time()
    assert (first["type"], first["slot"], first["remaining"], first["quota"], first["state"]) == (
        "state",
        slot.pk,
        3,
        5,
        "open",
    )
    assert first["version"] == redis_version(slot)
    assert abs(first["server_ms"] / 1000 - seconds) < 5
    assert first["opens_ms"] == int(slot.war_opens_at.timestamp() * 1000)
    assert datetime.datetime.fromisoformat(first["server_time"]).utcoffset() == datetime.timedelta(hours=7)


def test_an_upcoming_war_is_announced_as_upcoming_with_its_opening_time():
    slot = make_slot(quota_size=3, opens_in=600)

    async def scenario():
        communicator = await connect(slot.pk)
        first = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return first

    first = run(scenario)
    assert first["state"] == "upcoming"
    assert 590_000 < first["opens_ms"] - first["server_ms"] <= 600_000


def test_updates_carry_growing_versions_and_nothing_is_sent_without_a_change():
    slot = make_slot(quota_size=5)
    principals = buyers(2)

    async def scenario():
        broadcaster = live.Broadcaster(settle_seconds=3600)
        await broadcaster.tick()  # first sight of every slot: its state once
        communicator = await connect(slot.pk)
        first = await communicator.receive_json_from(timeout=5)
        await sync_to_async(reserve_all)(slot, principals[:1])
        sent_a = await broadcaster.tick()
        a = await communicator.receive_json_from(timeout=5)
        await sync_to_async(reserve_all)(slot, principals[1:])
        sent_b = await broadcaster.tick()
        b = await communicator.receive_json_from(timeout=5)
        idle = await broadcaster.tick()
        rest = await drain(communicator)
        await communicator.disconnect()
        return first, a, b, sent_a, sent_b, idle, rest

    first, a, b, sent_a, sent_b, idle, rest = run(scenario)
    assert [first["remaining"], a["remaining"], b["remaining"]] == [5, 4, 3]
    assert first["version"] < a["version"] < b["version"] == redis_version(slot)
    assert [m["slot"] for m in sent_a] == [slot.pk] and [m["slot"] for m in sent_b] == [slot.pk]
    assert idle == [] and rest == []


def test_a_burst_in_one_tick_becomes_one_message_with_the_exact_remaining():
    slot = make_slot(quota_size=50)
    principals = buyers(30)

    async def scenario():
        broadcaster = live.Broadcaster(settle_seconds=3600)
        await broadcaster.tick()
        communicator = await connect(slot.pk)
        await communicator.receive_json_from(timeout=5)
        await sync_to_async(reserve_all)(slot, principals)
        sent = await broadcaster.tick()
        received = await drain(communicator)
        await communicator.disconnect()
        return sent, received

    sent, received = run(scenario)
    assert len(sent) == 1
    assert [m["remaining"] for m in received] == [20]


def test_a_burst_racing_the_running_broadcaster_is_coalesced_and_ends_on_the_exact_remaining():
    n = 200
    slot = make_slot(quota_size=150)
    principals = buyers(n)

    class CountingBroadcaster(live.Broadcaster):
        ticks = 0

        async def tick(self):
            CountingBroadcaster.ticks += 1
            return await super().tick()

    async def scenario():
        broadcaster = CountingBroadcaster(settle_seconds=3600)
        communicator = await connect(slot.pk)
        initial = await communicator.receive_json_from(timeout=5)
        stop = asyncio.Event()
        loop_task = asyncio.create_task(broadcaster.run(stop, interval=0.25))
        ticks_before = CountingBroadcaster.ticks
        refused = await in_own_thread(reserve_all)(slot, principals)
        assert refused == n - 150
        updates = []
        deadline = time.monotonic() + 15
        while not updates or updates[-1]["remaining"] != 0:
            assert time.monotonic() < deadline, f"no final state; got {[m['remaining'] for m in updates]}"
            updates.append(await communicator.receive_json_from(timeout=5))
        updates += await drain(communicator, quiet=0.6)
        stop.set()
        await loop_task
        await communicator.disconnect()
        return initial, updates, CountingBroadcaster.ticks - ticks_before

    initial, updates, ticks = run(scenario)
    assert initial["remaining"] == 150
    remaining = [m["remaining"] for m in updates]
    # 150 seats sold, 50 refused: 150 changes, yet at most one message per broadcaster tick.
    assert len(updates) <= ticks + 1
    assert len(updates) < n // 4, remaining
    assert remaining[-1] == 0
    assert remaining == sorted(remaining, reverse=True)
    versions = [initial["version"]] + [m["version"] for m in updates]
    assert versions == sorted(set(versions)), "versions must only grow"
    assert updates[-1]["state"] == "sold_out"
    assert versions[-1] == redis_version(slot)


def test_cancellations_and_staff_quota_changes_are_pushed_too():
    slot = make_slot(quota_size=3)
    [principal] = buyers(1)

    async def scenario():
        broadcaster = live.Broadcaster(settle_seconds=3600)
        await broadcaster.tick()
        communicator = await connect(slot.pk)
        await communicator.receive_json_from(timeout=5)
        reservation = await sync_to_async(reservations.reserve)(
            principal, slot.location.slug, slot.time_label, slot.date, client_ip="10.1.1.2"
        )
        await broadcaster.tick()
        reserved = await communicator.receive_json_from(timeout=5)
        await sync_to_async(reservations.cancel)(principal.id, reservation.code)
        await broadcaster.tick()
        cancelled = await communicator.receive_json_from(timeout=5)

        def staff_raises_quota():
            slot.quota = 7
            slots.save(slot)  # the admin path: fenced, committed, then applied to Redis

        await sync_to_async(staff_raises_quota)()
        await broadcaster.tick()
        raised = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return reserved, cancelled, raised

    reserved, cancelled, raised = run(scenario)
    assert (reserved["remaining"], cancelled["remaining"], raised["remaining"]) == (2, 3, 7)
    assert raised["quota"] == 7
    assert reserved["version"] < cancelled["version"] < raised["version"]


def test_the_settled_state_is_repeated_once_in_case_the_last_message_was_dropped():
    slot = make_slot(quota_size=3)
    broadcaster = live.Broadcaster(layer=get_channel_layer(), settle_seconds=0)
    first = broadcaster.collect()
    repeat = broadcaster.collect()
    after = broadcaster.collect()
    assert [m["slot"] for m in first] == [slot.pk]
    assert repeat == [first[0] | {"server_ms": repeat[0]["server_ms"], "server_time": repeat[0]["server_time"]}]
    assert after == []


def test_one_broadcast_reaches_every_viewer_through_one_group_member_per_process():
    # The channel layer carries one message per process however many viewers watch: a consumer-per-
    # member layout would add a group member (and a Redis push per broadcast) for every viewer.
    watched, other = make_slot(quota_size=5), make_slot(quota_size=5, label="13:00")
    principals = buyers(1)
    layer = get_channel_layer()
    group_key = layer._group_key(live.LIVE_GROUP)

    async def scenario():
        members_before = get_redis().zcard(group_key)
        viewers = [await connect(watched.pk) for _ in range(30)]
        bystanders = [await connect(other.pk) for _ in range(5)]
        for communicator in viewers + bystanders:
            await communicator.receive_json_from(timeout=5)
        members = get_redis().zcard(group_key) - members_before
        broadcaster = live.Broadcaster(settle_seconds=3600)
        await broadcaster.tick()  # first sight of every slot: states the viewers already hold
        await in_own_thread(reserve_all)(watched, principals)
        sent = await broadcaster.tick()
        received = [await drain(communicator) for communicator in viewers]
        unrelated = [await drain(communicator, quiet=0.05) for communicator in bystanders]
        for communicator in viewers + bystanders:
            await communicator.disconnect()
        return members, sent, received, unrelated

    members, sent, received, unrelated = run(scenario)
    assert members == 1
    assert [m["slot"] for m in sent] == [watched.pk]
    assert [[m["remaining"] for m in got] for got in received] == [[4]] * 30
    assert unrelated == [[]] * 5


def test_a_process_whose_group_membership_was_lost_rejoins_and_gets_updates_again():
    # A restarted Redis (no persistence) or an expired membership forgets who is in the group.
    slot = make_slot(quota_size=3)
    principals = buyers(1)
    layer = get_channel_layer()

    async def scenario():
        communicator = await connect(slot.pk)
        await communicator.receive_json_from(timeout=5)
        broadcaster = live.Broadcaster(settle_seconds=3600)
        await broadcaster.tick()
        get_redis().delete(layer._group_key(live.LIVE_GROUP))
        await asyncio.sleep(fanout.MEMBERSHIP_REFRESH_SECONDS + 0.5)
        await in_own_thread(reserve_all)(slot, principals)
        await broadcaster.tick()
        received = await drain(communicator, quiet=1.0)
        await communicator.disconnect()
        return received

    assert [m["remaining"] for m in run(scenario)] == [2]


def test_a_change_whose_broadcast_was_lost_still_reaches_the_viewer():
    # Group messages can vanish with no error anywhere (a flushed or evicted membership key, a full
    # channel). Here the broadcast is lost outright: no broadcaster runs. The hub's periodic re-read
    # must still bring the viewer the truth.
    slot = make_slot(quota_size=3)
    principals = buyers(1)

    async def scenario():
        communicator = await connect(slot.pk)
        first = await communicator.receive_json_from(timeout=5)
        await in_own_thread(reserve_all)(slot, principals)
        received = await drain(communicator, quiet=fanout.MEMBERSHIP_REFRESH_SECONDS + 1.0)
        await communicator.disconnect()
        return first, received

    first, received = run(scenario)
    assert first["remaining"] == 3
    assert [m["remaining"] for m in received] == [2]


def test_closing_the_hub_ends_a_receive_that_lost_a_cancellation():
    # channels_redis' receive can lose a cancellation that lands as its blocking pop times out, and pop
    # again. A hub that cancelled once would then never end, and asyncio.run waits for it forever (seen
    # in CI). This layer loses the first cancellation on purpose.
    class LosesOneCancellation:
        lost = 0

        async def new_channel(self):
            return "specific.test!hub"

        async def group_add(self, group, channel):
            pass

        async def receive(self, channel):
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if self.lost:
                        raise
                    self.lost += 1

    class Viewer:
        async def push(self, version, text):
            pass

    async def scenario():
        hub = fanout.Hub(LosesOneCancellation(), frames_per_second=100)
        await hub.add(1, Viewer())
        tasks = list(hub.tasks)
        await asyncio.wait_for(hub.close(), timeout=10)
        return hub.layer.lost, [task.done() for task in tasks]

    lost, done = asyncio.run(scenario())
    assert lost == 1, "the layer did not lose a cancellation: the test proves nothing"
    assert done == [True, True]


def test_many_viewers_get_a_falling_count_paced_but_a_new_state_at_once(settings):
    # 3 viewers at 1 frame/s: the slot's count may go out every 3 s. Sold out must not wait for that.
    settings.WAR_LIVE_FRAMES_PER_SECOND = 1
    slot = make_slot(quota_size=5)
    layer = get_channel_layer()

    async def drain_all(viewers, quiet: float) -> list[list[int]]:
        got = await asyncio.gather(*(drain(v, quiet=quiet) for v in viewers))
        return [[m["remaining"] for m in messages] for messages in got]

    async def scenario():
        viewers = [await connect(slot.pk) for _ in range(3)]
        first = [await v.receive_json_from(timeout=5) for v in viewers][-1]

        def state(step: int, remaining: int, name: str = "open") -> dict:
            return first | {"version": first["version"] + step, "remaining": remaining, "state": name}

        await live.publish(layer, [state(1, 4)])  # the slot's first fan-out: at once
        got = await drain_all(viewers, 0.5)
        await live.publish(layer, [state(2, 3)])
        await live.publish(layer, [state(3, 2)])  # replaces 3 while the viewers wait for the pace
        held = await drain_all(viewers, 0.5)
        # Due 3 s after the first fan-out; then nothing more.
        paced = [[m["remaining"]] for m in await asyncio.gather(*(v.receive_json_from(timeout=10) for v in viewers))]
        extra = await drain_all(viewers, 0.5)
        await live.publish(layer, [state(4, 1)])  # held back by the pace ...
        await live.publish(layer, [state(5, 0, "sold_out")])  # ... and overtaken by the new state
        final = await drain_all(viewers, 0.5)
        for v in viewers:
            await v.disconnect()
        return got, held, paced, extra, final

    got, held, paced, extra, final = run(scenario)
    assert got == [[4]] * 3
    assert held == [[]] * 3, "the count went out faster than the frame budget allows"
    assert paced == [[2]] * 3 and extra == [[]] * 3, "the held-back count follows once the pace allows, newest only"
    assert final == [[0]] * 3, "sold out must go out at once, without the count it replaced"


def test_a_stale_broadcast_is_not_forwarded():
    slot = make_slot(quota_size=3)

    async def scenario():
        communicator = await connect(slot.pk)
        first = await communicator.receive_json_from(timeout=5)
        stale = first | {"remaining": 99, "version": first["version"] - 1}
        same = first | {"remaining": 98}
        layer = get_channel_layer()
        for message in (stale, same):
            await live.publish(layer, [message])
        newer = first | {"remaining": 1, "version": first["version"] + 1}
        await live.publish(layer, [newer])
        received = await drain(communicator)
        await communicator.disconnect()
        return received

    assert [m["remaining"] for m in run(scenario)] == [1]


def test_a_foreign_origin_is_refused():
    slot = make_slot()

    async def scenario():
        communicator = WebsocketCommunicator(
            application, f"/ws/slots/{slot.pk}/", headers=[(b"origin", b"https://evil.example")]
        )
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert run(scenario) is False


def test_an_unknown_slot_is_closed_with_4404():
    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/slots/987654/", headers=[ORIGIN])
        await communicator.connect()
        output = await communicator.receive_output(timeout=5)
        await communicator.disconnect()
        return output

    assert run(scenario) == {"type": "websocket.close", "code": 4404}


def test_a_slot_missing_from_the_catalog_is_read_from_postgresql():
    slot = make_slot(quota_size=4)
    get_redis().delete("war:catalog")
    state = live.read_state(slot.pk)
    assert (state.slot_id, state.remaining, state.version) == (slot.pk, 4, redis_version(slot))


def test_a_slot_whose_redis_state_is_gone_reports_unknown_remaining():
    slot = make_slot(quota_size=4)
    get_redis().delete(slot_keys(slot.pk, slot.war_day).slot)
    state = live.read_state(slot.pk)
    assert state.remaining is None and state.quota is None
    assert state.message()["state"] == "open"
    quota.sync_all([slot])
    assert live.read_state(slot.pk).remaining == 4


def test_the_live_quota_command_pushes_once_and_stops_cleanly_on_sigterm():
    slot = make_slot(quota_size=2)
    once = subprocess.run(
        [sys.executable, "manage.py", "live_quota", "--once"],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"slot {slot.pk}: remaining 2 (open)" in once.stdout
    assert "1 message(s) sent" in once.stdout

    proc = subprocess.Popen(
        [sys.executable, "manage.py", "live_quota", "--interval-ms", "100"],
        cwd=ROOT,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "pushing changed slots" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert re.search(r"live_quota stopped: \d+ message\(s\) sent", out), out


def test_an_idle_viewer_stays_connected_past_the_channel_layers_blocking_read():
    # channels_redis waits for messages in 5 s blocking pops; a client read timeout at or below that
    # used to kill every idle consumer (redis-py 8's default). Idle for longer, then expect the update.
    slot = make_slot(quota_size=3)
    [principal] = buyers(1)

    async def scenario():
        broadcaster = live.Broadcaster(settle_seconds=3600)
        await broadcaster.tick()
        communicator = await connect(slot.pk)
        await communicator.receive_json_from(timeout=5)
        assert await communicator.receive_nothing(timeout=6.5)
        await sync_to_async(reserve_all)(slot, [principal])
        await broadcaster.tick()
        update = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return update

    assert run(scenario)["remaining"] == 2


def test_the_broadcaster_keeps_running_while_redis_is_unreachable(settings):
    make_slot()
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: refused at once
    reset_redis()

    class StopAfterThree(live.Broadcaster):
        attempts = 0

        async def tick(self):
            StopAfterThree.attempts += 1
            if StopAfterThree.attempts == 3:
                self.stop.set()
            return await super().tick()

    async def scenario():
        broadcaster = StopAfterThree()
        broadcaster.stop = asyncio.Event()
        return await broadcaster.run(broadcaster.stop, interval=0.05)

    assert run(scenario) == 0
    assert StopAfterThree.attempts == 3


def test_sold_out_cuts_short_the_fan_out_of_an_older_count_still_going_out():
    """Thousands of viewers take a while to write to; a sold-out arriving meanwhile must not wait for the
    older count to reach the last of them: the viewers not reached yet get sold out first."""

    class QuietLayer:
        async def new_channel(self):
            return "specific.test!hub"

        async def group_add(self, group, channel):
            pass

        async def receive(self, channel):
            await asyncio.sleep(3600)

    count = 4 * fanout.YIELD_EVERY
    counted = {"slot": 1, "version": 2, "state": "open", "remaining": 5}
    sold_out = {"slot": 1, "version": 3, "state": "sold_out", "remaining": 0}

    async def scenario():
        hub = fanout.Hub(QuietLayer(), frames_per_second=10**9)
        got: list[list[int]] = [[] for _ in range(count)]
        offered: list[bool] = []

        class Viewer:
            def __init__(self, n):
                self.n = n

            async def push(self, version, text):
                got[self.n].append(version)
                if version == 2 and not offered:
                    offered.append(True)
                    hub.offer([sold_out])  # arrives as the count starts going out

        viewers = [Viewer(n) for n in range(count)]
        for viewer in viewers:
            await hub.add(1, viewer)
        hub.offer([counted])
        for _ in range(200):
            await asyncio.sleep(0.01)
            if all(g and g[-1] == 3 for g in got):
                break
        await hub.close()
        return got

    got = run(scenario)
    assert all(g[-1] == 3 for g in got), "every viewer ends on sold out"
    reached = sum(1 for g in got if g == [2, 3])
    assert 0 < reached < count, f"the count reached {reached} of {count}: it was not cut short"
    assert sum(1 for g in got if g == [3]) == count - reached
