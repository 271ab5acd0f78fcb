"""The Redis side of the engine: one hash tag per war day, and no reservation state written on refusal."""

from __future__ import annotations

import datetime

import pytest
from redis.crc import key_slot

from queueing.services import clock
from queueing.services.store import reserve_keys, slot_keys
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db


def test_every_key_the_reservation_script_touches_hashes_to_one_cluster_slot():
    all_keys = reserve_keys(42, "2026-11-26", 7, "203.0.113.9")  # the very list reserve() passes
    assert len({key_slot(k.encode()) for k in all_keys}) == 1
    # Another day is another tag, so wars of different days spread over a cluster.
    assert key_slot(slot_keys(42, "2026-11-27").slot.encode()) != key_slot(all_keys[0].encode())


def snapshot(slot) -> dict:
    """Everything that records reservations (not the bookkeeping counters for rate limits and stats)."""
    r = get_redis()
    keys = slot_keys(slot.pk, slot.war_day)
    meta = r.hgetall(keys.slot)
    return {
        "meta": meta,
        "free": r.zrange(keys.free, 0, -1),
        "holders": r.hgetall(keys.holders),
        "day": r.hgetall(keys.day),
        "journal": r.xlen(keys.journal),
    }


def test_refusals_write_no_reservation_state(settings):
    day = (clock.redis_now() + datetime.timedelta(days=4)).date()
    open_slot = make_slot(quota_size=1, date=day)
    early = make_slot(opens_in=600, date=day, label="13:00")
    closed = make_slot(opens_in=-600, closes_in=-1, date=day, label="08:00")
    holder, other = token_client(make_user()), token_client(make_user())
    assert holder.post("/api/war", war_body(open_slot), format="json").status_code == 201

    cases = [
        (other, open_slot, "sold_out"),
        (holder, open_slot, "already_reserved"),
        (other, early, "too_early"),
        (other, closed, "closed"),
        (holder, closed, "closed"),
    ]
    for client, slot, code in cases:
        before = [snapshot(s) for s in (open_slot, early, closed)]
        response = client.post("/api/war", war_body(slot, date=day.isoformat()), format="json")
        assert response.json()["code"] == code
        assert [snapshot(s) for s in (open_slot, early, closed)] == before, code

    settings.WAR_RATE_LIMIT_USER = 1
    before = snapshot(open_slot)
    assert other.post("/api/war", war_body(open_slot), format="json").json()["code"] == "rate_limited"
    assert snapshot(open_slot) == before


def test_the_script_counts_every_outcome_for_the_war_room():
    slot = make_slot(quota_size=1)
    clients = [token_client(make_user()) for _ in range(3)]
    for client in clients:
        client.post("/api/war", war_body(slot), format="json")
    clients[0].post("/api/war", war_body(slot), format="json")
    stats = get_redis().hgetall(slot_keys(slot.pk, slot.war_day).stats)
    assert stats == {"reserved": "1", "sold_out": "2", "already_reserved": "1"}
