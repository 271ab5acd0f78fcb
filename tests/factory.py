"""Test data built with plain ORM calls (after djangoproject.com's checklists/tests/factory.py)."""

from __future__ import annotations

import datetime
import itertools

from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiToken, User
from accounts.validators import make_nik
from queueing.models import Location, Slot
from queueing.services import clock, quota

_serial = itertools.count(1)


def make_user(**kwargs) -> User:
    serial = next(_serial)
    kwargs.setdefault("email", f"buyer{serial}@example.com")
    kwargs.setdefault("full_name", f"Pembeli {serial}")
    kwargs.setdefault("nik", make_nik(serial, birth=datetime.date(1990, 1, 1 + serial % 28)))
    password = kwargs.pop("password", "antre-dulu-2026")
    return User.objects.create_user(password=password, **kwargs)


def make_slot(
    *,
    quota_size: int = 10,
    opens_in: float = -60.0,
    closes_in: float | None = None,
    location: str = "graha-dipta",
    label: str = "10:00",
    date: datetime.date | None = None,
    allocation: str = "fcfs",
) -> Slot:
    """A slot whose war opens ``opens_in`` seconds from now *by Redis' clock*, synced into Redis."""
    now = clock.redis_now()
    loc, _ = Location.objects.get_or_create(slug=location, defaults={"name": location.replace("-", " ").title()})
    slot = Slot.objects.create(
        location=loc,
        date=date or (now + datetime.timedelta(days=2)).date(),
        time_label=label,
        quota=quota_size,
        war_opens_at=now + datetime.timedelta(seconds=opens_in),
        war_closes_at=None if closes_in is None else now + datetime.timedelta(seconds=closes_in),
        allocation=allocation,
    )
    quota.sync_all([slot])
    return slot


def token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {ApiToken.issue(user)}")
    return client


def war_body(slot: Slot, **extra) -> dict:
    return {"location_id": slot.location.slug, "time_slot": slot.time_label, **extra}


def admin_slot_form(slot: Slot, *, opens: datetime.datetime | None = None, **changes) -> dict:
    """The admin's slot change form as a browser posts it (``opens``: another opening), with ``changes``."""
    local = timezone.localtime(opens or slot.war_opens_at)
    form = {
        "location": slot.location_id,
        "date": slot.date.isoformat(),
        "time_label": slot.time_label,
        "quota": slot.quota,
        "war_opens_at_0": local.date().isoformat(),
        "war_opens_at_1": local.time().replace(microsecond=0).isoformat(),
        "war_closes_at_0": "",
        "war_closes_at_1": "",
        "_save": "Save",
    }
    return {**form, **changes}
