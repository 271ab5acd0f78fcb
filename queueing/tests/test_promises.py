"""Promises about a person hold in PostgreSQL whatever Redis says, and Redis heals itself.

Each test replays a way these promises broke before (a red team's reproductions): a NIK moved to a
second account, a Redis rebuilt one slot at a time, a Redis restarted from an older dump, a war
postponed while Redis paused writes, a cancel whose COMMIT failed, a cancel whose Redis step failed.
Real PostgreSQL and Redis throughout; the tests that restart or pause Redis use a private server.
"""

from __future__ import annotations

import datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import NikChange, User
from accounts.services import identity
from accounts.services import nik as nik_service
from accounts.validators import make_nik
from queueing.models import Slot, Ticket
from queueing.services import catalog, heal, quota, reconcile, slots
from queueing.services.store import datetime_to_ms, slot_keys
from tests.factory import admin_slot_form, make_slot, make_user, token_client, war_body
from tests.private_redis import PrivateRedis
from wartiket.redis_client import get_redis, reset_redis
from wartiket.tests.faults import point_app_at

pytestmark = pytest.mark.django_db(transaction=True)


def war(client, slot):
    response = client.post("/api/war", war_body(slot, date=slot.date.isoformat()), format="json")
    return response.status_code, response.json()


def same_day_slots() -> tuple[Slot, Slot]:
    ten = make_slot(label="10:00", quota_size=5)
    two = make_slot(label="14:00", quota_size=5, date=ten.date)
    return ten, two


def use_redis(settings, url: str) -> None:
    """Point this process (war engine client, cache and sessions) at another Redis server."""
    point_app_at(settings, url)
    catalog._local.clear()


def private_redis(folder):
    """A private server whose data lives only in the dumps a test takes (see PrivateRedis)."""
    return PrivateRedis(folder, appendonly=False)


# --- One ticket per person per war day, in PostgreSQL ------------------------------------------------


def test_a_nik_moved_to_a_second_account_cannot_take_a_second_ticket_that_day():
    ten, two = same_day_slots()
    first = make_user()
    nik = first.nik
    status, body = war(token_client(first), ten)
    assert status == 201
    held = body["ticket"]["code"]

    # The NIK leaves the first account by a path no form checks (a raw UPDATE: no signal, no lock), and
    # a second account registers with it. Redis' person entry and PostgreSQL's frozen person both say no.
    User.objects.filter(pk=first.pk).update(nik=make_nik(9001, birth=datetime.date(1991, 2, 3)))
    identity.forget_user(first)
    second = make_user(nik=nik)
    status, body = war(token_client(second), two)
    assert (status, body["code"], body["ticket"]["code"]) == (409, "one_per_day", held)

    # The first account, now under another NIK that Redis has never seen: PostgreSQL still holds it to one.
    status, body = war(token_client(User.objects.get(pk=first.pk)), two)
    assert (status, body["code"], body["ticket"]["code"]) == (409, "one_per_day", held)

    # Control: somebody else takes 14:00 at once, so the refusals above were about the person.
    assert war(token_client(make_user()), two)[0] == 201
    assert Ticket.objects.filter(war_day=ten.date, status="active").count() == 2


def test_postgres_alone_refuses_a_second_ticket_for_one_person_on_one_day():
    ten, two = same_day_slots()
    buyer = make_user()
    assert war(token_client(buyer), ten)[0] == 201
    # Redis forgets the day entirely (its person hash, as a stale Redis would): only PostgreSQL knows.
    get_redis().delete(slot_keys(ten.pk, ten.war_day).day)
    status, body = war(token_client(buyer), two)
    assert (status, body["code"]) == (409, "one_per_day")
    assert Ticket.objects.filter(user=buyer, status="active").count() == 1
    # The refused attempt gave its number back: the next buyer of 14:00 gets #1.
    assert war(token_client(make_user()), two)[1]["ticket"]["queue_number"] == 1


def test_a_buyer_holding_a_ticket_cannot_change_their_nik_on_the_profile(client):
    ten, _two = same_day_slots()
    buyer = make_user(phone="081234567890")
    status, body = war(token_client(buyer), ten)
    assert status == 201
    client.force_login(buyer)
    new_nik = make_nik(9002, birth=datetime.date(1992, 4, 5))
    form = {"full_name": buyer.full_name, "phone": buyer.phone, "nik": new_nik}
    response = client.post("/accounts/profile/", form)
    assert response.status_code == 200
    assert "NIK tidak bisa diubah selama Anda memegang nomor antrean aktif" in response.content.decode()
    assert User.objects.get(pk=buyer.pk).nik == buyer.nik

    # Once the ticket is cancelled, the change goes through.
    assert client.post(f"/api/tickets/{body['ticket']['code']}/cancel").status_code == 200
    assert client.post("/accounts/profile/", form).status_code == 302
    assert User.objects.get(pk=buyer.pk).nik == new_nik


def test_staff_change_a_nik_of_an_account_holding_tickets_only_with_a_recorded_reason():
    ten, two = same_day_slots()
    buyer, staff = make_user(), make_user(is_staff=True)
    old = buyer.nik
    assert war(token_client(buyer), ten)[0] == 201
    new_nik = make_nik(9003, birth=datetime.date(1993, 6, 7))
    with pytest.raises(nik_service.ValidationError):
        nik_service.staff_change(buyer, new_nik, by=staff, reason="  ")
    assert User.objects.get(pk=buyer.pk).nik == old

    nik_service.staff_change(buyer, new_nik, by=staff, reason="salah ketik saat daftar")
    change = NikChange.objects.get()
    assert (change.old_nik, change.new_nik, change.changed_by, change.reason) == (
        old,
        new_nik,
        staff,
        "salah ketik saat daftar",
    )
    # The same rule afterwards: the account keeps one ticket that day, and the freed NIK cannot add one.
    assert war(token_client(User.objects.get(pk=buyer.pk)), two)[1]["code"] == "one_per_day"
    assert war(token_client(make_user(nik=old)), two)[1]["code"] == "one_per_day"


# --- Redis rebuilt per war day, and from PostgreSQL only ---------------------------------------------


def test_after_redis_lost_everything_rebuilding_one_slot_rebuilds_the_whole_war_day(django_assert_num_queries):
    ten, two = same_day_slots()
    buyer = make_user()
    client = token_client(buyer)
    status, body = war(client, two)
    assert status == 201

    get_redis().flushdb()
    call_command("sync_quota", slot=[ten.pk])
    war(client, ten)  # warms the identity cache, which the flush emptied
    with django_assert_num_queries(0):
        status, refused = war(client, ten)
    assert (status, refused["code"], refused["ticket"]["code"]) == (409, "one_per_day", body["ticket"]["code"])
    assert quota.remaining_for([two])[two.pk] == 4


def test_a_redis_restarted_from_an_older_dump_is_distrusted_refused_by_postgres_and_rebuilt(settings, tmp_path):
    with private_redis(tmp_path) as server:
        use_redis(settings, server.url())
        heal.mark_built()
        ten, two = same_day_slots()
        buyer = make_user()
        client = token_client(buyer)
        server.save_dump("before-the-ticket.rdb")
        status, body = war(client, two)
        assert status == 201

        # Redis comes back from the dump taken before that ticket (appendfsync everysec allows it).
        server.restart_from("before-the-ticket.rdb")
        reset_redis()
        catalog._local.clear()
        assert not heal.is_trusted()
        # Before healing, Redis would hand out 10:00; PostgreSQL refuses the second ticket of the day.
        status, refused = war(client, ten)
        assert (status, refused["code"], refused["ticket"]["code"]) == (409, "one_per_day", body["ticket"]["code"])

        healed = heal.check_and_heal()
        assert healed is not None and "older" in healed.reason
        assert heal.is_trusted()
        assert heal.check_and_heal() is None  # healed once, by one caller
        war(client, ten)
        with CaptureQueriesContext(connection) as queries:
            status, refused = war(client, ten)
        assert (status, refused["code"], len(queries)) == (409, "one_per_day", 0)  # Redis knows again
        assert quota.remaining_for([two])[two.pk] == 4
        assert not [r for r in reconcile.reconcile() if r.drift]
        assert Ticket.objects.filter(person=buyer.person_key, status="active").count() == 1


def test_a_redis_restarted_empty_answers_not_ready_until_it_heals_itself(settings, tmp_path):
    with private_redis(tmp_path) as server:
        use_redis(settings, server.url())
        heal.mark_built()
        slot = make_slot(quota_size=3)
        holder, late = make_user(), make_user()
        assert war(token_client(holder), slot)[0] == 201
        server.restart_from(None)
        reset_redis()
        catalog._local.clear()
        status, body = war(token_client(late), slot)
        assert (status, body["code"]) == (503, "not_ready")
        heal.check_and_heal()
        status, body = war(token_client(late), slot)
        assert (status, body["ticket"]["queue_number"]) == (201, 2)
        assert war(token_client(holder), slot)[1]["code"] == "already_reserved"


# --- A war never opens on a time PostgreSQL no longer holds --------------------------------------------


def test_postponing_a_war_while_redis_pauses_writes_never_lets_it_open_at_the_old_time(settings, tmp_path, client):
    with private_redis(tmp_path) as server:
        use_redis(settings, server.url())
        heal.mark_built()
        slot = make_slot(quota_size=5, opens_in=-30)
        staff = make_user(is_staff=True, is_superuser=True)
        client.force_login(staff)
        buyer = token_client(make_user())
        later = slot.war_opens_at + datetime.timedelta(hours=1)

        # Longer than the client's 2 s socket timeout, ended by hand once the edit has been answered.
        server.client().execute_command("CLIENT", "PAUSE", "15000", "WRITE")
        response = client.post(f"/admin/queueing/slot/{slot.pk}/change/", admin_slot_form(slot, opens=later))
        assert response.status_code == 503 and response["Retry-After"]
        # Nothing was committed: PostgreSQL still holds the old opening, which Redis may serve.
        assert Slot.objects.get(pk=slot.pk).war_opens_at == slot.war_opens_at
        server.client().execute_command("CLIENT", "UNPAUSE")
        # Redis gates on what PostgreSQL holds (the old time), or (had the fence landed after the
        # timeout) refuses until heal applies it: never on a time PostgreSQL does not hold.
        opens, pending = get_redis().hmget(slot_keys(slot.pk, slot.war_day).slot, "opens", "pending")
        assert pending is not None or int(opens) == datetime_to_ms(slot.war_opens_at)

        # The edit, done again once Redis writes, opens the war at the new time only.
        client.force_login(staff)
        response = client.post(f"/admin/queueing/slot/{slot.pk}/change/", admin_slot_form(slot, opens=later))
        assert response.status_code == 302, response.content[:500]
        status, body = war(buyer, slot)
        assert (status, body["code"]) == (403, "too_early")
        assert abs(datetime.datetime.fromisoformat(body["opens_at"]) - later) < datetime.timedelta(seconds=1)


def test_an_edit_committed_in_postgres_but_never_applied_to_redis_keeps_the_war_shut_until_healed(monkeypatch):
    slot = make_slot(quota_size=5, opens_in=-30)
    buyer = token_client(make_user())
    # The process dies after the commit, before applying the edit to Redis: fence, commit, nothing more.
    slots.fence(slot.pk, slot.war_day)
    later = slot.war_opens_at + datetime.timedelta(hours=1)
    Slot.objects.filter(pk=slot.pk).update(war_opens_at=later)
    status, body = war(buyer, slot)
    assert (status, body["code"]) == (503, "not_ready")

    monkeypatch.setattr(slots, "PENDING_STALE_MS", 0)  # the edit is long dead: don't wait 5 s for it here
    [report] = reconcile.reconcile([Slot.objects.get(pk=slot.pk)])
    assert report.drift and "a staff edit has not reached Redis (pending)" in report.lines()
    assert heal.finish_pending_edits() == [slot.pk]
    assert not reconcile.reconcile([Slot.objects.get(pk=slot.pk)])[0].drift
    status, body = war(buyer, slot)
    assert (status, body["code"]) == (403, "too_early")


def test_reconcile_compares_war_times_and_sets_them_from_postgres():
    slot = make_slot(quota_size=5, opens_in=3600)
    # An edit that bypassed the service (QuerySet.update sends no signal) leaves Redis on the old time.
    Slot.objects.filter(pk=slot.pk).update(war_opens_at=slot.war_opens_at - datetime.timedelta(hours=2))
    [report] = reconcile.reconcile([Slot.objects.get(pk=slot.pk)])
    assert report.drift and any(line.startswith("opens differs") for line in report.lines())
    reconcile.reconcile([Slot.objects.get(pk=slot.pk)], repair=True)
    [report] = reconcile.reconcile([Slot.objects.get(pk=slot.pk)])
    assert not report.drift
    assert war(token_client(make_user()), slot)[0] == 201


# --- Cancel is never half-written ------------------------------------------------------------------------

FAIL_COMMIT = """
CREATE FUNCTION test_refuse_commit() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'the COMMIT fails' USING ERRCODE = '08006'; END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER test_refuse_commit AFTER UPDATE ON queueing_ticket
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse_commit();
"""
ALLOW_COMMIT = """
DROP TRIGGER test_refuse_commit ON queueing_ticket;
DROP FUNCTION test_refuse_commit();
"""


def test_a_cancel_whose_commit_fails_leaves_the_seat_taken_never_two_owners_of_one_number():
    ten, two = same_day_slots()
    owner = make_user()
    client = token_client(owner)
    code = war(client, ten)[1]["ticket"]["code"]
    keys = slot_keys(ten.pk, ten.war_day)
    with connection.cursor() as cursor:
        cursor.execute(FAIL_COMMIT)
    try:
        response = client.post(f"/api/tickets/{code}/cancel")
        assert (response.status_code, response.json()["code"]) == (503, "unavailable")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(ALLOW_COMMIT)
    assert Ticket.objects.get(code=code).status == "active"
    r = get_redis()
    assert r.hget(keys.holders, str(owner.pk)).split("|")[1] == code
    assert r.zrange(keys.free, 0, -1) == []
    # The next buyer gets the next number (never #1 a second time), and the owner still has one ticket a day.
    assert war(token_client(make_user()), ten)[1]["ticket"]["queue_number"] == 2
    assert war(client, two)[1]["code"] == "one_per_day"
    assert not [rep for rep in reconcile.reconcile() if rep.drift]


def test_a_cancel_whose_redis_step_fails_is_released_later_by_reconcile(settings):
    slot = make_slot(quota_size=1)
    owner = make_user()
    client = token_client(owner)
    code = war(client, slot)[1]["ticket"]["code"]
    url = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens: the release after the commit fails
    reset_redis()
    from queueing.services import reservations

    result = reservations.cancel(owner.pk, code)
    assert result.remaining is None
    settings.REDIS_URL = url
    reset_redis()
    assert Ticket.objects.get(code=code).status == "cancelled"
    # The seat is still taken in Redis: the failure errs on the side of "taken a little longer".
    assert war(token_client(make_user()), slot)[1]["code"] == "sold_out"
    [report] = reconcile.reconcile([slot])
    assert [h["code"] for h in report.cancelled_but_held] == [code]
    reconcile.reconcile([slot], repair=True)
    assert war(token_client(make_user()), slot)[1]["ticket"]["queue_number"] == 1
    assert not [rep for rep in reconcile.reconcile() if rep.drift]


def test_an_edit_that_bypasses_the_service_reaches_redis_at_the_next_heal_sweep():
    slot = make_slot(quota_size=5, opens_in=-30)
    later = slot.war_opens_at + datetime.timedelta(hours=1)
    Slot.objects.filter(pk=slot.pk).update(war_opens_at=later)  # no signal, no fence
    assert war(token_client(make_user()), slot)[0] == 201  # Redis does not know yet...
    assert heal.finish_pending_edits() == [slot.pk]  # ...until the sweep (live_quota: every second)
    status, body = war(token_client(make_user()), slot)
    assert (status, body["code"]) == (403, "too_early")
    assert heal.finish_pending_edits() == []


# --- The periodic check is visible -------------------------------------------------------------------


def test_the_beat_check_records_drift_logs_it_at_error_and_the_war_room_shows_it(caplog, settings):
    from queueing import tasks
    from queueing.services import warroom

    settings.WAR_RECONCILE_REPAIR = False  # the read-only check
    slot = make_slot(quota_size=5, opens_in=-30)
    assert war(token_client(make_user()), slot)[0] == 201
    tasks.reconcile_task()
    assert warroom.Sampler([slot.pk]).sample()["consistency"]["drift"] == []

    get_redis().hset(slot_keys(slot.pk, slot.war_day).slot, "quota", 9)  # Redis now disagrees
    with caplog.at_level("ERROR", logger="queueing.services.reconcile"):
        tasks.reconcile_task()
    assert any("quota differs" in record.getMessage() for record in caplog.records)
    shown = warroom.Sampler([slot.pk]).sample()["consistency"]
    assert [d["slot"] for d in shown["drift"]] == [slot.pk] and shown["slots"] >= 1
    assert get_redis().hget(slot_keys(slot.pk, slot.war_day).slot, "quota") == "9"  # the check wrote nothing

    settings.WAR_RECONCILE_REPAIR = True  # the default: safe repairs too
    tasks.reconcile_task()
    assert get_redis().hget(slot_keys(slot.pk, slot.war_day).slot, "quota") == "5"
