"""Which slots each caller sees: ``SlotQuerySet.visible/resolvable/upcoming/closing_after`` (queueing/models.py)."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from queueing.models import KEEP_AFTER_CLOSE, Location, Slot
from queueing.services import catalog, quota
from tests.factory import make_slot, make_user, token_client, war_body

pytestmark = pytest.mark.django_db

JAKARTA = datetime.timezone(datetime.timedelta(hours=7))


def test_closing_after_in_sql_agrees_with_the_closes_at_property_at_every_edge():
    place = Location.objects.create(slug="tepi", name="Tepi")
    moment = datetime.datetime(2031, 5, 10, 10, 0, 30, tzinfo=JAKARTA)
    opens = moment - datetime.timedelta(days=5)
    # Starts around the moment (same minute, a minute either side, midnight either side), and explicit
    # closes a microsecond either side of it.
    starts = [("2031-05-10", label) for label in ("09:59", "10:00", "10:01", "00:00", "23:59")]
    starts += [("2031-05-09", "23:59"), ("2031-05-11", "00:00")]
    for date, label in starts:
        Slot.objects.create(location=place, date=date, time_label=label, quota=1, war_opens_at=opens)
    for label, delta in (("08:00", -1), ("08:01", 0), ("08:02", 1)):
        Slot.objects.create(
            location=place,
            date="2031-05-12",
            time_label=label,
            quota=1,
            war_opens_at=opens,
            war_closes_at=moment + datetime.timedelta(microseconds=delta),
        )
    everything = list(Slot.objects.all())
    for probe in (moment, moment.replace(second=0), moment - datetime.timedelta(minutes=1), moment.replace(hour=0)):
        expected = {s.pk for s in everything if s.closes_at > probe}
        assert {s.pk for s in Slot.objects.closing_after(probe)} == expected, probe
        assert 0 < len(expected) < len(everything), probe  # the probe really splits the slots


def test_upcoming_keeps_a_war_for_the_catalogs_window_after_it_closed():
    now = timezone.now()
    recent = make_slot(opens_in=-7200, closes_in=-3600, label="08:00")
    old = make_slot(opens_in=-86400 * 4, closes_in=-(KEEP_AFTER_CLOSE.total_seconds() + 60), label="09:00")
    ahead = make_slot(opens_in=600, label="10:00")
    assert set(Slot.objects.upcoming(now)) == {recent, ahead}
    assert {s.pk for s in quota.upcoming_slots()} == {recent.pk, ahead.pk}
    assert old.pk not in {s["id"] for s in APIClient().get("/api/slots").json()}


def test_a_deactivated_boutique_is_gone_from_the_slots_api_and_the_war_api_but_kept_in_redis():
    kept = make_slot(opens_in=600, location="graha-dipta")
    closed_down = make_slot(opens_in=-30, location="tutup", label="13:00")
    listed = {item["id"] for item in APIClient().get("/api/slots").json()}
    assert {kept.pk, closed_down.pk} <= listed  # negative control: both are listed while active

    place = closed_down.location
    place.active = False
    place.save()  # the catalog follows after commit (queueing/signals.py)
    catalog.rebuild()  # (the test's transaction never commits)

    listed = {item["id"] for item in APIClient().get("/api/slots").json()}
    assert kept.pk in listed and closed_down.pk not in listed
    assert APIClient().get(f"/api/slots/{closed_down.pk}").status_code == 404
    response = token_client(make_user()).post("/api/war", war_body(closed_down), format="json")
    assert (response.status_code, response.json()["code"]) == (404, "unknown_slot")
    # Heal and reconcile still look after its Redis state: its tickets still exist.
    assert closed_down.pk in {s.pk for s in quota.upcoming_slots()}


def test_the_war_api_resolves_rehearsal_slots_which_buyers_never_see():
    from queueing.services import rehearsal

    drill = rehearsal.open_in(rehearsal.create_slot(5), -30)
    catalog.rebuild()
    assert list(Slot.objects.resolvable().filter(pk=drill.pk)) == [drill]
    assert not Slot.objects.visible().filter(pk=drill.pk).exists()
    assert catalog.by_id(drill.pk) is not None
    response = token_client(make_user()).post("/api/war", war_body(drill), format="json")
    assert response.status_code == 201, response.json()
