"""Rehearsal set-up and clean-up in PostgreSQL and Redis.

Rehearsal buyers (``User.is_rehearsal``) get fresh API tokens made in bulk, and rehearsal slots live at
their own location (``latihan``), so ``cleanup`` can remove both with their tickets and Redis keys
without touching a real buyer.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, User, person_key
from accounts.services import identity
from accounts.validators import make_nik
from queueing.models import Allocation, Location, Slot, Ticket
from queueing.services import catalog, clock, quota, reservations
from queueing.services.errors import ReservationError
from queueing.services.store import slot_keys
from wartiket.redis_client import get_redis

REHEARSAL_LOCATION = "latihan"
REHEARSAL_LOCATION_NAME = "Latihan war (rehearsal)"
TOKEN_NAME = "rehearsal"  # noqa: S105 (the tokens' label, not a secret)
# Rehearsal NIKs live in one made-up regency code; any real NIK already taken is skipped anyway.
NIK_REGION = "947199"
# The opening of a rehearsal slot stays this far away until the viewers are connected.
PARKED_OPENING = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class Buyer:
    user_id: int
    token: str


def _rehearsal_nik(index: int) -> str:
    # 9,999 serials per birth date; successive dates give room for as many buyers as anyone rehearses.
    birth = datetime.date(1960, 1, 1) + datetime.timedelta(days=index // 9999)
    return make_nik(index % 9999 + 1, region=NIK_REGION, birth=birth)


def _free_niks(count: int) -> list[str]:
    found: list[str] = []
    index = 0
    while len(found) < count:
        batch = [_rehearsal_nik(i) for i in range(index, index + count - len(found) + 100)]
        index += len(batch)
        taken = set(User.objects.filter(nik__in=batch).values_list("nik", flat=True))
        found += [nik for nik in batch if nik not in taken]
    return found[:count]


def prepare_buyers(count: int, *, warm: bool = True) -> list[Buyer]:
    """``count`` rehearsal buyers (reused when they exist), each with one fresh API token.

    Raw token keys are never stored, so every run replaces the buyers' rehearsal tokens. With ``warm``,
    the identity cache is filled as a buyer's own earlier visits would have filled it, so the storm
    measures the war, not first-sight PostgreSQL lookups (``--cold`` in ``simulate_war`` skips this).
    """
    ids = list(User.objects.filter(is_rehearsal=True).order_by("id").values_list("id", flat=True)[:count])
    missing = count - len(ids)
    if missing > 0:
        first = User.objects.filter(is_rehearsal=True).count()
        new = User.objects.bulk_create(
            User(
                email=f"latihan-{first + i:06d}-{os.urandom(3).hex()}@rehearsal.invalid",
                full_name=f"Pembeli Latihan {first + i + 1}",
                password="!",  # noqa: S106 (unusable: rehearsal buyers never log in, they hold tokens)
                nik=nik,
                is_rehearsal=True,
            )
            for i, nik in enumerate(_free_niks(missing))
        )
        ids += [user.pk for user in new]
    users = User.objects.in_bulk(ids)
    # A queryset delete still fires the signal that drops each old token from the identity cache.
    ApiToken.objects.filter(user_id__in=ids, name=TOKEN_NAME).delete()
    built = [ApiToken.build(users[user_id], name=TOKEN_NAME) for user_id in ids]
    ApiToken.objects.bulk_create([token for token, _raw in built])
    buyers = [Buyer(token.user_id, raw) for token, raw in built]
    if warm:
        for buyer in buyers:
            identity.principal_for_token(buyer.token)
    return buyers


def rehearsal_location() -> Location:
    location, _ = Location.objects.get_or_create(
        slug=REHEARSAL_LOCATION, defaults={"name": REHEARSAL_LOCATION_NAME, "address": "—", "is_rehearsal": True}
    )
    if not location.is_rehearsal:
        # Made before the flag existed (or unticked in admin): its slots fall on real war days, so hide it.
        Location.objects.filter(pk=location.pk).update(is_rehearsal=True)
        location.is_rehearsal = True
    return location


def _busy_days() -> set[datetime.date]:
    """War days a new rehearsal slot must avoid: one ticket per person per day would refuse the buyers."""
    days = set(Slot.objects.filter(location__slug=REHEARSAL_LOCATION).values_list("date", flat=True))
    days |= set(
        Ticket.objects.filter(user__is_rehearsal=True, status__in=Ticket.HOLDING).values_list("slot__date", flat=True)
    )
    return days


def create_slot(
    quota_size: int, *, time_label: str = "10:00", allocation: str = Allocation.FCFS, draw_grace_seconds: int = 10
) -> Slot:
    """A rehearsal slot on a day no rehearsal has used, its opening parked an hour away (see ``open_in``).

    A draw slot (``allocation="draw"``) takes entries from the start: its window opens
    ``WAR_DRAW_ENTRY_MINUTES`` before the opening, and the draw is ``draw_grace_seconds`` after it.
    """
    busy = _busy_days()
    day = timezone.localdate() + datetime.timedelta(days=1)
    while day in busy:
        day += datetime.timedelta(days=1)
    slot = Slot.objects.create(
        location=rehearsal_location(),
        date=day,
        time_label=time_label,
        quota=quota_size,
        war_opens_at=clock.redis_now() + PARKED_OPENING,
        allocation=allocation,
        draw_grace_seconds=draw_grace_seconds,
    )
    quota.sync_all([slot])
    return slot


def open_in(slot: Slot, seconds: float) -> Slot:
    """Move a rehearsal slot's opening to ``seconds`` from now by the server clock (Redis TIME)."""
    slot.war_opens_at = clock.redis_now() + datetime.timedelta(seconds=seconds)
    slot.save(update_fields=["war_opens_at"])
    quota.sync_all([slot])
    return slot


@dataclass
class CleanupSummary:
    buyers: int = 0
    tickets: int = 0
    slots: int = 0
    released: int = 0


def cleanup() -> CleanupSummary:
    """Remove every rehearsal buyer with their tokens and tickets, and every rehearsal slot.

    Tickets rehearsal buyers took on real slots (``simulate_war --slot``) are cancelled through the
    reservation service first, so their seats go back to real buyers in Redis too.
    """
    summary = CleanupSummary()
    own_slots = list(Slot.objects.filter(location__slug=REHEARSAL_LOCATION))
    foreign = Ticket.objects.filter(user__is_rehearsal=True, status=Ticket.Status.ACTIVE).exclude(
        slot__location__slug=REHEARSAL_LOCATION
    )
    for user_id, code in foreign.values_list("user_id", "code"):
        try:
            reservations.cancel(user_id, code)
            summary.released += 1
        except ReservationError:
            pass  # already cancelled or checked in meanwhile: its seat is not ours to give back
    rehearsal_users = list(User.objects.filter(is_rehearsal=True).values_list("id", "nik"))
    user_ids = [user_id for user_id, _nik in rehearsal_users]
    persons = [person_key(user_id, nik) for user_id, nik in rehearsal_users]
    days = set(Ticket.objects.filter(user_id__in=user_ids).values_list("slot__date", flat=True))
    days |= {slot.date for slot in own_slots}

    r = get_redis()
    pipe = r.pipeline(transaction=False)
    for slot in own_slots:
        keys = slot_keys(slot.pk, slot.war_day)
        pipe.delete(keys.slot, keys.free, keys.holders, keys.stats)
    for day in days:
        # The day's person hash is keyed by person, not account (see reserve.lua).
        for start in range(0, len(persons), 1000):
            chunk = persons[start : start + 1000]
            if chunk:
                pipe.hdel(slot_keys(0, day.isoformat()).day, *chunk)
    pipe.execute()

    with transaction.atomic():
        summary.tickets = Ticket.objects.filter(user_id__in=user_ids).delete()[0]
        summary.tickets += Ticket.objects.filter(slot__in=own_slots).delete()[0]
        summary.slots = Slot.objects.filter(pk__in=[s.pk for s in own_slots]).delete()[0]
        Location.objects.filter(slug=REHEARSAL_LOCATION).delete()
        # The per-object delete signals drop every cached identity (identity.forget_*).
        summary.buyers = User.objects.filter(pk__in=user_ids).delete()[1].get(User._meta.label, 0)
    catalog.rebuild()
    return summary
