"""Draw mode (queueing/services/draws.py): entries, the draw, its verification, the waiting list.

Real PostgreSQL and Redis throughout; HTTP through Django's test client, and a real server process
where a process must die mid-draw.
"""

from __future__ import annotations

import datetime
import html
import io
import json
import subprocess
import sys
import threading
from collections import Counter

import pytest
import requests
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from accounts.models import ApiToken, User
from accounts.services.identity import Principal
from accounts.validators import make_nik
from notifications.models import Notification, TelegramLink
from notifications.services import messages, notify
from queueing import tasks
from queueing.models import Allocation, Challenge, Draw, DrawEntry, Location, Slot, Ticket
from queueing.services import catalog, clock, draws, events, heal, quota, reservations, store, warroom
from queueing.services.errors import ReservationError
from queueing.services.store import slot_keys
from queueing.tests.test_crash import post_war
from tests.browser import live_quota_process
from tests.factory import admin_slot_form, make_slot, make_user, token_client, war_body
from tests.live import ROOT, poll, server_env, web_server
from tests.pow import solve
from wartiket.redis_client import get_redis, reset_redis

pytestmark = pytest.mark.django_db

_serial = iter(range(1, 10**6))


def draw_slot(*, quota_size: int, opens_in: float = 60.0, label: str = "11:00", days: int = 2) -> Slot:
    """A draw slot whose war opens ``opens_in`` s from now by Redis' clock (entries open 15 min before)."""
    now = clock.redis_now()
    location, _ = Location.objects.get_or_create(slug="graha-dipta", defaults={"name": "Graha Dipta"})
    slot = Slot.objects.create(
        location=location,
        date=(now + datetime.timedelta(days=days)).date(),
        time_label=label,
        quota=quota_size,
        war_opens_at=now + datetime.timedelta(seconds=opens_in),
        allocation=Allocation.DRAW,
        draw_grace_seconds=10,
    )
    quota.sync_all([slot])
    return slot


def reach_draw_time(slot: Slot) -> Slot:
    """Move the war so that its draw time has just passed (entries closed, not drawn yet)."""
    Slot.objects.filter(pk=slot.pk).update(war_opens_at=clock.redis_now() - datetime.timedelta(seconds=11))
    slot.refresh_from_db()
    quota.sync_all([slot])
    catalog._local.clear()
    return slot


def people(n: int) -> list[Principal]:
    """``n`` buyers with NIKs, made in one INSERT (no password hashing)."""
    base = next(_serial) * 1000
    users = User.objects.bulk_create(
        User(
            email=f"draw{base + i}@example.com",
            full_name=f"Draw {base + i}",
            password="!",
            nik=make_nik(base + i, birth=datetime.date(1980 + (base + i) // 10000 % 20, 5, 1 + i % 28)),
        )
        for i in range(n)
    )
    return [Principal(id=u.pk, has_nik=True, person=f"nik:{u.nik}") for u in users]


def enter(principal: Principal, slot: Slot, ip: str = "10.0.0.1"):
    return reservations.reserve(principal, slot.location.slug, slot.time_label, slot.date, client_ip=ip)


def refusal(principal: Principal, slot: Slot) -> ReservationError:
    with pytest.raises(ReservationError) as refused:
        enter(principal, slot)
    return refused.value


def redis_slot(slot: Slot) -> dict:
    return get_redis().hgetall(slot_keys(slot.pk, slot.war_day).slot)


# --- The draw: exact, in drawn order, verifiable ---------------------------------------------------


def test_300_entrants_for_100_seats_get_exactly_100_tickets_in_drawn_order_and_the_draw_verifies(tmp_path):
    slot = draw_slot(quota_size=100)
    commitment = Draw.objects.get(slot=slot).commitment  # published when the slot became a draw slot
    entrants = people(300)
    for i, principal in enumerate(entrants):
        entry = enter(principal, slot, ip=f"10.0.{i // 200}.{i % 200}")
        assert entry.outcome == "entered"
        assert entry.body()["entry"]["commitment"] == commitment
    assert DrawEntry.objects.filter(slot=slot).count() == 300
    assert get_redis().scard(slot_keys(slot.pk, slot.war_day).entrants) == 300

    reach_draw_time(slot)
    # Entries are closed and the draw is not in Redis: nobody is handed a number first come, first served.
    assert refusal(entrants[0], slot).code == "not_ready"
    assert not Ticket.objects.exists()

    run = draws.run_draw(slot.pk)
    assert (run.committed, run.applied) == (True, True)
    tickets = list(Ticket.objects.filter(slot=slot).order_by("queue_number"))
    assert [t.queue_number for t in tickets] == list(range(1, 101))
    won = list(DrawEntry.objects.filter(slot=slot, outcome="won").order_by("position"))
    assert [e.ticket_id for e in won] == [t.pk for t in tickets]  # numbers 1..100 in drawn order
    assert [e.position for e in won] == list(range(1, 101))
    waiting = list(DrawEntry.objects.filter(slot=slot, outcome="waiting").order_by("position"))
    assert [e.waitlist_position for e in waiting] == list(range(1, 201))
    assert [e.position for e in waiting] == list(range(101, 301))
    draw = Draw.objects.get(slot=slot)
    assert (draw.entrants, draw.winners, draw.waiting, draw.skipped) == (300, 100, 200, 0)
    assert draw.drawn_at is not None and draw.duration_ms is not None and draw.lag_ms is not None

    state = redis_slot(slot)
    assert (state["draw"], state["sold"], state["next"]) == ("done", "100", "101")
    keys = slot_keys(slot.pk, slot.war_day)
    assert get_redis().hlen(keys.holders) == 100
    assert get_redis().hlen(keys.waitlist) == 200
    call_command("reconcile", grace_ms=0)  # PostgreSQL and Redis agree: no drift (exit 1 otherwise)

    # A second run draws nothing again.
    again = draws.run_draw(slot.pk)
    assert (again.committed, again.applied) == (False, False)
    assert Ticket.objects.count() == 100

    record = draws.published(slot)
    assert record["seed"] and record["commitment"] == commitment
    assert draws.verify(record) == []
    call_command("verify_draw", slot.pk)
    saved = tmp_path / "draw.json"
    saved.write_text(json.dumps(record))
    call_command("verify_draw", slot.pk, file=str(saved))

    # Negative controls: a tampered entrant list, seed or position is caught.
    dropped = {**record, "entrants": record["entrants"][1:]}
    assert any(p.startswith("entrants_hash") for p in draws.verify(dropped))
    reseeded = {**record, "seed": draws.new_seed()}
    problems = draws.verify(reseeded)
    assert any(p.startswith("commitment") for p in problems) and any(p.startswith("position") for p in problems)
    swapped = json.loads(json.dumps(record))
    swapped["entrants"][0]["position"], swapped["entrants"][1]["position"] = 2, 1
    assert sum(p.startswith("position") for p in draws.verify(swapped)) == 2
    saved.write_text(json.dumps(reseeded))
    with pytest.raises(SystemExit) as failed:
        call_command("verify_draw", slot.pk, file=str(saved))
    assert failed.value.code == 1


def test_a_redis_flush_after_the_draw_is_rebuilt_drawn_with_its_waiting_list():
    slot = draw_slot(quota_size=2)
    entrants = people(5)
    for principal in entrants:
        enter(principal, slot)
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    get_redis().flushdb()
    assert heal.check_and_heal() is not None
    state = redis_slot(slot)
    assert (state["draw"], state["sold"]) == ("done", "2")
    waitlist = get_redis().hgetall(slot_keys(slot.pk, slot.war_day).waitlist)
    expected = dict(DrawEntry.objects.filter(slot=slot, outcome="waiting").values_list("person", "waitlist_position"))
    assert {k: int(v) for k, v in waitlist.items()} == expected and len(expected) == 3


def test_an_undrawn_draw_slot_stays_closed_to_first_come_first_served_through_a_rebuild():
    slot = draw_slot(quota_size=2)
    reach_draw_time(slot)
    get_redis().flushdb()
    heal.check_and_heal()
    assert redis_slot(slot)["draw"] == str(int(slot.draw_at.timestamp() * 1000))
    assert refusal(people(1)[0], slot).code == "not_ready"
    assert not Ticket.objects.exists()


def test_an_entrant_who_holds_another_ticket_that_day_by_the_draw_is_skipped():
    slot = draw_slot(quota_size=5)
    other = make_slot(quota_size=5, label="15:00", date=slot.date)
    entrants = people(3)
    for principal in entrants:
        enter(principal, slot)
    reservations.reserve(entrants[0], other.location.slug, other.time_label, other.date, client_ip="10.9.9.9")
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    outcomes = dict(DrawEntry.objects.filter(slot=slot).values_list("user_id", "outcome"))
    assert outcomes == {entrants[0].id: "skipped", entrants[1].id: "won", entrants[2].id: "won"}
    assert Ticket.objects.filter(slot=slot).count() == 2
    assert Draw.objects.get(slot=slot).skipped == 1


# --- Fairness: arriving first buys nothing -----------------------------------------------------------


def test_a_bot_entering_first_with_50_accounts_wins_its_share_of_entrants_not_every_seat():
    # The bot's accounts enter at the window's first millisecond, the 300 humans later: the list order is
    # what a first-come war would reward. The draw ignores it. 400 draws with different seeds (pure
    # function, deterministic seeds: the bound cannot flake). Per draw the bot's seats are hypergeometric
    # (100 of 350, 50 marked): mean 14.29, sd 2.96; over 400 draws the share's sd is 0.0015, and the
    # bound below is 20 of those.
    bot = [draws.pseudonym(1, f"nik:bot{i}") for i in range(50)]
    humans = [draws.pseudonym(1, f"nik:human{i}") for i in range(300)]
    entrants = bot + humans
    bot_set = set(bot)
    seats = Counter()
    for i in range(400):
        seed = draws.commitment_of(f"seed {i}")  # any 64 hex characters
        winners = draws.draw_order(seed, entrants)[:100]
        seats["bot"] += sum(name in bot_set for name in winners)
    share = seats["bot"] / (400 * 100)
    assert abs(share - 50 / 350) < 0.03
    # The list order does not matter at all: the same entrants listed the other way draw the same order.
    assert draws.draw_order("ab" * 32, entrants) == draws.draw_order("ab" * 32, list(reversed(entrants)))


# --- Entry rules, over HTTP -------------------------------------------------------------------------


def test_an_entry_is_202_entered_durable_and_idempotent():
    slot = draw_slot(quota_size=3)
    buyer = make_user()
    client = token_client(buyer)
    first = client.post("/api/war", war_body(slot), format="json")
    assert first.status_code == 202, first.json()
    body = first.json()
    entry = DrawEntry.objects.get(slot=slot)
    assert body == {
        "code": "entered",
        "entry": {
            "slot_id": slot.pk,
            "position": None,
            "draw_at": body["entry"]["draw_at"],
            "commitment": Draw.objects.get(slot=slot).commitment,
            "pseudonym": entry.pseudonym,
        },
    }
    assert datetime.datetime.fromisoformat(body["entry"]["draw_at"]) == slot.draw_at
    assert (entry.user, entry.person, entry.outcome) == (buyer, buyer.person_key, "pending")
    again = client.post("/api/war", war_body(slot), format="json")
    assert (again.status_code, again.json()) == (202, body)
    assert DrawEntry.objects.count() == 1
    assert not Ticket.objects.exists()


def test_before_the_window_it_is_too_early_with_the_windows_opening():
    slot = draw_slot(quota_size=3, opens_in=30 * 60)
    response = token_client(make_user()).post("/api/war", war_body(slot), format="json")
    assert (response.status_code, response.json()["code"]) == (403, "too_early")
    assert datetime.datetime.fromisoformat(response.json()["opens_at"]) == slot.entry_opens_at
    assert slot.entry_opens_at == slot.war_opens_at - datetime.timedelta(minutes=15)
    assert not DrawEntry.objects.exists()


def test_a_bypass_token_lifts_only_the_clock_for_an_entry(settings):
    settings.WAR_BYPASS_ENABLED = True
    settings.WAR_RATE_LIMIT_USER = 2
    slot = draw_slot(quota_size=3, opens_in=30 * 60)
    from queueing.services import bypass

    _token, raw = bypass.issue("QA", expires_at=timezone.now() + datetime.timedelta(hours=1), slot=slot)
    client = token_client(make_user())
    response = client.post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert (response.status_code, response.json()["code"]) == (202, "entered")
    client.post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    limited = client.post("/api/war", war_body(slot), format="json", HTTP_X_WAR_BYPASS=raw)
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")


def test_entry_refusals_nik_required_one_per_day_and_rate_limited_write_nothing(settings):
    slot = draw_slot(quota_size=3)
    no_nik = token_client(make_user(nik=None)).post("/api/war", war_body(slot), format="json")
    assert (no_nik.status_code, no_nik.json()["code"]) == (403, "nik_required")

    holder = make_user()
    other = make_slot(quota_size=3, label="15:00", date=slot.date)
    assert token_client(holder).post("/api/war", war_body(other), format="json").status_code == 201
    held = token_client(holder).post("/api/war", war_body(slot), format="json")
    assert (held.status_code, held.json()["code"]) == (409, "one_per_day")
    assert held.json()["ticket"]["slot_id"] == other.pk

    settings.WAR_RATE_LIMIT_USER = 2
    client = token_client(make_user())
    codes = [client.post("/api/war", war_body(slot), format="json").status_code for _ in range(3)]
    assert codes == [202, 202, 429]
    assert DrawEntry.objects.count() == 1


# --- After the draw, over HTTP --------------------------------------------------------------------


def test_after_the_draw_winners_hold_their_ticket_the_rest_learn_their_waiting_list_place():
    slot = draw_slot(quota_size=2)
    buyers = [make_user() for _ in range(4)]
    clients = [token_client(b) for b in buyers]
    for client in clients:
        assert client.post("/api/war", war_body(slot), format="json").status_code == 202
    reach_draw_time(slot)
    pending = clients[0].post("/api/war", war_body(slot), format="json")
    assert (pending.status_code, pending.json()["code"]) == (503, "not_ready")
    draws.run_draw(slot.pk)

    entries = {e.user_id: e for e in DrawEntry.objects.filter(slot=slot)}
    for buyer, client in zip(buyers, clients, strict=True):
        response = client.post("/api/war", war_body(slot), format="json")
        entry = entries[buyer.pk]
        if entry.outcome == "won":
            assert (response.status_code, response.json()["code"]) == (200, "already_reserved")
            assert response.json()["ticket"]["code"] == entry.ticket.code
            mine = client.get("/api/tickets").json()
            assert [(t["code"], t["draw_pseudonym"]) for t in mine] == [(entry.ticket.code, entry.pseudonym)]
        else:
            assert (response.status_code, response.json()["code"]) == (409, "not_drawn")
            assert response.json()["waitlist_position"] == entry.waitlist_position
            assert response.json()["pseudonym"] == entry.pseudonym
    outsider = token_client(make_user()).post("/api/war", war_body(slot), format="json")
    assert (outsider.status_code, outsider.json()["code"]) == (409, "sold_out")


def test_seats_the_draw_left_free_go_first_come_first_served():
    slot = draw_slot(quota_size=3)
    entrant = make_user()
    assert token_client(entrant).post("/api/war", war_body(slot), format="json").status_code == 202
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    late = token_client(make_user()).post("/api/war", war_body(slot), format="json")
    assert (late.status_code, late.json()["code"]) == (201, "reserved")
    assert late.json()["ticket"]["queue_number"] == 2
    assert Ticket.objects.filter(slot=slot).count() == 2


def test_the_draw_record_is_public_commitment_first_seed_after():
    slot = draw_slot(quota_size=1)
    client = token_client(make_user())
    client.post("/api/war", war_body(slot), format="json")
    anonymous = token_client(make_user())
    anonymous.credentials()
    before = anonymous.get(f"/api/slots/{slot.pk}/draw")
    assert before.status_code == 200
    record = before.json()
    assert record["seed"] is None and record["drawn_at"] is None
    assert record["commitment"] == Draw.objects.get(slot=slot).commitment
    assert [e["position"] for e in record["entrants"]] == [None]
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    after = anonymous.get(f"/api/slots/{slot.pk}/draw").json()
    assert draws.commitment_of(after["seed"]) == record["commitment"]
    assert after["entrants"] == [{"pseudonym": record["entrants"][0]["pseudonym"], "position": 1, "outcome": "won"}]
    assert draws.verify(after) == []
    fcfs = make_slot(label="16:00")
    assert anonymous.get(f"/api/slots/{fcfs.pk}/draw").status_code == 404
    # The slot itself says it is a draw slot and when it draws (null for first come, first served).
    listed = anonymous.get(f"/api/slots/{slot.pk}").json()
    assert listed["allocation"] == "draw"
    assert datetime.datetime.fromisoformat(listed["draw_at"]) == slot.draw_at
    assert datetime.datetime.fromisoformat(listed["entry_opens_at"]) == slot.entry_opens_at
    assert anonymous.get(f"/api/slots/{fcfs.pk}").json()["draw_at"] is None
    assert anonymous.get("/api/slots/999999/draw").json()["code"] == "not_found"


# --- Who draws, on time ------------------------------------------------------------------------------


def test_the_due_check_costs_no_postgresql_query_until_a_draw_is_due(django_assert_num_queries):
    slot = draw_slot(quota_size=2)
    enter(people(1)[0], slot)
    draws._refs = (float("-inf"), [])
    with django_assert_num_queries(0):
        assert draws.run_due() == []
    reach_draw_time(slot)
    draws._refs = (float("-inf"), [])
    assert draws.run_due() == [slot.pk]
    assert Ticket.objects.filter(slot=slot).count() == 1
    with django_assert_num_queries(0):
        assert draws.run_due() == []  # drawn: Redis says so


# --- The waiting list --------------------------------------------------------------------------------


def test_a_cancelled_seat_goes_to_the_first_eligible_entrant_on_the_waiting_list():
    slot = draw_slot(quota_size=1)
    entrants = people(3)
    for principal in entrants:
        enter(principal, slot)
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    winner = DrawEntry.objects.get(slot=slot, outcome="won")
    first, second = DrawEntry.objects.filter(slot=slot, outcome="waiting").order_by("waitlist_position")
    # The first on the list took a first-come ticket elsewhere that day meanwhile: they are passed over.
    other = make_slot(quota_size=3, label="15:00", date=slot.date)
    by_id = {p.id: p for p in entrants}
    reservations.reserve(by_id[first.user_id], other.location.slug, "15:00", other.date, client_ip="10.9.9.9")

    announced = []

    def listen(sender, code, **kwargs):
        announced.append(code)

    events.reserved.connect(listen)
    try:
        result = reservations.cancel(winner.user_id, winner.ticket.code)
    finally:
        events.reserved.disconnect(listen)

    promoted = Ticket.objects.get(slot=slot, status="active")
    assert (promoted.user_id, promoted.queue_number) == (second.user_id, 1)
    assert announced == [promoted.code]  # the page's socket and Telegram hear of it like any reservation
    # What the Telegram task does with that event: one message for the promoted buyer, with their number.
    TelegramLink.objects.create(user_id=promoted.user_id, chat_id=987654321)
    notification = Notification.objects.get(pk=notify.record_ticket_event("ticket_reserved", promoted.code))
    assert notification.user_id == promoted.user_id
    assert promoted.code in messages.render(notification, "id")
    assert result.remaining == 0
    outcomes = dict(DrawEntry.objects.filter(slot=slot).values_list("user_id", "outcome"))
    assert outcomes[first.user_id] == "skipped" and outcomes[second.user_id] == "promoted"
    keys = slot_keys(slot.pk, slot.war_day)
    holders = get_redis().hgetall(keys.holders)
    assert list(holders) == [str(second.user_id)]
    assert holders[str(second.user_id)].split("|")[:2] == ["1", promoted.code]
    assert not get_redis().hexists(keys.waitlist, second.person)
    call_command("reconcile", grace_ms=0)
    # The promoted buyer's war request now answers with their ticket.
    assert enter(by_id[second.user_id], slot).code == promoted.code


# --- A process killed mid-draw -------------------------------------------------------------------------


def kill_draw(slot: Slot, fault: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "draw", str(slot.pk), "--fault", fault],
        env=server_env(WAR_FAULT_INJECTION="1"),
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == -9, proc.stderr.decode()


@pytest.mark.django_db(transaction=True)
def test_a_draw_killed_before_its_commit_is_redrawn_once_by_a_late_war_request():
    slot = draw_slot(quota_size=3)
    buyers = [make_user() for _ in range(5)]
    tokens = [ApiToken.issue(b) for b in buyers]
    for buyer in buyers:
        assert token_client(buyer).post("/api/war", war_body(slot), format="json").status_code == 202
    reach_draw_time(slot)
    kill_draw(slot, "kill-before-commit")
    assert not Ticket.objects.exists()
    assert not Draw.objects.get(slot=slot).is_drawn
    assert redis_slot(slot)["draw"] != "done"

    with web_server(workers=1, WAR_RATE_LIMIT_USER="0") as base:
        # The killed run's Redis lock lapses within seconds; meanwhile requests answer not_ready, and
        # each kicks the draw. Nobody hears "reserved" while no row exists.
        def answered():
            status, body = post_war(base, tokens[0], slot)
            if status == 503:
                assert body["code"] == "not_ready", body
                return None
            return status, body

        status, body = poll(answered, timeout=30, interval=0.3, message="the draw to be made")
    assert Ticket.objects.filter(slot=slot).count() == 3, (status, body)
    entry = DrawEntry.objects.get(slot=slot, user=buyers[0])
    if entry.outcome == "won":
        assert (status, body["ticket"]["code"]) == (200, entry.ticket.code)
    else:
        assert (status, body["waitlist_position"]) == (409, entry.waitlist_position)
    assert draws.run_draw(slot.pk).committed is False
    assert Ticket.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_a_draw_killed_between_commit_and_redis_is_applied_from_postgresql_by_the_rerun():
    slot = draw_slot(quota_size=2)
    entrants = people(4)
    for principal in entrants:
        enter(principal, slot)
    reach_draw_time(slot)
    kill_draw(slot, "kill-after-commit")
    tickets = set(Ticket.objects.filter(slot=slot).values_list("code", flat=True))
    assert len(tickets) == 2  # committed in PostgreSQL...
    assert redis_slot(slot)["draw"] != "done"  # ...not in Redis: the slot still refuses everyone
    winner = DrawEntry.objects.filter(slot=slot, outcome="won").first()
    by_id = {p.id: p for p in entrants}
    assert refusal(by_id[winner.user_id], slot).code == "not_ready"

    run = poll(lambda: draws.run_draw(slot.pk), timeout=15, interval=0.2, message="the lock to lapse")
    assert (run.committed, run.applied) == (False, True)
    assert set(Ticket.objects.filter(slot=slot).values_list("code", flat=True)) == tickets
    assert enter(by_id[winner.user_id], slot).code == winner.ticket.code
    call_command("reconcile", grace_ms=0)


@pytest.mark.django_db(transaction=True)
def test_live_quota_draws_a_slot_when_its_draw_time_comes():
    slot = draw_slot(quota_size=2, opens_in=-6)  # the draw is 4 s away
    entrants = people(3)
    for principal in entrants:
        enter(principal, slot)
    with live_quota_process():
        drawn = poll(
            lambda: redis_slot(slot).get("draw") == "done", timeout=30, interval=0.1, message="the draw by live_quota"
        )
    assert drawn
    draw = Draw.objects.get(slot=slot)
    assert draw.drawn_at >= slot.draw_at  # never before its time
    assert (draw.entrants, draw.winners, draw.waiting) == (3, 2, 1)
    assert Ticket.objects.filter(slot=slot).count() == 2


@pytest.mark.django_db(transaction=True)
def test_the_verify_snippet_of_docs_and_page_checks_a_live_draw_and_catches_a_changed_seed():
    assert draws.VERIFY_SNIPPET in (ROOT / "docs" / "fairness.md").read_text()
    slot = draw_slot(quota_size=2)
    for principal in people(4):
        enter(principal, slot)
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    with web_server(workers=1) as base:
        snippet = draws.verify_snippet(f"{base}/api/slots/{slot.pk}/draw")
        page = requests.get(f"{base}/draw/{slot.pk}/", timeout=10)
        assert page.status_code == 200
        assert html.escape(snippet) in page.text
        assert Draw.objects.get(slot=slot).seed in page.text
        checked = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
        assert (checked.returncode, checked.stdout.strip()) == (0, "draw verified: 4 entrants"), checked.stderr
        call_command("verify_draw", slot.pk, url=base)

        Draw.objects.filter(slot=slot).update(seed=draws.new_seed())  # a seed other than the committed one
        tampered = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
        assert tampered.returncode != 0 and "commitment" in tampered.stderr
        with pytest.raises(SystemExit) as failed:
            call_command("verify_draw", slot.pk, url=base)
        assert failed.value.code == 1
        assert requests.get(f"{base}/draw/{make_slot(label='16:00').pk}/", timeout=10).status_code == 404


def test_staff_make_a_slot_a_draw_slot_in_the_admin_and_see_its_commitment_not_its_seed(
    client, django_capture_on_commit_callbacks
):
    slot = make_slot(quota_size=5, opens_in=600, label="17:00")  # entries open 15 min before
    client.force_login(make_user(is_staff=True, is_superuser=True))
    form = admin_slot_form(slot, allocation="draw", draw_grace_seconds="20")
    with django_capture_on_commit_callbacks(execute=True):  # the edit reaches Redis after its commit
        response = client.post(f"/admin/queueing/slot/{slot.pk}/change/", form)
    assert response.status_code == 302, response.content[:2000]
    slot.refresh_from_db()
    assert (slot.allocation, slot.draw_grace_seconds) == ("draw", 20)
    draw = Draw.objects.get(slot=slot)
    assert redis_slot(slot)["draw"] == str(int(slot.draw_at.timestamp() * 1000))
    assert catalog.by_id(slot.pk).allocation == "draw"
    page = client.get(f"/admin/queueing/slot/{slot.pk}/change/").content.decode()
    assert draw.commitment in page and draw.seed not in page

    # Once someone entered, the slot stays a draw slot; once drawn, its times stay (the record says them).
    enter(people(1)[0], slot)
    refused = client.post(f"/admin/queueing/slot/{slot.pk}/change/", {**form, "allocation": "fcfs"})
    assert refused.status_code == 200 and "sudah punya peserta" in refused.content.decode()
    assert Slot.objects.get(pk=slot.pk).allocation == "draw"
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    refused = client.post(f"/admin/queueing/slot/{slot.pk}/change/", {**form, "draw_grace_seconds": "30"})
    assert refused.status_code == 200 and "sudah ditarik" in refused.content.decode()


def test_seed_demo_adds_a_draw_war_taking_entries_and_keeps_the_readme_war_first_come(settings):
    settings.DEBUG = True
    out = io.StringIO()
    call_command("seed_demo", "--demo-draw-in", "120", stdout=out)
    call_command("sync_quota", stdout=io.StringIO())  # on_commit does not fire inside a test transaction
    draw_war = Slot.objects.get(allocation="draw")
    assert f"/draw/{draw_war.pk}/" in out.getvalue()
    assert not Slot.objects.filter(location__slug="graha-dipta", allocation="draw").exists()
    assert Draw.objects.filter(slot=draw_war, drawn_at__isnull=True).exists()
    client = token_client(make_user())
    body = {"location_id": "setiabudi-one", "time_slot": "13:00", "date": draw_war.date.isoformat()}
    # The demo draw war asks for a proof of work; the README's first-come war does not.
    assert draw_war.challenge == Challenge.ON
    assert not Slot.objects.filter(location__slug="graha-dipta", time_label="10:00").exclude(challenge="off").exists()
    assert client.post("/api/war", body, format="json").json()["code"] == "challenge_required"
    proof = solve(client.get(f"/api/challenge?slot={draw_war.pk}").json())
    entry = client.post("/api/war", body, format="json", HTTP_X_ALTCHA=proof)
    assert (entry.status_code, entry.json()["code"]) == (202, "entered")
    call_command("seed_demo", stdout=io.StringIO())  # idempotent: still one draw war, still undrawn
    assert Slot.objects.filter(allocation="draw").count() == 1


def test_the_war_room_shows_entrants_then_the_draws_figures():
    slot = draw_slot(quota_size=1)
    for principal in people(3):
        enter(principal, slot)
    [before] = warroom.Sampler(slot_ids=[slot.pk]).sample()["slots"]
    assert before["draw"] == {
        "entrants": 3,
        "waiting": 0,
        "drawn": False,
        "duration_ms": None,
        "draw_at_to_committed_ms": None,
    }
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    [after] = warroom.Sampler(slot_ids=[slot.pk]).sample()["slots"]
    draw = Draw.objects.get(slot=slot)
    assert after["draw"] == {
        "entrants": 3,
        "waiting": 2,
        "drawn": True,
        "duration_ms": draw.duration_ms,
        "draw_at_to_committed_ms": draw.lag_ms,
    }
    [fcfs] = warroom.Sampler(slot_ids=[make_slot(label="16:00").pk]).sample()["slots"]
    assert fcfs["draw"] is None


def test_an_entry_admitted_just_before_draw_at_but_written_after_the_draw_is_refused_not_lost():
    slot = draw_slot(quota_size=1)
    early, late = people(2)
    enter(early, slot)
    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    # enter.lua said "entered" a moment before draw_at; the PostgreSQL write comes after the draw froze the list.
    with pytest.raises(ReservationError) as refused:
        draws.record_entry(late, catalog.by_id(slot.pk), clock.redis_now_ms())
    assert (refused.value.code, refused.value.retry_after) == ("not_ready", 1)
    assert not DrawEntry.objects.filter(user_id=late.id).exists()


@pytest.mark.django_db(transaction=True)  # the task starts on a fresh connection, as in a worker
def test_the_celery_backstop_draws_a_due_slot():
    slot = draw_slot(quota_size=1)
    enter(people(1)[0], slot)
    reach_draw_time(slot)
    draws._refs = (float("-inf"), [])
    assert tasks.draws_task() == [slot.pk]
    assert redis_slot(slot)["draw"] == "done"


@pytest.mark.django_db(transaction=True)
def test_a_winner_whose_other_ticket_commits_during_the_draw_makes_it_draw_again_and_skip_them():
    # A first-come ticket elsewhere that day, committed by another connection between the draw's look at the
    # day's tickets and its INSERT: one per day holds in PostgreSQL, the draw rolls back and draws again.
    slot = draw_slot(quota_size=3)
    other = make_slot(quota_size=3, label="15:00", date=slot.date)
    entrants = people(3)
    for principal in entrants:
        enter(principal, slot)
    reach_draw_time(slot)
    sneaky = entrants[0]
    inserts = []

    def first_come_elsewhere():
        try:
            reservations.reserve(sneaky, other.location.slug, "15:00", other.date, client_ip="10.8.8.8")
        finally:
            connection.close()  # this thread's own connection

    def other_ticket_first(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "queueing_ticket"') and not inserts:
            inserts.append(sql)
            thread = threading.Thread(target=first_come_elsewhere)
            thread.start()
            thread.join()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(other_ticket_first):
        run = draws.run_draw(slot.pk)
    assert run.committed and inserts
    assert Ticket.objects.filter(user_id=sneaky.id, slot=other).exists()
    outcomes = dict(DrawEntry.objects.filter(slot=slot).values_list("user_id", "outcome"))
    assert outcomes[sneaky.id] == "skipped"
    assert Ticket.objects.filter(slot=slot).count() == 2
    assert sorted(Ticket.objects.filter(slot=slot).values_list("queue_number", flat=True)) == [1, 2]


def test_a_slot_made_a_draw_slot_behind_the_services_back_is_fenced_by_the_sweep():
    slot = make_slot(quota_size=3, opens_in=600, label="17:00")
    Slot.objects.filter(pk=slot.pk).update(allocation=Allocation.DRAW)  # no signal, no service
    slot.refresh_from_db()
    assert "draw" not in redis_slot(slot)
    assert heal.finish_pending_edits() == [slot.pk]
    assert redis_slot(slot)["draw"] == str(int(slot.draw_at.timestamp() * 1000))
    assert heal.finish_pending_edits() == []  # settled
    assert enter(people(1)[0], slot).outcome == "entered"  # the catalog knows it too; the Draw row is lazy


@pytest.fixture
def postgres_refuses_entries(transactional_db):
    """A real failure of the entry INSERT, as a full disk or a lost primary would cause."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE queueing_drawentry ADD CONSTRAINT test_refuse_all CHECK (id < 0) NOT VALID")
    yield
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE queueing_drawentry DROP CONSTRAINT test_refuse_all")


@pytest.mark.django_db(transaction=True)
def test_an_entry_postgresql_cannot_write_answers_503_never_202(postgres_refuses_entries):
    slot = draw_slot(quota_size=2)
    response = token_client(make_user()).post("/api/war", war_body(slot), format="json")
    assert (response.status_code, response.json()["code"]) == (503, "unavailable")
    assert int(response["Retry-After"]) >= 1
    assert not DrawEntry.objects.exists()


def test_an_entry_with_redis_down_answers_503(settings):
    slot = draw_slot(quota_size=2)
    client = token_client(make_user())
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection
    reset_redis()
    response = client.post("/api/war", war_body(slot), format="json")
    assert (response.status_code, response.json()["code"]) == (503, "unavailable")
    assert int(response["Retry-After"]) >= 1
    assert not DrawEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_processes_drawing_at_once_draw_once():
    slot = draw_slot(quota_size=2)
    for principal in people(5):
        enter(principal, slot)
    reach_draw_time(slot)
    command = [sys.executable, str(ROOT / "manage.py"), "draw", str(slot.pk)]
    procs = [
        subprocess.Popen(command, env=server_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    drawn = [out for out, _err in outputs if ": drawn;" in out]
    assert len(drawn) == 1, outputs  # the others found it drawn, or another process at it
    assert Ticket.objects.filter(slot=slot).count() == 2
    assert Draw.objects.get(slot=slot).winners == 2
    assert redis_slot(slot)["draw"] == "done"


def test_entry_refusals_make_zero_postgresql_queries(django_assert_num_queries, settings):
    early = draw_slot(quota_size=2, opens_in=30 * 60)
    principal = people(1)[0]
    with django_assert_num_queries(0):
        assert refusal(principal, early).code == "too_early"
    settings.WAR_RATE_LIMIT_USER = 2  # the attempt above counted (same war day)
    slot = draw_slot(quota_size=2, label="12:00")
    enter(principal, slot)
    with django_assert_num_queries(0):
        assert refusal(principal, slot).code == "rate_limited"


def test_a_draw_entry_on_a_challenge_slot_spends_its_proof_once_and_one_after_the_draw_reaches_reserve():
    """Entries pay the slot's proof of work like war attempts: one solution, one attempt (enter.lua spends it).

    The entry script hands an attempt at or after the draw time on to reserve.lua unspent: otherwise the
    first attempt after the draw would be refused as a replay of itself.
    """
    slot = draw_slot(quota_size=1)
    Slot.objects.filter(pk=slot.pk).update(challenge=Challenge.ON)
    catalog.rebuild()
    client = token_client(make_user())

    def proof() -> str:
        return solve(client.get(f"/api/challenge?slot={slot.pk}").json())

    assert client.post("/api/war", war_body(slot), format="json").json()["code"] == "challenge_required"
    assert not DrawEntry.objects.filter(slot=slot).exists()
    first = proof()
    entered = client.post("/api/war", war_body(slot), format="json", HTTP_X_ALTCHA=first)
    assert (entered.status_code, entered.json()["code"]) == (202, "entered")
    replay = client.post("/api/war", war_body(slot), format="json", HTTP_X_ALTCHA=first)
    assert (replay.status_code, replay.json()["code"]) == (403, "challenge_invalid")

    reach_draw_time(slot)
    draws.run_draw(slot.pk)
    result = client.post("/api/war", war_body(slot), format="json", HTTP_X_ALTCHA=proof())
    assert (result.status_code, result.json()["code"]) == (200, "already_reserved"), result.json()
    assert result.json()["ticket"]["queue_number"] == 1


def test_entrants_on_the_waiting_list_hear_their_place_on_telegram_once(django_capture_on_commit_callbacks):
    slot = draw_slot(quota_size=1)
    entrants = people(3)
    for principal in entrants:
        enter(principal, slot)
    for principal in entrants[:2]:  # the third never linked Telegram
        TelegramLink.objects.create(user_id=principal.id, chat_id=1000 + principal.id)
    reach_draw_time(slot)
    drawn = []
    events.drawn.connect(listen := lambda sender, slot_id, **kw: drawn.append(slot_id))
    try:
        with django_capture_on_commit_callbacks() as queued:
            draws.run_draw(slot.pk)
            draws.run_draw(slot.pk)  # nothing new: no second announcement
    finally:
        events.drawn.disconnect(listen)
    assert drawn == [slot.pk]
    # The notifications app hands it to Celery after the commit, by the task's registered name.
    assert [(cb.args, cb.func.__name__) for cb in queued if "draw_result" in repr(cb)] == [
        (("notifications.draw_result", slot.pk), "_send_task")
    ]

    waiting = DrawEntry.objects.filter(
        slot=slot, outcome=DrawEntry.Outcome.WAITING, user_id__in=[p.id for p in entrants[:2]]
    )
    ids = tasks_draw_result_ids = notify.record_draw_waiting(slot.pk)
    assert len(ids) == waiting.count() and notify.record_draw_waiting(slot.pk) == []  # once per entrant
    for notification in Notification.objects.filter(pk__in=tasks_draw_result_ids):
        entry = DrawEntry.objects.get(slot=slot, user_id=notification.user_id)
        text = messages.render(notification, "id")
        assert f"#{entry.waitlist_position}" in text and entry.pseudonym in text
    # Promoted (or withdrawn) before the message went out: it is skipped, not sent stale.
    notification = Notification.objects.get(pk=ids[0])
    DrawEntry.objects.filter(slot=slot, user_id=notification.user_id).update(outcome=DrawEntry.Outcome.PROMOTED)
    with pytest.raises(messages.Gone):
        messages.render(notification, "id")


def test_a_waiting_entrant_hears_their_place_in_one_round_trip_and_no_query(
    settings, tmp_path, django_assert_num_queries
):
    """The refusal a drawn war answers most (a loser pressing again) costs what any refusal costs."""
    from queueing.tests.test_war_pow import monitored, name
    from tests.private_redis import PrivateRedis
    from wartiket.tests.faults import point_app_at

    with PrivateRedis(tmp_path / "redis") as server:
        point_app_at(settings, server.url())
        catalog._local.clear()
        heal.mark_built()
        slot = draw_slot(quota_size=1)
        entrants = people(2)
        for principal in entrants:
            enter(principal, slot)
        # Well past the draw time, so the attempt goes straight to reserve.lua (no entry script first).
        Slot.objects.filter(pk=slot.pk).update(war_opens_at=clock.redis_now() - datetime.timedelta(seconds=30))
        slot.refresh_from_db()
        quota.sync_all([slot])
        catalog.rebuild()
        draws.run_draw(slot.pk)
        loser = next(p for p in entrants if DrawEntry.objects.get(slot=slot, user_id=p.id).outcome == "waiting")
        refusal(loser, slot)  # warm: the script loaded, the catalog cached
        with monitored(server) as seen, django_assert_num_queries(0):
            refused = refusal(loser, slot)
        assert (refused.code, refused.data["waitlist_position"]) == ("not_drawn", 1)
        sent = [name(c["command"]) for c in seen if c.get("client_type") != "lua"]
        # HELLO: the handshake of the client that ends the MONITOR, not the attempt's.
        assert [c for c in sent if c != "HELLO"] == [f"EVALSHA {store.script('reserve').sha}"], sent
