from __future__ import annotations

import datetime

import pytest
from rest_framework.test import APIClient

from tests.factory import make_slot, make_user, token_client, war_body
from tests.live import web_server
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db


def test_time_is_the_redis_clock():
    def redis_ms():
        seconds, micros = get_redis().time()
        return seconds * 1000 + micros // 1000

    # Bracketed by Redis' own clock: no tolerance, no dependence on how long the request takes.
    before = redis_ms()
    body = APIClient().get("/api/time").json()
    assert before <= body["epoch_ms"] <= redis_ms()
    assert datetime.datetime.fromisoformat(body["server_time"]).utcoffset() == datetime.timedelta(hours=7)


def test_slots_list_shows_live_remaining_and_open_times():
    slot = make_slot(quota_size=4)
    token_client(make_user()).post("/api/war", war_body(slot), format="json")
    listed = APIClient().get("/api/slots").json()
    assert [(s["id"], s["quota"], s["remaining"], s["location"], s["time_slot"]) for s in listed] == [
        (slot.pk, 4, 3, "graha-dipta", "10:00")
    ]
    assert datetime.datetime.fromisoformat(listed[0]["war_opens_at"]) == slot.war_opens_at
    detail = APIClient().get(f"/api/slots/{slot.pk}")
    assert detail.json()["remaining"] == 3
    assert APIClient().get("/api/slots/999999").status_code == 404


def test_my_tickets_lists_only_mine():
    slot = make_slot()
    mine, theirs = token_client(make_user()), token_client(make_user())
    code = mine.post("/api/war", war_body(slot), format="json").json()["ticket"]["code"]
    theirs.post("/api/war", war_body(slot), format="json")
    assert [t["code"] for t in mine.get("/api/tickets").json()] == [code]
    assert mine.get("/api/tickets").json()[0]["status"] == "active"
    assert APIClient().get("/api/tickets").status_code == 401


def test_the_openapi_schema_describes_the_war_endpoint():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/war" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_postgres_down_answers_503_with_retry_after_not_500():
    import json
    import urllib.error
    import urllib.request

    with web_server(workers=1, DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere") as base:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{base}/api/slots", timeout=10)  # noqa: S310 (loopback only)
    assert error.value.code == 503
    assert error.value.headers["Retry-After"]
    assert json.loads(error.value.read())["code"] == "unavailable"
