"""The production recipe (wartiket/serve.py, docs/deploy.md) loses Redis mid-war and heals by itself.

the web server (granian, preloaded), live_quota, a Celery worker and beat run as in production against a
private Redis server; 1,000 buyers storm a 200-seat war and keep retrying on 503 as the page does. When
60 tickets are sold, Redis is restarted empty (a real restart: a new server run_id, nothing on disk).
No operator step follows. The war must resume within 10 s and end exact, with PostgreSQL proving one
ticket per person per day.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest
from django.db import connection

from queueing.models import Ticket
from queueing.services import audit, catalog, clock, heal
from queueing.tests.test_storm import make_buyers, one_ticket_per_person_and_day
from tests.factory import make_slot
from tests.live import free_port, logged_process, poll, wait_for
from tests.private_redis import PrivateRedis
from tests.storm import storm
from wartiket import serve
from wartiket.redis_client import reset_redis

pytestmark = pytest.mark.django_db(transaction=True)

QUOTA = 200
BUYERS = 1000


def test_the_production_recipe_heals_a_redis_restarted_empty_mid_war_and_ends_exact(settings, tmp_path):
    with PrivateRedis(tmp_path / "redis", appendonly=False) as redis_server:
        settings.REDIS_URL = redis_server.url()
        reset_redis()
        catalog._local.clear()
        heal.mark_built()
        slot = make_slot(quota_size=QUOTA, opens_in=12)
        tokens = make_buyers(BUYERS)
        attempts = [(i, token) for i, token in enumerate(tokens) for _ in range(2)]
        random.Random(11).shuffle(attempts)
        body = {"location_id": slot.location.slug, "time_slot": slot.time_label, "date": slot.date.isoformat()}

        port = free_port()
        url = redis_server.url()
        env = {"TEST_REDIS_URL": url, "CELERY_BROKER_URL": url, "WAR_RATE_LIMIT_IP": "0"}
        recipe = dict(serve.recipe(serve.Config(port=port, schedule=str(tmp_path / "beat"), workers=2)))
        web = serve.runnable(recipe["web"])
        with (
            logged_process(web, tmp_path / "web.log", **env) as web_proc,
            logged_process(serve.runnable(recipe["live"]), tmp_path / "live.log", **env),
            logged_process(serve.runnable(recipe["worker"]), tmp_path / "worker.log", **env),
            logged_process(serve.runnable(recipe["beat"]), tmp_path / "beat.log", **env),
        ):
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/api/time", proc=web_proc, timeout=60)
            restarted = []

            def restart_redis_when_sold(count: int):
                try:
                    poll(lambda: Ticket.objects.filter(slot=slot).count() >= count, timeout=60, message="sales")
                    redis_server.restart_from(None)  # empty: no dump on disk
                    restarted.append(time.time())
                finally:
                    connection.close()

            opens_in = (slot.war_opens_at - clock.redis_now()).total_seconds()
            results = storm(
                base,
                attempts,
                body,
                start_at=time.time() + max(opens_in, 0.0),
                persist=45,
                during=lambda: restart_redis_when_sold(60),
            )

        reset_redis()
        assert restarted, "Redis must have been restarted mid-war"
        unavailable = [s for s in results if s.status == 503]
        assert unavailable and {s.code for s in unavailable} <= {"not_ready", "unavailable"}, unavailable[:3]
        assert max(s.sent_at + s.latency for s in unavailable) - restarted[0] < 10, "the war did not resume in 10 s"
        final = Counter((s.status, s.code) for s in results if s.status != 503)
        assert not any(status >= 500 or status == 0 for status, _code in final), final
        acknowledged = [audit.Acknowledged(s.ticket, s.queue_number) for s in results if s.status == 201]
        assert audit.exactness_violations(slot, acknowledged, expect_sold_out=True) == []
        assert final[(201, "reserved")] == Ticket.objects.filter(slot=slot).count() == QUOTA, final
        assert one_ticket_per_person_and_day(slot)
        assert heal.is_trusted()
