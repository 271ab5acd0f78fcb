"""Abuse signals for staff, and switching an account off (its tickets cancelled, its seats freed, its token dead)."""

from __future__ import annotations

import datetime

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.services import abuse
from accounts.validators import make_nik
from queueing.models import Allocation, DrawEntry, Slot, Ticket
from queueing.services import catalog, clock, draws, quota
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user, war_body
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db

BORN = datetime.date(1991, 7, 9)


def staff_client() -> Client:
    client = Client()
    client.force_login(make_user(is_staff=True, is_superuser=True))
    return client


def test_the_signals_page_lists_shared_phones_same_person_accounts_and_busy_registering_addresses():
    # One person, five accounts: same name and birthday, NIK serials made up, one with the day + 40 (the
    # women's format, folded back to the same date) and one with another region code and the name retyped.
    for serial in (11, 12, 13):
        make_user(full_name="Joko Susilo", nik=make_nik(serial, birth=BORN), phone="", registered_ip="182.1.1.1")
    make_user(full_name="Joko Susilo", nik=make_nik(14, birth=BORN, female=True), phone="")
    make_user(full_name="joko susilo ", nik=make_nik(15, birth=BORN, region="327301"), phone="")  # case, space
    make_user(full_name="Joko Susilo", nik=make_nik(16, birth=BORN.replace(year=1992)), phone="")  # other year: no
    # Two accounts on one phone number.
    make_user(email="a.phone@example.com", phone="081299990000")
    make_user(email="b.phone@example.com", phone="081299990000")
    make_user(email="c.phone@example.com", phone="081299990001")

    page = staff_client().get(reverse("staff:abuse"))
    assert page.status_code == 200
    people = page.context["people"]
    assert len(people) == 1
    assert people[0].label == "joko susilo · 09-07-91"
    assert sorted(a["nik"][-4:] for a in people[0].accounts) == ["0011", "0012", "0013", "0014", "0015"]
    phones = page.context["phones"]
    assert [(g.label, sorted(a["email"] for a in g.accounts)) for g in phones] == [
        ("081299990000", ["a.phone@example.com", "b.phone@example.com"])
    ]
    by_ip = page.context["by_ip"]
    assert (by_ip[0]["registered_ip"], by_ip[0]["accounts"]) == ("182.1.1.1", 3)
    html = page.content.decode()
    assert "182.1.1.1" in html and "a.phone@example.com" in html and "joko susilo · 09-07-91" in html


def test_the_signals_page_is_for_staff_only():
    url = reverse("staff:abuse")
    assert Client().get(url).status_code == 302
    buyer = Client()
    buyer.force_login(make_user())
    assert buyer.get(url).status_code == 403
    target = make_user()
    assert buyer.post(reverse("staff:abuse-disable", args=[target.pk])).status_code == 403
    assert User.objects.get(pk=target.pk).is_active


def test_disabling_an_account_cancels_its_tickets_frees_the_seats_and_its_token_stops_at_once():
    slot = make_slot(quota_size=3)
    other_day = make_slot(quota_size=3, location="butik-lain", date=slot.date + datetime.timedelta(days=1))
    bot = make_user()
    raw = ApiToken.issue(bot)
    api = APIClient(HTTP_AUTHORIZATION=f"Token {raw}")
    assert api.post("/api/war", war_body(slot), format="json").status_code == 201
    assert api.post("/api/war", war_body(other_day, date=other_day.date.isoformat()), format="json").status_code == 201
    assert quota.remaining_for([slot, other_day]) == {slot.pk: 2, other_day.pk: 2}
    # The token is now in the war endpoint's Redis identity cache: disabling must drop it there too.
    assert api.post("/api/war", war_body(slot), format="json").status_code == 200

    response = staff_client().post(reverse("staff:abuse-disable", args=[bot.pk]))
    assert response.status_code == 302

    assert not User.objects.get(pk=bot.pk).is_active
    assert set(Ticket.objects.filter(user=bot).values_list("status", flat=True)) == {"cancelled"}
    assert quota.remaining_for([slot, other_day]) == {slot.pk: 3, other_day.pk: 3}
    war = api.post("/api/war", war_body(slot), format="json")
    assert (war.status_code, war.json()["code"]) == (401, "not_authenticated")
    assert api.get("/api/tickets").status_code == 401
    # The freed seat goes to the next honest buyer.
    honest = APIClient(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(make_user())}")
    assert honest.post("/api/war", war_body(slot), format="json").json()["ticket"]["queue_number"] == 1


def test_the_admin_action_disables_the_selected_accounts_the_same_way():
    slot = make_slot(quota_size=2)
    bots = [make_user(), make_user()]
    for bot in bots:
        client = APIClient(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(bot)}")
        assert client.post("/api/war", war_body(slot), format="json").status_code == 201
    keep = make_user()
    response = staff_client().post(
        reverse("admin:accounts_user_changelist"),
        {"action": "disable_accounts", "_selected_action": [b.pk for b in bots]},
    )
    assert response.status_code == 302
    assert list(User.objects.filter(is_active=False).order_by("pk")) == bots
    assert User.objects.get(pk=keep.pk).is_active
    assert quota.remaining_for([slot]) == {slot.pk: 2}
    assert not Ticket.objects.filter(status="active").exists()


def draw_war(quota_size: int) -> Slot:
    slot = make_slot(quota_size=quota_size, opens_in=120)
    slot.allocation = Allocation.DRAW
    slot.save()
    quota.sync_all([slot])
    catalog.rebuild()
    return slot


def test_draw_entries_per_address_are_listed_for_staff():
    slot = draw_war(5)
    for _ in range(3):
        client = APIClient(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(make_user())}", REMOTE_ADDR="198.51.100.7")
        assert client.post("/api/war", war_body(slot), format="json").status_code == 202
    lone = APIClient(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(make_user())}", REMOTE_ADDR="198.51.100.99")
    assert lone.post("/api/war", war_body(slot), format="json").status_code == 202

    rows = abuse.entries_by_ip()
    assert [(r["client_ip"], r["entries"]) for r in rows] == [("198.51.100.7", 3), ("198.51.100.99", 1)]
    page = staff_client().get(reverse("staff:abuse"))
    table = page.content.decode().split('data-testid="abuse-entries-by-ip"')[1].split("</table>")[0]
    assert "198.51.100.7" in table and ">3<" in table


def test_disabling_an_entrant_withdraws_its_entry_before_the_draw_and_its_waiting_place_after():
    slot = draw_war(1)
    bot, waiting_bot, honest = make_user(), make_user(), make_user()
    clients = {u.pk: APIClient(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(u)}") for u in (bot, waiting_bot, honest)}
    for client in clients.values():
        assert client.post("/api/war", war_body(slot), format="json").status_code == 202

    # Before the draw: the entry is gone, in PostgreSQL and from Redis' entrant count.
    abuse.disable(bot)
    assert not DrawEntry.objects.filter(user=bot).exists()
    assert get_redis().scard(slot_keys(slot.pk, slot.war_day).entrants) == 2

    Slot.objects.filter(pk=slot.pk).update(war_opens_at=clock.redis_now() - datetime.timedelta(seconds=11))
    slot.refresh_from_db()
    quota.sync_all([slot])
    draws.run_draw(slot.pk)
    assert draws.verify(draws.published(slot)) == []
    winner = DrawEntry.objects.get(slot=slot, outcome=DrawEntry.Outcome.WON)
    loser = DrawEntry.objects.get(slot=slot, outcome=DrawEntry.Outcome.WAITING)

    # After the draw: the waiting place is withdrawn (the record still verifies) and promotion passes it by.
    abuse.disable(loser.user)
    loser.refresh_from_db()
    assert loser.outcome == DrawEntry.Outcome.WITHDRAWN
    assert draws.verify(draws.published(slot)) == []
    assert not get_redis().hexists(slot_keys(slot.pk, slot.war_day).waitlist, loser.person)
    abuse.disable(winner.user)
    assert not Ticket.objects.filter(slot=slot, status=Ticket.Status.ACTIVE).exists()
    assert quota.remaining_for([slot]) == {slot.pk: 1}
