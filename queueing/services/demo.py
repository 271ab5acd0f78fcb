"""Demo data for `make run`: Jakarta gold boutiques, slots for the coming days, one war about to open."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from accounts.validators import make_nik
from queueing.models import Allocation, Challenge, Draw, Location, Slot, Ticket
from queueing.services import quota, slots

LOCATIONS = [
    ("graha-dipta", "Butik Emas LM Graha Dipta", "Jl. Pemuda No. 1, Pulo Gadung, Jakarta Timur"),
    ("setiabudi-one", "Butik Emas LM Setiabudi One", "Jl. H.R. Rasuna Said Kav. 62, Setiabudi, Jakarta Selatan"),
    ("puri-indah", "Butik Emas LM Puri Indah", "Jl. Puri Indah Raya Blok I, Kembangan, Jakarta Barat"),
    ("gedung-antam", "Butik Emas LM Gedung Antam", "Jl. Letjen T.B. Simatupang No. 1, Tanjung Barat, Jakarta Selatan"),
    ("bintaro", "Butik Emas LM Bintaro", "Jl. Bintaro Utama Sektor 3A, Tangerang Selatan"),
]
TIME_LABELS = {"08:00": 50, "10:00": 100, "13:00": 75}
DAYS_AHEAD = 3
# Wars for a day open at 15:00 the day before, the way the boutiques announce them.
OPENS_AT = datetime.time(15, 0)
DEMO_WAR = ("graha-dipta", "10:00")
# The demo draw war (draw mode, docs/fairness.md): its entry window is open from the start, and it draws a
# few minutes later. Another day than the demo war, so the demo buyer can try both (one ticket per day).
DEMO_DRAW = ("setiabudi-one", "13:00", 2)

BUYERS = [
    ("pembeli@example.com", "antre-dulu-2026", "Siti Rahmawati", "081234567801", 1, True),
    ("pembeli2@example.com", "antre-dulu-2026", "Budi Santoso", "081234567802", 2, False),
]
STAFF = ("staf@example.com", "staf-wartiket-2026", "Staf War Tiket")


@dataclass
class DemoSummary:
    demo_slot: Slot
    demo_draw: Slot
    logins: list[tuple[str, str, str]]


def _user(email, password, full_name, **extra) -> User:
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email, password, full_name=full_name, **extra)
    return user


@transaction.atomic
def seed(*, demo_war_in: datetime.timedelta, demo_draw_in: datetime.timedelta | None = None) -> DemoSummary:
    tz = timezone.get_default_timezone()
    today = timezone.localdate()
    for slug, name, address in LOCATIONS:
        location, _ = Location.objects.update_or_create(slug=slug, defaults={"name": name, "address": address})
        for offset in range(1, DAYS_AHEAD + 1):
            day = today + datetime.timedelta(days=offset)
            opens = datetime.datetime.combine(day - datetime.timedelta(days=1), OPENS_AT, tzinfo=tz)
            for label, size in TIME_LABELS.items():
                Slot.objects.get_or_create(
                    location=location,
                    date=day,
                    time_label=label,
                    defaults={"quota": size, "war_opens_at": opens},
                )

    # The demo war is the slot the README's curl reaches (nearest graha-dipta 10:00 not yet over). Re-seeding
    # moves its opening again only while nobody holds a ticket for it, so a fought war is left as it was.
    now = timezone.now()
    slug, label = DEMO_WAR
    demo = next(
        s for s in Slot.objects.filter(location__slug=slug, time_label=label).order_by("date") if s.closes_at > now
    )
    # The README's plain curl fights this war: no proof of work on it, whatever staff set since.
    changed = demo.challenge != Challenge.OFF
    demo.challenge = Challenge.OFF
    if not Ticket.objects.filter(slot=demo, status__in=Ticket.HOLDING).exists():
        demo.war_opens_at = (now + demo_war_in).replace(microsecond=0)
        changed = True
    if changed:
        slots.save(demo)

    # The demo draw: moved (and made a draw slot) again on every seed while it is not drawn yet.
    slug, label, offset = DEMO_DRAW
    draw_slot = Slot.objects.get(location__slug=slug, time_label=label, date=today + datetime.timedelta(days=offset))
    if not Draw.objects.filter(slot=draw_slot, drawn_at__isnull=False).exists():
        draw_slot.allocation = Allocation.DRAW
        # Proof of work on its entries: the page solves it during the countdown (docs/fairness.md).
        draw_slot.challenge = Challenge.ON
        draw_slot.war_opens_at = (now + (demo_draw_in or demo_war_in + datetime.timedelta(minutes=1))).replace(
            microsecond=0
        )
        slots.save(draw_slot)

    logins = []
    for email, password, full_name, phone, serial, female in BUYERS:
        _user(
            email,
            password,
            full_name,
            phone=phone,
            nik=make_nik(serial, birth=datetime.date(1990 + serial, 5, 17), female=female),
        )
        logins.append(("buyer", email, password))
    email, password, full_name = STAFF
    staff = _user(email, password, full_name)
    if not staff.is_staff:
        staff.is_staff = staff.is_superuser = True
        staff.save(update_fields=["is_staff", "is_superuser"])
    logins.append(("staff", email, password))

    # sync_all also rebuilds the catalog.
    transaction.on_commit(quota.sync_all)
    return DemoSummary(demo, draw_slot, logins)
