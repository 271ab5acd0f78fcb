"""When Redis or PostgreSQL misbehave, buyers get 503 or the truth, never a half-written ticket."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from accounts.services import identity
from queueing.models import Ticket
from queueing.services import quota
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.redis_client import get_redis, reset_redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def postgres_refuses_tickets(transactional_db):
    """A real failure of the ticket INSERT, as a full disk or a lost primary would cause."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE queueing_ticket ADD CONSTRAINT test_refuse_all CHECK (queue_number < 0) NOT VALID")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE queueing_ticket DROP CONSTRAINT test_refuse_all")


# The service writes in autocommit mode, as in production: a real transaction per test.
@pytest.mark.django_db(transaction=True)
def test_a_failed_postgres_write_releases_the_redis_seat_and_answers_503(postgres_refuses_tickets):
    slot = make_slot(quota_size=2)
    response = token_client(make_user()).post("/api/war", war_body(slot), format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert response["Retry-After"]
    keys = slot_keys(slot.pk, slot.war_day)
    assert get_redis().hget(keys.slot, "sold") == "0"
    assert get_redis().hlen(keys.holders) == 0
    assert get_redis().zrange(keys.free, 0, -1) == ["1"]
    assert Ticket.objects.count() == 0


def test_redis_flushed_answers_not_ready_until_sync_quota_restores_the_exact_remaining():
    slot = make_slot(quota_size=5)
    clients = [token_client(make_user()) for _ in range(4)]
    codes = [c.post("/api/war", war_body(slot), format="json").json()["ticket"]["code"] for c in clients[:3]]
    clients[1].post(f"/api/tickets/{codes[1]}/cancel")
    get_redis().flushdb()
    refused = clients[3].post("/api/war", war_body(slot), format="json")
    assert (refused.status_code, refused.json()["code"]) == (503, "not_ready")
    assert refused["Retry-After"]

    call_command("sync_quota")
    keys = slot_keys(slot.pk, slot.war_day)
    assert quota.remaining_for([slot])[slot.pk] == 5 - 2
    # Holders came back too: a retry is still "already reserved", and the freed number 2 is reissued first.
    assert clients[0].post("/api/war", war_body(slot), format="json").json()["code"] == "already_reserved"
    assert clients[3].post("/api/war", war_body(slot), format="json").json()["ticket"]["queue_number"] == 2
    assert get_redis().hget(keys.slot, "sold") == "3"


# The service writes in autocommit mode, as in production: a real transaction per test.
@pytest.mark.django_db(transaction=True)
def test_postgres_never_holds_more_than_the_quota_even_when_redis_is_wrong():
    slot = make_slot(quota_size=3)
    get_redis().hset(slot_keys(slot.pk, slot.war_day).slot, "quota", 6)
    answers = [token_client(make_user()).post("/api/war", war_body(slot), format="json") for _ in range(6)]
    assert [a.status_code for a in answers].count(201) == 3
    assert {a.json()["code"] for a in answers[3:]} == {"sold_out"}
    assert Ticket.objects.filter(slot=slot, status="active").count() == 3
    assert sorted(Ticket.objects.values_list("queue_number", flat=True)) == [1, 2, 3]


def test_postgres_refuses_a_second_holding_ticket_or_a_duplicate_number_on_its_own():
    slot = make_slot(quota_size=3)
    buyer, other = make_user(), make_user()
    Ticket.objects.create(slot=slot, user=buyer, queue_number=1, reserved_at=slot.war_opens_at)
    for kwargs in (
        {"user": buyer, "queue_number": 2},
        {"user": other, "queue_number": 1},
        {"user": other, "queue_number": 4},
        {"user": other, "queue_number": 0},
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            Ticket.objects.create(slot=slot, reserved_at=slot.war_opens_at, **kwargs)
    # A cancelled ticket frees its number and its holder for a new one.
    Ticket.objects.filter(user=buyer).update(status="cancelled")
    Ticket.objects.create(slot=slot, user=buyer, queue_number=1, reserved_at=slot.war_opens_at)


def test_postgres_refuses_lowering_a_quota_below_an_issued_number():
    slot = make_slot(quota_size=5)
    Ticket.objects.create(slot=slot, user=make_user(), queue_number=4, reserved_at=slot.war_opens_at)
    slot.quota = 3
    with pytest.raises(IntegrityError), transaction.atomic():
        slot.save()


@pytest.mark.parametrize("path", ["/api/war", "/api/time", "/api/slots"])
def test_redis_down_answers_503_with_retry_after(settings, path):
    slot = make_slot()
    client = token_client(make_user())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection
    reset_redis()
    response = client.post(path, war_body(slot), format="json") if path == "/api/war" else client.get(path)
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert int(response["Retry-After"]) >= 1
    assert Ticket.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_writes_the_row_first_does_not_make_the_first_attempt_release_the_seat():
    """The interleaving of a double click, replayed step by step with the real script and database.

    Attempt 1 wins in Redis; before it writes its row, attempt 2 (same buyer) sees the uncommitted
    holder and writes the row itself. Attempt 1's INSERT then fails on the duplicate code: it must
    answer with the ticket, not release a seat whose ticket exists.
    """
    from queueing.models import new_ticket_code
    from queueing.services import catalog, reservations
    from queueing.services.store import reserve_keys, script

    slot = make_slot(quota_size=2)
    buyer = make_user()
    ref = catalog.ref_for(slot)
    keys = slot_keys(slot.pk, slot.war_day)
    first = script("reserve")(
        keys=reserve_keys(slot.pk, ref.day, buyer.pk, "-"),
        args=[buyer.pk, new_ticket_code(), slot.pk, 0, 1, 0, 0, 10_000, buyer.person_key, 1000],
    )
    assert first[0] == "reserved"
    number, code, now_ms = int(first[2]), first[3], int(first[1])

    retry = token_client(buyer).post("/api/war", war_body(slot), format="json")
    assert (retry.status_code, retry.json()["ticket"]["code"]) == (200, code)

    result = reservations._commit(identity.principal_for_user(buyer), ref, number, code, now_ms, int(first[4]), None)
    assert (result.code, result.queue_number) == (code, number)
    assert Ticket.objects.filter(slot=slot, status="active").count() == 1
    assert get_redis().hget(keys.slot, "sold") == "1"
    assert get_redis().hget(keys.holders, str(buyer.pk)).split("|")[1] == code


def reserve_with_fault(settings, slot, user, fault: str, *, status: int) -> tuple[dict, dict]:
    """One attempt with a test fault; returns its JSON answer and the slot's Redis counters and holders."""
    settings.WAR_FAULT_INJECTION = True
    response = token_client(user).post("/api/war", war_body(slot), format="json", HTTP_X_WAR_FAULT=fault)
    assert response.status_code == status, response.json()
    keys = slot_keys(slot.pk, slot.war_day)
    return response.json(), {"sold": get_redis().hget(keys.slot, "sold"), "holders": get_redis().hgetall(keys.holders)}


@pytest.mark.django_db(transaction=True)
def test_a_reply_lost_after_postgresql_committed_still_answers_with_the_ticket(settings):
    # Releasing here would hand a committed ticket's number to the next buyer and leave this buyer
    # refused on every retry (PostgreSQL already holds their ticket for the slot).
    slot, user = make_slot(quota_size=2), make_user()
    answer, redis_state = reserve_with_fault(settings, slot, user, "reply-lost-after-insert", status=201)
    ticket = Ticket.objects.get()
    assert (ticket.code, ticket.user_id) == (answer["ticket"]["code"], user.pk)
    assert redis_state["sold"] == "1"
    assert redis_state["holders"][str(user.pk)].split("|")[3] == "1"  # marked committed
    call_command("reconcile", grace_ms=0)  # no drift: returns normally


@pytest.mark.django_db(transaction=True)
def test_a_reply_lost_before_anything_was_written_releases_the_seat(settings):
    slot, user = make_slot(quota_size=2), make_user()
    answer, redis_state = reserve_with_fault(settings, slot, user, "reply-lost-before-insert", status=503)
    assert answer["code"] == "unavailable"
    assert redis_state == {"sold": "0", "holders": {}}
    assert Ticket.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_write_that_cannot_be_confirmed_either_way_keeps_the_seat_for_the_retry(settings):
    # The row did commit, but PostgreSQL cannot be asked: no release (the number stays taken) and no 201.
    slot, user = make_slot(quota_size=2), make_user()
    answer, redis_state = reserve_with_fault(settings, slot, user, "reply-lost-database-gone", status=503)
    assert answer["code"] == "unavailable"
    code = Ticket.objects.get().code
    assert redis_state["sold"] == "1"
    assert redis_state["holders"][str(user.pk)].split("|")[1:4:2] == [code, "0"]  # held, not confirmed
    retry = token_client(user).post("/api/war", war_body(slot), format="json")
    assert (retry.status_code, retry.json()["code"], retry.json()["ticket"]["code"]) == (200, "already_reserved", code)
    assert Ticket.objects.count() == 1
    call_command("reconcile", grace_ms=0)
