"""The rehearsal's report: outcomes, throughput, latencies, sell-out and viewer times, all on the
server's clock (Redis TIME), with the exactness audit against PostgreSQL (``audit.exactness_violations``)
and the verdicts on the rehearsal itself."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from queueing.models import Draw, Slot, Ticket
from queueing.services import audit, clock, draws
from queueing.services.store import datetime_to_ms

from .load import Shot, ViewerRow


def clock_offset_ms(samples: int = 5) -> float:
    """Server clock (Redis TIME) minus this machine's clock, from the sample with the shortest round trip."""
    best_round_trip, best_offset = math.inf, 0.0
    for _ in range(samples):
        before = time.time() * 1000
        server = clock.redis_now_ms()
        after = time.time() * 1000
        if after - before < best_round_trip:
            best_round_trip, best_offset = after - before, server - (before + after) / 2
    return best_offset


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_summary(latencies_s: Iterable[float]) -> dict:
    ms = [v * 1000 for v in latencies_s]
    return {
        "p50_ms": _round(percentile(ms, 50)),
        "p90_ms": _round(percentile(ms, 90)),
        "p99_ms": _round(percentile(ms, 99)),
        "max_ms": _round(max(ms) if ms else None),
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class RunInfo:
    """What was asked for, and the clock facts the report needs."""

    url: str
    users: int
    attempts_per_user: int
    concurrency: int
    processes: int
    early: int
    viewers: int
    offset_ms: float  # server clock minus client clock
    viewers_stopped_at: float | None = None  # client epoch
    tickets_before: int = 0  # holding tickets on the slot before the first request (an existing --slot)
    extra: dict = field(default_factory=dict)


def build_report(slot: Slot, shots: list[Shot], viewer_rows: list[ViewerRow], info: RunInfo) -> dict:
    """The rehearsal's report, every figure on the server's clock, with the exactness audit."""
    slot.refresh_from_db()
    opens_ms = datetime_to_ms(slot.war_opens_at)
    storm = [s for s in shots if not s.early]
    outcomes = Counter(s.code for s in shots)
    # A buyer is told about a ticket by a 201, and by a 200 ("already yours") on a retry.
    acknowledged = sorted(
        {audit.Acknowledged(s.ticket, s.queue_number) for s in shots if s.status in (200, 201) and s.ticket},
        key=lambda a: (a.queue_number, a.code),
    )

    def server_ms(client_epoch_s: float) -> float:
        return client_epoch_s * 1000 + info.offset_ms

    throughput = None
    answered_storm = [s for s in storm if s.status != 0]  # refused connections and timeouts are not throughput
    if answered_storm:
        first = min(s.sent_at for s in answered_storm)
        last = max(s.sent_at + s.latency for s in answered_storm)
        throughput = len(answered_storm) / max(last - first, 1e-6)

    tickets = list(
        Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING)
        .order_by("reserved_at")
        .values_list("reserved_at", "created_at", "user__is_rehearsal", named=True)
    )
    reserved_ms = sorted(datetime_to_ms(t.reserved_at) - opens_ms for t in tickets)
    committed_ms = sorted(datetime_to_ms(t.created_at) - opens_ms for t in tickets)
    sold_out = len(tickets) >= slot.quota
    sellout_server_ms = opens_ms + reserved_ms[-1] if sold_out and reserved_ms else None

    viewers = _viewer_summary(viewer_rows, info, opens_ms, sellout_server_ms, server_ms)
    violations = audit.exactness_violations(
        slot,
        acknowledged,
        expect_sold_out=outcomes["sold_out"] > 0,
        all_answers_seen=not any(s.status == 0 for s in shots),
        rehearsal_only=True,
    )
    shortfall = _shortfall(slot, shots, len(tickets), info)
    violations += _verdicts(shots, shortfall, info)
    draw = _draw_summary(slot, shots) if slot.is_draw else None
    if draw is not None:
        violations += [f"the draw does not verify: {problem}" for problem in draw["verify_problems"]]
    latency_rows = _latency_timeline(storm, opens_ms, server_ms)
    return {
        "slot": {
            "id": slot.pk,
            "name": str(slot),
            "quota": slot.quota,
            "opens_at": slot.war_opens_at.isoformat(),
            "location": slot.location.slug,
            "date": slot.date.isoformat(),
            "time_slot": slot.time_label,
        },
        "run": {
            "url": info.url,
            "users": info.users,
            "attempts_per_user": info.attempts_per_user,
            "concurrency": info.concurrency,
            "processes": info.processes,
            "early": info.early,
            "viewers": info.viewers,
            "clock_offset_ms": round(info.offset_ms, 1),
            **info.extra,
        },
        "requests": len(shots),
        "outcomes": dict(outcomes.most_common()),
        "statuses": {str(k): v for k, v in sorted(Counter(s.status for s in shots).items())},
        "throughput_rps": _round(throughput),
        "latency": latency_summary(s.latency for s in answered_storm),
        "database": {
            "tickets": len(tickets),
            "rehearsal_tickets": sum(1 for t in tickets if t.user__is_rehearsal),
            "sold_out": sold_out,
            "open_to_sold_out_ms": reserved_ms[-1] if sold_out and reserved_ms else None,
            "open_to_last_commit_ms": committed_ms[-1] if sold_out and committed_ms else None,
            "first_ticket_after_open_ms": reserved_ms[0] if reserved_ms else None,
        },
        "viewers": viewers,
        "draw": draw,
        "shortfall": shortfall,
        "acknowledged": [{"code": a.code, "queue_number": a.queue_number} for a in acknowledged],
        "exact": not violations,
        "violations": violations,
        "timeline": {"reserved_ms": reserved_ms, "committed_ms": committed_ms, "buckets": latency_rows},
    }


# Refusals that explain why a buyer got no ticket while seats were left: the server decided so, on
# purpose, and the report says which. Anything else (no answer, 5xx, unavailable, not_ready, too_early
# after the opening) leaves the shortfall unexplained and the rehearsal failed.
EXPLAINED_REFUSALS = frozenset({"sold_out", "rate_limited", "one_per_day", "nik_required", "closed", "not_drawn"})


def _shortfall(slot: Slot, shots: list[Shot], tickets: int, info: RunInfo) -> dict:
    """How many tickets the rehearsal should have produced, and why the buyers without one got none."""
    expected = min(slot.quota, info.tickets_before + info.users)
    with_ticket = {s.buyer for s in shots if s.status in (200, 201) and s.ticket}
    last: dict[int, Shot] = {}
    for shot in sorted(shots, key=lambda s: s.sent_at):
        last[shot.buyer] = shot
    reasons = Counter(
        last[index].code if index in last else "never_sent" for index in range(info.users) if index not in with_ticket
    )
    missing = max(0, expected - tickets)
    unexplained = {code: n for code, n in reasons.items() if code not in EXPLAINED_REFUSALS}
    return {
        "expected_tickets": expected,
        "missing": missing,
        "buyers_without_ticket": dict(reasons.most_common()),
        "explained": missing == 0 or not unexplained,
    }


def _draw_summary(slot: Slot, shots: list[Shot]) -> dict:
    """Draw mode: how entries came in, and how fast and how correctly the draw went (the Draw row's figures)."""
    draw = Draw.objects.filter(slot=slot).first()
    entries = [s for s in shots if s.code == "entered"]
    rate = None
    if len(entries) > 1:
        span = max(s.sent_at + s.latency for s in entries) - min(s.sent_at for s in entries)
        rate = len(entries) / max(span, 1e-3)
    drawn = draw is not None and draw.is_drawn
    return {
        "entries_answered": len(entries),
        "entries_per_second": _round(rate),
        "entrants_at_close": draw.entrants if drawn else None,
        "winners": draw.winners if drawn else None,
        "waiting_list": draw.waiting if drawn else None,
        "skipped": draw.skipped if drawn else None,
        "draw_duration_ms": draw.duration_ms if drawn else None,
        "draw_at_to_all_committed_ms": draw.lag_ms if drawn else None,
        "verify_problems": draws.verify(draws.published(slot)) if drawn else ["the slot was not drawn"],
    }


def _verdicts(shots: list[Shot], shortfall: dict, info: RunInfo) -> list[str]:
    """Ways the rehearsal itself failed (on top of the exactness audit): it proved nothing."""
    problems = []
    if shots and all(s.status == 0 for s in shots):
        codes = Counter(s.code for s in shots)
        problems.append(
            f"no attempt got an answer from {info.url}: "
            + ", ".join(f"{n} x {code}" for code, n in codes.most_common())
        )
    elif not shortfall["explained"]:
        reasons = ", ".join(f"{n} x {code}" for code, n in shortfall["buyers_without_ticket"].items())
        problems.append(
            f"{shortfall['missing']} ticket(s) short of the {shortfall['expected_tickets']} possible "
            f"(the quota or the number of buyers, whichever is smaller), and not explained by refusals; "
            f"the last answers of the buyers without a ticket: {reasons}"
        )
    return problems


def _viewer_summary(rows: list[ViewerRow], info: RunInfo, opens_ms, sellout_server_ms, server_ms) -> dict:
    if not rows:
        return {"watching": 0}
    connected = [r for r in rows if r.connected]
    zeros = [server_ms(r.saw_zero_at) for r in connected if r.saw_zero_at is not None]
    window_s = None
    if info.viewers_stopped_at is not None:
        window_s = max((server_ms(info.viewers_stopped_at) - opens_ms) / 1000, 1e-3)
    errors = Counter(r.error for r in rows if r.error)
    return {
        "watching": len(rows),
        "connected": len(connected),
        "saw_zero": len(zeros),
        "last_saw_zero_after_sell_out_ms": _round(max(zeros) - sellout_server_ms)
        if zeros and sellout_server_ms and len(zeros) == len(connected)
        else None,
        "last_saw_zero_after_open_ms": _round(max(zeros) - opens_ms) if zeros else None,
        "messages_per_viewer_per_second": _round(sum(r.messages for r in connected) / len(connected) / window_s, 2)
        if connected and window_s
        else None,
        "errors": dict(errors.most_common(5)),
    }


class Bucket(NamedTuple):
    """One bucket of the report's latency timeline (``report["timeline"]["buckets"]``).

    A NamedTuple so that the JSON report keeps it as a plain list, ``[start_ms, sent, p50_ms, p90_ms,
    p99_ms, {outcome: answers}]``; ``Bucket(*row)`` names a row read back from JSON.
    """

    start_ms: int  # since the opening, on the server's clock
    sent: int  # requests sent in the bucket
    p50_ms: float | None  # latency percentiles of the requests sent in the bucket
    p90_ms: float | None
    p99_ms: float | None
    answers: dict[str, int]  # outcome -> answers that arrived in the bucket


def _latency_timeline(storm: list[Shot], opens_ms: float, server_ms, bucket_ms: int = 100) -> list[Bucket]:
    """Every bucket from the opening to the last answer, empty ones too, so a plot shows pauses as pauses."""
    sent: dict[int, list[float]] = {}
    answered: dict[int, Counter] = {}
    for shot in storm:
        sent_at = server_ms(shot.sent_at) - opens_ms
        sent.setdefault(int(sent_at // bucket_ms), []).append(shot.latency * 1000)
        answered.setdefault(int((sent_at + shot.latency * 1000) // bucket_ms), Counter())[shot.code] += 1
    if not sent:
        return []
    return [
        Bucket(
            start_ms=index * bucket_ms,
            sent=len(ms),
            p50_ms=_round(percentile(ms, 50)),
            p90_ms=_round(percentile(ms, 90)),
            p99_ms=_round(percentile(ms, 99)),
            answers=dict(answered.get(index, {})),
        )
        for index in range(min([0, *sent]), max([*sent, *answered]) + 1)
        for ms in [sent.get(index, [])]
    ]


def reaudit(report: dict) -> list[str]:
    """Check a saved report (``simulate_war --json``) against PostgreSQL as it is now."""
    slot = Slot.objects.select_related("location").get(pk=report["slot"]["id"])
    acknowledged = [audit.Acknowledged(a["code"], a["queue_number"]) for a in report["acknowledged"]]
    return audit.exactness_violations(
        slot,
        acknowledged,
        expect_sold_out=report["outcomes"].get("sold_out", 0) > 0,
        all_answers_seen=not any(code.startswith("client_error") for code in report["outcomes"]),
        rehearsal_only=True,
        reported_tickets=report["database"]["tickets"],
    )
