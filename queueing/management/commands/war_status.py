from __future__ import annotations

import io
import shutil
import signal
import textwrap
import time

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q
from rich.console import Console
from rich.live import Live
from rich.table import Table

from queueing.management.slots import slots_by_id
from queueing.models import Slot, Ticket
from queueing.services import clock, quota, reconcile, warroom


class Command(BaseCommand):
    help = (
        "Show every upcoming war (or the --slot ones) as a table: id, date, time, location, state (opens in, "
        "OPEN, closed, by the server clock), quota, remaining, tickets. With --watch, show the war room's "
        "figures instead (today's wars, or --slot), refreshed every --interval seconds: state, time since "
        "opening, remaining, tickets, requests per second by outcome. Fits the terminal's width (COLUMNS; 80 "
        "when not a terminal): the id, time and remaining always show; location names lose a prefix they all "
        "share, then get cut; outcomes that do not fit are listed under the table. An unknown --slot is an "
        "error (exit 1). Ctrl-C or SIGTERM stops watching."
    )

    def add_arguments(self, parser):
        parser.add_argument("--watch", action="store_true", help="Refresh the war room's figures until stopped")
        parser.add_argument("--slot", type=int, action="append", help="Only this slot (repeatable)")
        parser.add_argument("--interval", type=float, default=1.0, help="With --watch: seconds between refreshes")
        parser.add_argument("--count", type=int, help="With --watch: stop after this many refreshes")

    def handle(self, *args, watch=False, slot=None, interval=1.0, count=None, **options):
        if slot:
            slots_by_id(slot)
        if watch:
            return self.watch(slot, interval, count)
        now = clock.redis_now()
        chosen = slot or [s.pk for s in quota.upcoming_slots()]
        slots = list(
            Slot.objects.select_related("location")
            .filter(pk__in=chosen)
            .annotate(n_tickets=Count("tickets", filter=Q(tickets__status__in=Ticket.HOLDING)))
            .order_by("war_opens_at", "location__name", "time_label")
        )
        remaining = quota.remaining_for(slots)
        rows = []
        for item in slots:
            delta = (item.war_opens_at - now).total_seconds()
            if now >= item.closes_at:
                state = "closed"
            elif delta <= 0:
                state = "OPEN"
            else:
                state = f"{int(delta // 3600)}h{int(delta % 3600 // 60):02d}m{int(delta % 60):02d}s"
            left = remaining.get(item.pk)
            rows.append(
                {
                    "id": str(item.pk),
                    "date": f"{item.date:%m-%d}",
                    "time": item.time_label,
                    "location": item.location.name,
                    "state": state,
                    "quota": str(item.quota),
                    "left": "-" if left is None else str(left),
                    "tickets": str(item.n_tickets),
                }
            )
        for line in plain_table(rows, terminal_width()):
            self.stdout.write(line)
        self.stdout.write(f"{len(slots)} slot(s); server time {now:%Y-%m-%d %H:%M:%S %Z}")
        check = warroom.consistency(reconcile.last_check_raw(), clock.redis_now_ms())
        for line in textwrap.wrap(consistency_line(check), terminal_width(), subsequent_indent="  "):
            self.stdout.write(self.style.ERROR(line) if check["drift"] else line)

    def watch(self, slot_ids: list[int] | None, interval: float, count: int | None) -> None:
        if interval < 0.2:
            raise CommandError("--interval must be at least 0.2 seconds")
        stopping = []
        previous = signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        sampler = warroom.Sampler(slot_ids)
        frames = 0
        live = Live(console=Console(), auto_refresh=False) if self.stdout.isatty() else None
        try:
            if live:
                live.start()
            while not stopping and (count is None or frames < count):
                started = time.monotonic()
                figures = sampler.sample()
                frames += 1
                if live:
                    live.update(figures_table(figures, live.console.width), refresh=True)
                else:
                    # Not a terminal (a log, a pipe): each refresh printed in turn, as wide as COLUMNS says.
                    width = terminal_width()
                    buffer = io.StringIO()
                    Console(file=buffer, width=width).print(figures_table(figures, width))
                    self.stdout.write(buffer.getvalue(), ending="")
                if count is not None and frames >= count:
                    break
                time.sleep(max(0.0, interval - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass
        finally:
            if live:
                live.stop()
            signal.signal(signal.SIGTERM, previous)
        self.stdout.write(f"war_status: {frames} refresh(es)")


def terminal_width() -> int:
    """COLUMNS, else the terminal's width, else 80 (a pipe, a log)."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def shorten_names(names: list[str], width: int) -> tuple[list[str], str]:
    """Names that fit ``width``: first without the words every name starts with ("Butik Emas LM "), then
    cut with "…". Returns the names and the prefix dropped ("" if none)."""
    prefix = ""
    if any(len(name) > width for name in names) and len(set(names)) > 1:
        words = [name.split(" ") for name in names]
        common = 0
        while all(len(w) > common + 1 and w[common] == words[0][common] for w in words):
            common += 1
        prefix = " ".join(words[0][:common]) + " " if common else ""
        names = [name[len(prefix) :] for name in names]
    return [name if len(name) <= width else name[: max(1, width - 1)] + "…" for name in names], prefix


# Plain table columns, in order, with their alignment; dropped from the first of NARROW_DROPS on when the
# width is short (never id, time, state, left).
PLAIN_COLUMNS = (
    ("id", ">"),
    ("date", "<"),
    ("time", "<"),
    ("location", "<"),
    ("state", ">"),
    ("quota", ">"),
    ("left", ">"),
    ("tickets", ">"),
)
NARROW_DROPS = ("quota", "date", "tickets", "location")
LOCATION_MIN = 8


def plain_table(rows: list[dict], width: int) -> list[str]:
    """Rows as aligned text no wider than ``width``; the location column takes what the others leave."""

    def fixed_width(columns) -> int:
        widths = [max([len(name), *(len(row[name]) for row in rows)]) for name, _ in columns if name != "location"]
        return sum(widths) + 2 * (len(columns) - 1)

    columns = list(PLAIN_COLUMNS)
    drops = iter(NARROW_DROPS)
    while width - fixed_width(columns) < (LOCATION_MIN + 2 if "location" in dict(columns) else 0):
        drop = next(drops, None)
        if drop is None:
            break
        columns = [c for c in columns if c[0] != drop]
    lines = []
    notes = []
    room = width - fixed_width(columns) - 2
    if "location" in dict(columns):
        longest = max((len(row["location"]) for row in rows), default=len("location"))
        names, prefix = shorten_names([row["location"] for row in rows], max(LOCATION_MIN, min(room, longest)))
        rows = [dict(row, location=name) for row, name in zip(rows, names, strict=True)]
        if prefix:
            notes.append(f"locations without {prefix.strip()!r}")
    widths = {name: max([len(name), *(len(row[name]) for row in rows)]) for name, _ in columns}
    header = "  ".join(f"{name:{align}{widths[name]}}" for name, align in columns)
    lines.append(header.rstrip())
    for row in rows:
        lines.append("  ".join(f"{row[name]:{align}{widths[name]}}" for name, align in columns).rstrip())
    dropped = [name for name, _ in PLAIN_COLUMNS if name not in dict(columns)]
    if dropped:
        notes.append(f"not shown at {width} columns: {', '.join(dropped)}")
    lines += [f"({note})" for note in notes]
    return lines


def _rate(value) -> str:
    return "—" if value is None else f"{value:,.1f}"


def _since(ms: int) -> str:
    sign = "-" if ms < 0 else ""
    seconds = abs(ms) // 1000
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


SHORT = {
    "reserved": "reserved",
    "too_early": "too early",
    "sold_out": "sold out",
    "already_reserved": "already",
    "one_per_day": "1/day",
    "rate_limited": "limited",
    "closed": "closed",
    "entered": "entered",
    "challenge_invalid": "pow bad",
    "errors": "errors",
}
# Which outcome columns get the room first when not all fit.
OUTCOME_PRIORITY = ("reserved", "sold_out", "errors", "rate_limited", "too_early", "already_reserved", "one_per_day")
OUTCOME_PRIORITY = (*OUTCOME_PRIORITY, *(code for code in warroom.SHOWN if code not in OUTCOME_PRIORITY))
# A rich column costs its text plus one space each side and one border.
CELL_OVERHEAD = 3
# The location column's width before the outcomes after the first one get their turn.
LOCATION_WANT = 16


def consistency_line(check: dict) -> str:
    """The latest PostgreSQL/Redis check (Celery beat runs it every minute), in one line."""
    if check["checked_ago_s"] is None:
        return "PostgreSQL/Redis: not checked yet (Celery beat checks every minute)"
    when = f"{check['slots']} slot(s), {check['checked_ago_s']} s ago"
    if not check["drift"]:
        return f"PostgreSQL/Redis: consistent ({when})"
    details = "; ".join(f"slot {d['slot']}: {', '.join(d['lines'])}" for d in check["drift"])
    return f"PostgreSQL/Redis: DRIFT ({when}): {details}; run `manage.py reconcile --repair`"


def figures_table(figures: dict, width: int = 80) -> Table:
    """The war room's figures as a terminal table no wider than ``width``.

    rich squeezes a table that is too wide until columns have zero width, so the columns are chosen here:
    id, time (with the date when the slots' dates differ), state, since open, left and tickets always; a
    date or location every row shares goes to the title; the location with what is left (its shared
    prefix dropped, then cut); the outcomes (requests/s · total) in ``OUTCOME_PRIORITY`` while they fit,
    the others named in the caption.
    """
    slots = figures["slots"]
    # What every row shares goes to the title instead of a column (the usual case: one day, one boutique).
    dates = {s["date"] for s in slots}
    places = {s["location"] for s in slots}
    shared = [*(places if len(places) == 1 else ()), *(dates if len(dates) == 1 else ())]
    when = "time" if len(dates) == 1 else "when"
    base = {
        "id": [str(s["id"]) for s in slots],
        when: [s["time_label"] if len(dates) == 1 else f"{s['date'][5:]} {s['time_label']}" for s in slots],
        "state": [s["state"] for s in slots],
        "since open": [_since(s["since_open_ms"]) for s in slots],
        "left": ["-" if s["remaining"] is None else str(s["remaining"]) for s in slots],
        "tickets": [f"{s['tickets']}/{s['quota']}" for s in slots],
    }
    outcomes = {code: [f"{_rate(s['rates'][code])} · {s['counts'][code]}" for s in slots] for code in warroom.SHOWN}

    def cost(header: str, cells: list[str]) -> int:
        return max([len(header), *(len(c) for c in cells)]) + CELL_OVERHEAD

    used = 1 + sum(cost(name, cells) for name, cells in base.items())
    longest = max((len(s["location"]) for s in slots), default=0) if len(places) > 1 else 0
    location = 0  # the location column's text width; 0: not shown
    chosen = []
    for item in (OUTCOME_PRIORITY[0], "location", *OUTCOME_PRIORITY[1:]):
        if item == "location":
            if not longest:
                continue  # one location for every row: it is in the title
            # Readable before the rarer outcomes: room for about two words, more if left over at the end.
            want = max(len("location"), min(longest, LOCATION_WANT))
            if used + want + CELL_OVERHEAD <= width:
                location, used = want, used + want + CELL_OVERHEAD
            continue
        extra = cost(SHORT[item], outcomes[item])
        if used + extra + (0 if location else LOCATION_MIN + CELL_OVERHEAD) <= width:
            chosen.append(item)
            used += extra
    if location:
        location = min(max(location, longest), location + width - used)
    elif longest and width - used - CELL_OVERHEAD >= LOCATION_MIN:
        location = width - used - CELL_OVERHEAD
    names, prefix = shorten_names([s["location"] for s in slots], location) if location else ([], "")

    title = " — ".join(["War room", *shared, f"server time {figures['server_time'][:19]}"])
    table = Table(title=title, title_justify="left")
    columns: list[tuple[str, list[str], str]] = [("id", base["id"], "right"), (when, base[when], "left")]
    if names:
        columns.append(("location", names, "left"))
    columns += [
        ("state", base["state"], "left"),
        ("since open", base["since open"], "right"),
        ("left", base["left"], "right"),
        ("tickets", base["tickets"], "right"),
    ]
    columns += [(SHORT[code], outcomes[code], "right") for code in warroom.SHOWN if code in chosen]
    for header, _, justify in columns:
        table.add_column(header, justify=justify, no_wrap=True, overflow="ellipsis")
    for index in range(len(slots)):
        table.add_row(*(cells[index] for _, cells, _ in columns))

    errors = figures["errors"]
    detail = ", ".join(f"{code} {n}" for code, n in sorted(errors["counts"].items())) or "none"
    notes = ["Each outcome: requests/s · total."]
    hidden = [SHORT[code] for code in warroom.SHOWN if code not in chosen]
    if hidden:
        notes.append(f"Not shown at {width} columns: {', '.join(hidden)} (wider terminal, or /staff/warroom/).")
    if not names and len(places) > 1:
        notes.append("Locations not shown at this width.")
    elif prefix:
        notes.append(f"Locations without {prefix.strip()!r}.")
    notes.append(f"Errors outside the script (all slots): {_rate(errors['rate'])}/s; totals: {detail}.")
    if "consistency" in figures:
        notes.append(consistency_line(figures["consistency"]))
    table.caption = " ".join(notes)
    return table
