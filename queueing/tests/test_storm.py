"""The opening storm over real HTTP: exact quota, numbers 1..quota, nobody twice, nothing lost.

2,000 attempts from 1,000 buyers, sent by 4 OS processes at the opening second to a multi-process
gunicorn server, against real PostgreSQL and Redis. The negative control runs the same harness against
a deliberately unsafe reservation path and must see the overselling.
"""

from __future__ import annotations

import datetime
import random
import time
from collections import Counter

import pytest

from accounts.models import ApiToken, User
from accounts.validators import make_nik
from queueing.services import audit, clock
from tests.factory import make_slot
from tests.live import gunicorn_server
from tests.storm import storm

pytestmark = pytest.mark.django_db(transaction=True)

QUOTA = 100
BUYERS = 1000
ATTEMPTS_PER_BUYER = 2


def make_buyers(count: int) -> list[str]:
    users = User.objects.bulk_create(
        User(
            email=f"storm{i}@example.com",
            full_name=f"Storm {i}",
            password="!",
            nik=make_nik(i + 1, birth=datetime.date(1985, 3, 1 + i // 1000)),
        )
        for i in range(count)
    )
    built = [ApiToken.build(user) for user in users]
    ApiToken.objects.bulk_create(token for token, _raw in built)
    return [raw for _token, raw in built]


def run_storm(**server_env) -> tuple[object, list, list[str]]:
    slot = make_slot(quota_size=QUOTA, opens_in=4)
    tokens = make_buyers(BUYERS)
    attempts = [(i, token) for i, token in enumerate(tokens) for _ in range(ATTEMPTS_PER_BUYER)]
    random.Random(7).shuffle(attempts)
    body = {"location_id": slot.location.slug, "time_slot": slot.time_label, "date": slot.date.isoformat()}
    with gunicorn_server(workers=3, threads=8, WAR_RATE_LIMIT_IP="0", **server_env) as base:
        opens_in = (slot.war_opens_at - clock.redis_now()).total_seconds()
        results = storm(base, attempts, body, start_at=time.time() + max(opens_in, 0.0))
    acknowledged = [
        audit.Acknowledged(r[2]["ticket"]["code"], r[2]["ticket"]["queue_number"]) for r in results if r[1] == 201
    ]
    return slot, results, audit.exactness_violations(slot, acknowledged, expect_sold_out=True)


def test_a_storm_of_2000_attempts_sells_exactly_the_quota():
    _slot, results, violations = run_storm()
    assert len(results) == BUYERS * ATTEMPTS_PER_BUYER
    assert violations == []
    statuses = Counter((status, body["code"]) for _i, status, body in results)
    assert statuses[(201, "reserved")] == QUOTA
    assert set(statuses) <= {(201, "reserved"), (200, "already_reserved"), (409, "sold_out"), (403, "too_early")}
    # Every buyer who heard "reserved" and asked again got the very same ticket back.
    first = {i: body["ticket"] for i, status, body in results if status == 201}
    for i, status, body in results:
        if status == 200:
            assert body["ticket"] == first.get(i, body["ticket"])


def test_the_storm_harness_catches_an_unsafe_reservation_path():
    """Negative control: a check-then-act path (enabled only under a test setting) must be caught."""
    _slot, results, violations = run_storm(WAR_UNSAFE_TEST_PATH="1")
    statuses = Counter((status, body["code"]) for _i, status, body in results)
    assert any(v.startswith("oversold") for v in violations), (violations, statuses)
    assert statuses[(201, "reserved")] > QUOTA, statuses
