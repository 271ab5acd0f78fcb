"""Exactness of a finished war, checked against PostgreSQL: the claims the product makes, as code.

Used by the storm tests, by `simulate_war` (and its `--audit` of a saved report) and by `make bench`;
a non-empty list of violations means the war was wrong.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from queueing.models import Slot, Ticket
from queueing.services.store import slot_keys
from wartiket.redis_client import get_redis


@dataclass(frozen=True)
class Acknowledged:
    """A reservation the buyer was told about (a 201, or a 200 naming their ticket), as the buyer saw it."""

    code: str
    queue_number: int


def exactness_violations(
    slot: Slot,
    acknowledged: list[Acknowledged],
    *,
    expect_sold_out: bool,
    all_answers_seen: bool = False,
    rehearsal_only: bool = False,
    reported_tickets: int | None = None,
) -> list[str]:
    """Every way the war broke a promise; empty when it was exact.

    ``all_answers_seen``: the caller saw an answer to every request it sent, so every ticket (of
    rehearsal buyers, with ``rehearsal_only``) must be one some buyer was told about.
    ``reported_tickets``: the ticket count a saved report claimed, which PostgreSQL must still show.
    """
    problems = []
    tickets = list(
        Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING).values_list(
            "code", "queue_number", "user_id", "reserved_at", "user__is_rehearsal"
        )
    )
    numbers = sorted(t[1] for t in tickets)
    if len(tickets) > slot.quota:
        problems.append(f"oversold: {len(tickets)} tickets for a quota of {slot.quota}")
    told = {a.code for a in acknowledged}
    if len(told) > slot.quota:
        problems.append(f"oversold: {len(told)} buyers were told 'reserved' for a quota of {slot.quota}")
    if expect_sold_out and len(tickets) < slot.quota:
        problems.append(f"undersold: {len(tickets)} tickets for a quota of {slot.quota}")
    expected = list(range(1, len(tickets) + 1)) if expect_sold_out or not tickets else numbers
    if numbers != expected or any(n < 1 or n > slot.quota for n in numbers):
        problems.append(f"queue numbers are not exactly 1..{len(tickets)}: {numbers[:10]}…")
    twice = [user for user, count in Counter(t[2] for t in tickets).items() if count > 1]
    if twice:
        problems.append(f"users holding two tickets: {twice[:10]}")
    early = [t[0] for t in tickets if t[3] < slot.war_opens_at]
    if early:
        problems.append(f"tickets reserved before the war opened: {early[:10]}")

    # What buyers were told must be one story: one number per code, one code per number.
    numbers_by_code: dict[str, set[int]] = {}
    codes_by_number: dict[int, set[str]] = {}
    for a in acknowledged:
        numbers_by_code.setdefault(a.code, set()).add(a.queue_number)
        codes_by_number.setdefault(a.queue_number, set()).add(a.code)
    shared = sorted(n for n, codes in codes_by_number.items() if len(codes) > 1)
    if shared:
        problems.append(f"one queue number told to two buyers: {shared[:10]}")
    changed = sorted(code for code, ns in numbers_by_code.items() if len(ns) > 1)
    if changed:
        problems.append(f"one ticket told with two numbers: {changed[:10]}")

    by_code = {t[0]: t[1] for t in tickets}
    lost = sorted({a.code for a in acknowledged if by_code.get(a.code) != a.queue_number})
    if lost:
        problems.append(f"acknowledged reservations without their PostgreSQL row: {lost[:10]}")
    if all_answers_seen:
        untold = [t[0] for t in tickets if t[0] not in told and (t[4] or not rehearsal_only)]
        if untold:
            problems.append(f"tickets in PostgreSQL that no buyer was told about: {untold[:10]}")
    if reported_tickets is not None and reported_tickets != len(tickets):
        problems.append(f"the report counted {reported_tickets} tickets but PostgreSQL holds {len(tickets)}")
    meta = get_redis().hmget(slot_keys(slot.pk, slot.war_day).slot, "quota", "sold")
    if meta[0] is not None:
        remaining = int(meta[0]) - int(meta[1])
        if remaining != slot.quota - len(tickets):
            problems.append(f"Redis remaining {remaining} but PostgreSQL leaves {slot.quota - len(tickets)}")
    return problems
