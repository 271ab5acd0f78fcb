"""Signals that one person (or one bot) runs many accounts, and the one way staff switch an account off.

The signals are plain PostgreSQL aggregates over accounts, for the staff page ``/staff/abuse/``:

- accounts made per client address per hour (``User.registered_ip``): a sign-up bot shows as a tall bar;
- accounts sharing a phone number;
- accounts sharing a name and a birth date. The birth date is digits 7-12 of the NIK (``DDMMYY``, women add
  40 to the day, see ``accounts.validators``): a person inventing NIKs for extra accounts keeps their own
  name and birthday and changes the serial.

- draw entries per client address and slot (``DrawEntry.client_ip``): one address entering many
  accounts into one draw.

First-come war attempts per address are not listed: the reservation script keeps per-address attempts
only as fixed-window rate counters that expire with their window, and its per-slot statistics count
outcomes, not addresses.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, IntegerField, Q
from django.db.models.functions import Cast, Lower, Mod, Substr, Trim, TruncHour
from django.utils import timezone

from accounts.models import User
from accounts.services import identity
from queueing.models import DrawEntry, Ticket
from queueing.services import draws, reservations
from queueing.services.errors import ReservationError

log = logging.getLogger(__name__)

# Fields shown for each account in a group.
ACCOUNT_FIELDS = ["id", "email", "full_name", "nik", "phone", "registered_ip", "date_joined", "is_active"]


@dataclass(frozen=True)
class Group:
    """Accounts that share something (``label``), newest last."""

    label: str
    accounts: list[dict]


def registrations_by_ip(*, since: datetime.datetime | None = None, limit: int = 20) -> list[dict]:
    """The busiest (address, hour) pairs of sign-ups since ``since`` (default: the last 7 days)."""
    since = since or timezone.now() - datetime.timedelta(days=7)
    return list(
        User.objects.filter(date_joined__gte=since, registered_ip__isnull=False)
        .annotate(hour=TruncHour("date_joined"))
        .values("registered_ip", "hour")
        .annotate(accounts=Count("id"))
        .order_by("-accounts", "-hour", "registered_ip")[:limit]
    )


def entries_by_ip(*, since: datetime.datetime | None = None, limit: int = 20) -> list[dict]:
    """The busiest (address, draw slot) pairs of draw entries since ``since`` (default: the last 2 days)."""
    since = since or timezone.now() - datetime.timedelta(days=2)
    return list(
        DrawEntry.objects.filter(entered_at__gte=since, client_ip__isnull=False)
        .values("client_ip", "slot_id", "slot__location__name", "slot__date", "slot__time_label")
        .annotate(entries=Count("id"))
        .order_by("-entries", "client_ip")[:limit]
    )


def _members(condition: Q) -> list[dict]:
    return list(User.objects.filter(condition).order_by("date_joined", "id").values(*ACCOUNT_FIELDS))


def shared_phones(*, limit: int = 50) -> list[Group]:
    phones = (
        User.objects.exclude(phone="")
        .values("phone")
        .annotate(accounts=Count("id"))
        .filter(accounts__gt=1)
        .order_by("-accounts", "phone")[:limit]
    )
    return [Group(row["phone"], _members(Q(phone=row["phone"]))) for row in phones]


def _with_birth_key(queryset):
    """Annotate lower-cased name and the NIK's birth date as (day, MMYY); women's day + 40 folds back by mod 40."""
    return queryset.annotate(
        name_key=Lower(Trim("full_name")),
        birth_day=Cast(Mod(Cast(Substr("nik", 7, 2), IntegerField()), 40), IntegerField()),
        birth_month_year=Substr("nik", 9, 4),
    )


def shared_name_and_birth_date(*, limit: int = 50) -> list[Group]:
    groups = (
        _with_birth_key(User.objects.filter(nik__isnull=False))
        .values("name_key", "birth_day", "birth_month_year")
        .annotate(accounts=Count("id"))
        .filter(accounts__gt=1)
        .order_by("-accounts", "name_key")[:limit]
    )
    result = []
    for row in groups:
        mmyy = row["birth_month_year"]
        label = f"{row['name_key']} · {row['birth_day']:02d}-{mmyy[:2]}-{mmyy[2:]}"
        members = (
            _with_birth_key(User.objects.filter(nik__isnull=False))
            .filter(name_key=row["name_key"], birth_day=row["birth_day"], birth_month_year=mmyy)
            .order_by("date_joined", "id")
            .values(*ACCOUNT_FIELDS)
        )
        result.append(Group(label, list(members)))
    return result


def disable(user: User, *, by: User | None = None) -> list[str]:
    """Switch ``user`` off now: no login, no token, no war attempt; their draw entries are withdrawn and
    their active tickets cancelled.

    Order matters. The account is deactivated and its cached identity dropped first, so the war endpoint
    (which trusts the Redis copy) refuses its next attempt; then each active ticket is cancelled through the
    buyers' own cancel path (PostgreSQL first, then the seat goes back in Redis for others). Returns the
    codes of the cancelled tickets.
    """
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
    user.is_active = False
    identity.forget_user(user)
    draws.withdraw_entries(user.pk)
    cancelled = []
    codes = Ticket.objects.filter(user_id=user.pk, status=Ticket.Status.ACTIVE).values_list("code", flat=True)
    for code in list(codes):
        try:
            reservations.cancel(None, code, reason="staff")
        except ReservationError as exc:
            # Checked in or cancelled by its holder a moment ago: nothing left to free.
            log.info("disable %s: ticket %s not cancelled (%s)", user.pk, code, exc.code)
            continue
        cancelled.append(code)
    log.warning(
        "account %s disabled by %s; tickets cancelled: %s", user.pk, getattr(by, "pk", None), cancelled or "none"
    )
    return cancelled
