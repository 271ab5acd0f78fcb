"""POST /api/war through Django's test client against real PostgreSQL and Redis."""

from __future__ import annotations

import datetime
import time

import pytest
from django.http import HttpRequest
from django.utils import timezone
from rest_framework.test import APIClient

from queueing.models import Ticket
from queueing.services import clock, quota
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db


def redis_sold(slot) -> int:
    return int(get_redis().hget(slot_keys(slot.pk, slot.war_day).slot, "sold"))


def test_it_reserves_a_queue_number_and_commits_the_ticket():
    slot = make_slot(quota_size=5)
    buyer = make_user()
    response = token_client(buyer).post("/api/war", war_body(slot), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["code"] == "reserved"
    assert body["remaining"] == 4
    ticket = Ticket.objects.get(code=body["ticket"]["code"])
    assert (ticket.user, ticket.slot, ticket.queue_number, ticket.status) == (buyer, slot, 1, "active")
    assert body["ticket"] | {"reserved_at": None} == {
        "code": ticket.code,
        "queue_number": 1,
        "location": "graha-dipta",
        "location_name": slot.location.name,
        "date": slot.date.isoformat(),
        "time_slot": "10:00",
        "reserved_at": None,
    }
    assert datetime.datetime.fromisoformat(body["ticket"]["reserved_at"]) == ticket.reserved_at


def test_retrying_returns_the_same_ticket():
    slot = make_slot()
    client = token_client(make_user())
    first = client.post("/api/war", war_body(slot), format="json").json()
    again = client.post("/api/war", war_body(slot), format="json")
    assert again.status_code == 200
    assert again.json()["code"] == "already_reserved"
    assert again.json()["ticket"] == first["ticket"]
    assert Ticket.objects.count() == 1


def test_it_accepts_the_seeds_body_with_matching_user_id_and_refuses_another_user_id():
    slot = make_slot()
    buyer = make_user()
    client = token_client(buyer)
    other = client.post("/api/war", war_body(slot, user_id="test_user_01"), format="json")
    assert other.status_code == 403
    assert other.json()["code"] == "user_mismatch"
    assert Ticket.objects.count() == 0
    own = client.post("/api/war", war_body(slot, user_id=buyer.pk), format="json")
    assert own.status_code == 201


def test_it_refuses_when_sold_out_and_reissues_cancelled_numbers_lowest_first():
    slot = make_slot(quota_size=3)
    clients = [token_client(make_user()) for _ in range(5)]
    tickets = [clients[i].post("/api/war", war_body(slot), format="json").json()["ticket"] for i in range(3)]
    assert [t["queue_number"] for t in tickets] == [1, 2, 3]
    sold_out = clients[3].post("/api/war", war_body(slot), format="json")
    assert (sold_out.status_code, sold_out.json()["code"]) == (409, "sold_out")

    cancelled = clients[1].post(f"/api/tickets/{tickets[1]['code']}/cancel")
    assert cancelled.status_code == 200, cancelled.json()
    assert cancelled.json()["remaining"] == 1
    assert Ticket.objects.get(code=tickets[1]["code"]).status == "cancelled"

    reissued = clients[4].post("/api/war", war_body(slot), format="json")
    assert reissued.status_code == 201
    assert reissued.json()["ticket"]["queue_number"] == 2
    assert clients[3].post("/api/war", war_body(slot), format="json").json()["code"] == "sold_out"


def test_cancel_is_owner_only_and_happens_once():
    slot = make_slot()
    owner, stranger = token_client(make_user()), token_client(make_user())
    code = owner.post("/api/war", war_body(slot), format="json").json()["ticket"]["code"]
    assert stranger.post(f"/api/tickets/{code}/cancel").status_code == 404
    assert owner.post(f"/api/tickets/{code}/cancel").status_code == 200
    again = owner.post(f"/api/tickets/{code}/cancel")
    assert (again.status_code, again.json()["code"]) == (409, "not_cancellable")
    assert redis_sold(slot) == 0


def test_too_early_carries_open_time_server_time_and_retry_after():
    slot = make_slot(opens_in=30)
    response = token_client(make_user()).post("/api/war", war_body(slot), format="json")
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "too_early"
    assert datetime.datetime.fromisoformat(body["opens_at"]) == slot.war_opens_at.replace(
        microsecond=slot.war_opens_at.microsecond // 1000 * 1000
    )
    assert datetime.datetime.fromisoformat(body["server_time"]) < slot.war_opens_at
    assert 28 <= int(response["Retry-After"]) <= 31
    assert Ticket.objects.count() == 0


def test_the_time_gate_follows_redis_time_not_the_app_servers_clock(monkeypatch):
    # Seconds ahead, not fractions: on a loaded CI host the set-up alone can take a second.
    slot = make_slot(opens_in=4)
    client = token_client(make_user())
    # The app server's clock is a day ahead: if it took part, the war would look open.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400)
    monkeypatch.setattr(timezone, "now", lambda: datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1))
    early = client.post("/api/war", war_body(slot, date=slot.date.isoformat()), format="json")
    assert (early.status_code, early.json()["code"]) == (403, "too_early")
    monkeypatch.undo()

    deadline = real_time() + 15
    while clock.redis_now() < slot.war_opens_at:
        assert real_time() < deadline
        time.sleep(0.02)
    at_open = client.post("/api/war", war_body(slot), format="json")
    assert at_open.status_code == 201, at_open.json()


def test_closed_after_the_war_closes():
    slot = make_slot(opens_in=-60, closes_in=-1)
    response = token_client(make_user()).post("/api/war", war_body(slot, date=slot.date.isoformat()), format="json")
    assert (response.status_code, response.json()["code"]) == (403, "closed")


def test_one_ticket_per_person_per_war_day_across_locations(settings):
    day = (clock.redis_now() + datetime.timedelta(days=3)).date()
    first = make_slot(location="graha-dipta", date=day)
    second = make_slot(location="setiabudi-one", date=day)
    client = token_client(make_user())
    held = client.post("/api/war", war_body(first), format="json").json()["ticket"]
    refused = client.post("/api/war", war_body(second), format="json")
    assert refused.status_code == 409
    assert refused.json()["code"] == "one_per_day"
    assert refused.json()["ticket"] == {
        "code": held["code"],
        "slot_id": first.pk,
        "location": "graha-dipta",
        "date": day.isoformat(),
        "time_slot": "10:00",
    }
    # After cancelling, the day is free again.
    client.post(f"/api/tickets/{held['code']}/cancel")
    assert client.post("/api/war", war_body(second), format="json").status_code == 201


def test_one_per_day_can_be_switched_off(settings):
    settings.WAR_ONE_PER_DAY = False
    day = (clock.redis_now() + datetime.timedelta(days=3)).date()
    first, second = make_slot(location="graha-dipta", date=day), make_slot(location="bintaro", date=day)
    client = token_client(make_user())
    assert client.post("/api/war", war_body(first), format="json").status_code == 201
    assert client.post("/api/war", war_body(second), format="json").status_code == 201


def test_default_date_is_the_nearest_slot_whose_war_is_not_over():
    now = clock.redis_now()
    make_slot(date=(now - datetime.timedelta(days=1)).date(), opens_in=-86_400 * 2, closes_in=-3600)
    nearest = make_slot(date=(now + datetime.timedelta(days=1)).date())
    make_slot(date=(now + datetime.timedelta(days=2)).date())
    response = token_client(make_user()).post("/api/war", war_body(nearest), format="json")
    assert response.json()["ticket"]["date"] == nearest.date.isoformat()


def test_a_nik_is_required_to_reserve(settings):
    slot = make_slot()
    client = token_client(make_user(nik=None))
    response = client.post("/api/war", war_body(slot), format="json")
    assert (response.status_code, response.json()["code"]) == (403, "nik_required")
    settings.WAR_REQUIRE_NIK = False
    assert client.post("/api/war", war_body(slot), format="json").status_code == 201


def test_rate_limit_per_user_answers_429_with_retry_after(settings):
    settings.WAR_RATE_LIMIT_USER = 3
    slot = make_slot(opens_in=60)
    client = token_client(make_user())
    codes = [client.post("/api/war", war_body(slot), format="json") for _ in range(4)]
    assert [r.json()["code"] for r in codes] == ["too_early"] * 3 + ["rate_limited"]
    assert codes[-1].status_code == 429
    assert 1 <= int(codes[-1]["Retry-After"]) <= settings.WAR_RATE_LIMIT_WINDOW_MS // 1000


def test_rate_limit_per_client_ip_spans_users(settings):
    settings.WAR_RATE_LIMIT_IP = 2
    slot = make_slot(opens_in=60)
    codes = [
        token_client(make_user()).post("/api/war", war_body(slot), format="json", REMOTE_ADDR="10.9.8.7")
        for _ in range(3)
    ]
    assert [r.json()["code"] for r in codes] == ["too_early", "too_early", "rate_limited"]
    other_ip = token_client(make_user()).post("/api/war", war_body(slot), format="json", REMOTE_ADDR="10.9.8.8")
    assert other_ip.json()["code"] == "too_early"


def test_the_client_ip_comes_from_a_trusted_proxy_header_only_when_configured(settings):
    settings.WAR_RATE_LIMIT_IP = 1
    slot = make_slot(opens_in=60)

    def attempt(forwarded):
        return (
            token_client(make_user())
            .post("/api/war", war_body(slot), format="json", HTTP_X_REAL_IP=forwarded)
            .json()["code"]
        )

    # Without the setting the header is ignored: everyone shares REMOTE_ADDR.
    assert [attempt("1.1.1.1"), attempt("2.2.2.2")] == ["too_early", "rate_limited"]
    settings.WAR_CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
    assert [attempt("3.3.3.3"), attempt("4.4.4.4"), attempt("3.3.3.3")] == ["too_early", "too_early", "rate_limited"]


@pytest.mark.parametrize(
    ("case", "kwargs", "status", "code"),
    [
        ("too_early", {"opens_in": 60}, 403, "too_early"),
        ("closed", {"opens_in": -60, "closes_in": -1}, 403, "closed"),
    ],
)
def test_time_rejections_make_zero_postgres_queries(django_assert_num_queries, case, kwargs, status, code):
    slot = make_slot(**kwargs)
    client = token_client(make_user())
    body = war_body(slot, date=slot.date.isoformat())
    client.post("/api/war", body, format="json")  # warms the identity cache, as any earlier request would
    with django_assert_num_queries(0):
        response = client.post("/api/war", body, format="json")
    assert (response.status_code, response.json()["code"]) == (status, code)


def test_sold_out_already_reserved_one_per_day_and_rate_limited_make_zero_queries(django_assert_num_queries, settings):
    day = (clock.redis_now() + datetime.timedelta(days=3)).date()
    slot = make_slot(quota_size=1, date=day)
    other_slot = make_slot(location="bintaro", date=day)
    holder, latecomer, elsewhere = (token_client(make_user()) for _ in range(3))
    assert holder.post("/api/war", war_body(slot), format="json").status_code == 201
    assert elsewhere.post("/api/war", war_body(other_slot), format="json").status_code == 201
    latecomer.post("/api/war", war_body(other_slot, date="2000-01-01"), format="json")  # warm identity cache
    with django_assert_num_queries(0):
        assert latecomer.post("/api/war", war_body(slot), format="json").json()["code"] == "sold_out"
        assert holder.post("/api/war", war_body(slot), format="json").json()["code"] == "already_reserved"
        assert elsewhere.post("/api/war", war_body(slot), format="json").json()["code"] == "one_per_day"
    settings.WAR_RATE_LIMIT_USER = 1
    with django_assert_num_queries(0):
        assert holder.post("/api/war", war_body(slot), format="json").json()["code"] == "rate_limited"


def test_session_login_works_with_csrf_and_is_refused_without_it():
    slot = make_slot()
    buyer = make_user(password="rahasia-sekali-99")
    client = APIClient(enforce_csrf_checks=True)
    # A request for django-axes, which counts every password check (accounts/services/throttle.py).
    assert client.login(request=HttpRequest(), email=buyer.email, password="rahasia-sekali-99")
    refused = client.post("/api/war", war_body(slot), format="json")
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    assert Ticket.objects.count() == 0
    client.get("/")  # sets the CSRF cookie, as the war page does
    accepted = client.post(
        "/api/war", war_body(slot), format="json", HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value
    )
    assert accepted.status_code == 201, accepted.json()


def test_a_password_change_ends_other_sessions_for_the_war_endpoint():
    slot = make_slot(opens_in=60)
    buyer = make_user(password="rahasia-sekali-99")
    client = APIClient()
    assert client.login(request=HttpRequest(), email=buyer.email, password="rahasia-sekali-99")
    assert client.post("/api/war", war_body(slot), format="json").json()["code"] == "too_early"
    buyer.set_password("ganti-sandi-baru-77")
    buyer.save()
    assert client.post("/api/war", war_body(slot), format="json").status_code == 401


def test_a_deactivated_account_is_refused_at_once():
    slot = make_slot(opens_in=60)
    buyer = make_user()
    client = token_client(buyer)
    assert client.post("/api/war", war_body(slot), format="json").json()["code"] == "too_early"
    buyer.is_active = False
    buyer.save()
    assert client.post("/api/war", war_body(slot), format="json").status_code == 401


def test_raising_the_quota_after_open_adds_seats_live_and_lowering_below_sold_is_refused():
    slot = make_slot(quota_size=1)
    clients = [token_client(make_user()) for _ in range(3)]
    assert clients[0].post("/api/war", war_body(slot), format="json").status_code == 201
    assert clients[1].post("/api/war", war_body(slot), format="json").json()["code"] == "sold_out"
    slot.quota = 2
    slot.save()
    quota.sync(slot)
    assert clients[1].post("/api/war", war_body(slot), format="json").json()["ticket"]["queue_number"] == 2
    with pytest.raises(quota.QuotaError, match="sampai 2"):
        quota.check_quota_change(slot, 1)
    slot.quota = 1
    with pytest.raises(quota.QuotaError):
        quota.sync(slot)
    assert clients[2].post("/api/war", war_body(slot), format="json").json()["code"] == "sold_out"
