from __future__ import annotations

import io
import json
import os

from django.core.management.base import BaseCommand, CommandError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from queueing.services import rehearsal
from wartiket.devrun import url_host


def default_url() -> str:
    """Where `make run` serves: its HOST and PORT (from the environment, or the running instance's .data/env)."""
    return f"http://{url_host(os.environ.get('HOST') or '127.0.0.1')}:{os.environ.get('PORT') or 8000}"


class Command(BaseCommand):
    help = (
        "Rehearse a war against a running server (--url, default http://HOST:PORT as `make run` serves, "
        "127.0.0.1:8000 unless set): first check that it answers GET /api/time (if not: one line, exit 1, "
        "nothing created), then make or reuse --users rehearsal buyers with fresh API tokens, a rehearsal slot (or use "
        "--slot) opening --opens-in seconds from now, then fire --attempts-per-user requests per buyer at "
        "the opening over --concurrency connections, plus --early requests before it and --viewers "
        "WebSocket watchers. Prints outcomes, throughput, latencies, sell-out and viewer times and an "
        "exactness check against PostgreSQL; exits 1 when the war was not exact, when no request got an "
        "answer, or when fewer tickets were sold than min(quota, buyers) without refusals (rate_limited, "
        "one_per_day, ...) that explain it. Run it on a machine "
        "with the server's settings (it writes buyers and reads tickets in the same database). "
        "--cleanup removes every rehearsal buyer, ticket and slot; --audit FILE re-checks a saved "
        "--json report. --allocation draw rehearses a draw war: the storm at the opening enters the draw, "
        "and after the draw every buyer asks once for the result; the report adds entries per second, "
        "entrants at close, the draw's duration, draw time → every winner committed, the waiting list, and "
        "the draw's verification."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url", default=default_url(), help="The server (default %(default)s: HOST and PORT, as make run serves)"
        )
        parser.add_argument(
            "--ws-url", help="Where WebSockets are served, if not at --url (e.g. daphne behind no proxy)"
        )
        parser.add_argument("--users", type=int, default=200, help="Rehearsal buyers (default %(default)s)")
        parser.add_argument("--attempts-per-user", type=int, default=1, help="Requests per buyer at the opening")
        parser.add_argument("--quota", type=int, default=50, help="Seats of the rehearsal slot (default %(default)s)")
        parser.add_argument("--opens-in", type=float, default=5.0, help="Seconds until the opening (default 5)")
        parser.add_argument("--slot", type=int, help="Rehearse on this existing slot instead of a new one")
        parser.add_argument(
            "--allocation",
            choices=["fcfs", "draw"],
            default="fcfs",
            help="First come, first served (default), or a draw among entrants (a new slot only)",
        )
        parser.add_argument(
            "--draw-grace",
            type=int,
            default=10,
            help="Draw mode: seconds after the opening until entries close and the draw is made (default 10)",
        )
        parser.add_argument("--concurrency", type=int, default=50, help="Open connections (default %(default)s)")
        parser.add_argument(
            "--processes", type=int, default=min(2, os.cpu_count() or 1), help="Load generator processes"
        )
        parser.add_argument("--early", type=int, default=0, help="Requests spread over the seconds before opening")
        parser.add_argument("--viewers", type=int, default=0, help="WebSocket viewers of the slot's live quota")
        parser.add_argument(
            "--header",
            action="append",
            default=[],
            metavar="'NAME: VALUE'",
            help="Extra request header, repeatable (e.g. 'X-Forwarded-Proto: https' when no proxy is in front)",
        )
        parser.add_argument(
            "--cold", action="store_true", help="Do not pre-fill the identity cache (first requests hit PostgreSQL)"
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="Seconds per request before giving up")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON (for machines)")
        parser.add_argument("--plot", metavar="OUT.png", help="Write a figure of the rehearsal")
        parser.add_argument(
            "--cleanup", action="store_true", help="Remove all rehearsal buyers, their tickets and rehearsal slots"
        )
        parser.add_argument("--audit", metavar="REPORT.json", help="Re-check a saved --json report against PostgreSQL")

    def handle(self, *args, **options):
        if options["cleanup"]:
            summary = rehearsal.cleanup()
            self.stdout.write(
                f"Removed {summary.buyers} rehearsal buyer(s), {summary.tickets} ticket(s), {summary.slots} "
                f"rehearsal slot(s); {summary.released} seat(s) on real slots given back."
            )
            return
        if options["audit"]:
            return self._audit(options["audit"])
        if options["users"] < 1 or options["attempts_per_user"] < 1 or options["concurrency"] < 1:
            raise CommandError("--users, --attempts-per-user and --concurrency must be at least 1")
        if options["slot"] is None and options["quota"] < 1:
            raise CommandError("--quota must be at least 1")
        if options["slot"] is not None and options["allocation"] != "fcfs":
            raise CommandError("--allocation applies to a new rehearsal slot; an existing --slot keeps its own")
        try:
            headers = dict(_header(h) for h in options["header"])
            rehearsal.Target.parse(options["url"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        plan = rehearsal.Plan(
            url=options["url"],
            ws_url=options["ws_url"],
            users=options["users"],
            attempts_per_user=options["attempts_per_user"],
            quota=options["quota"],
            opens_in=max(1.0, options["opens_in"]),
            slot_id=options["slot"],
            concurrency=options["concurrency"],
            processes=options["processes"],
            early=options["early"],
            viewers=options["viewers"],
            headers=headers,
            warm=not options["cold"],
            timeout=options["timeout"],
            allocation=options["allocation"],
            draw_grace_seconds=max(1, options["draw_grace"]),
        )
        console = Console(stderr=True)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            try:
                report = rehearsal.rehearse(plan, _Bar(bar))
            except rehearsal.ServerUnreachable as exc:
                raise CommandError(str(exc)) from None
        if options["plot"]:
            rehearsal.plot(report, options["plot"])
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=1))
        else:
            buffer = io.StringIO()
            _print_report(Console(file=buffer, width=100, force_terminal=self.stdout.isatty()), report, options["plot"])
            self.stdout.write(buffer.getvalue(), ending="")
        if not report["exact"]:
            raise SystemExit(1)

    def _audit(self, path: str):
        try:
            with open(path) as fh:
                report = json.load(fh)
            violations = rehearsal.reaudit(report)
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot audit {path}: {exc}") from exc
        for problem in violations:
            self.stderr.write(self.style.ERROR(f"NOT EXACT: {problem}"))
        if violations:
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(f"slot {report['slot']['id']}: the report matches PostgreSQL; exact."))


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--header must look like 'Name: value', not {text!r}")
    return name.strip(), value.strip()


class _Bar(rehearsal.Progress):
    """The rehearsal's progress as rich bars on stderr (stdout stays clean for --json)."""

    def __init__(self, bar: Progress):
        self.bar = bar
        self.tasks: dict[str, int] = {}
        self.status = bar.add_task("preparing", total=None)

    def _task(self, name: str, total: int) -> int:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        return self.tasks[name]

    def stage(self, text):
        self.bar.update(self.status, description=text)

    def viewers(self, connected, total):
        self.bar.update(self._task("viewers connected", total), completed=connected, total=total)

    def requests(self, done, total):
        self.bar.update(self._task("requests answered", total), completed=done, total=total)

    def zeros(self, seen, total):
        self.bar.update(self._task("viewers showing 0", total), completed=seen, total=total)


def _count(value) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ms(value) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def _print_report(console: Console, report: dict, plot_path: str | None) -> None:
    run, db, viewers, latency = report["run"], report["database"], report["viewers"], report["latency"]
    console.print(f"[bold]Rehearsal of {report['slot']['name']}[/] (slot {report['slot']['id']})")
    console.print(
        f"{run['users']} buyers x {run['attempts_per_user']} attempt(s) over {run['concurrency']} connections "
        f"({run['processes']} processes), {run['early']} early request(s), {run['viewers']} viewer(s), "
        f"server clock offset {run['clock_offset_ms']:+.0f} ms"
    )
    outcomes = Table(title="Answers by outcome", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("requests", justify="right")
    for code, count in report["outcomes"].items():
        outcomes.add_row(code, f"{count:,}")
    outcomes.add_row("[bold]total", f"[bold]{report['requests']:,}")
    console.print(outcomes)

    figures = Table(title="Figures", title_justify="left", show_header=False)
    figures.add_column("what")
    figures.add_column("value", justify="right")
    throughput = report["throughput_rps"]
    figures.add_row("throughput from the opening", "—" if throughput is None else f"{throughput:,.0f} req/s")
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        figures.add_row(f"latency {key[:-3]}", _ms(latency[key]))
    figures.add_row("tickets in PostgreSQL", f"{db['tickets']:,} of {report['slot']['quota']:,}")
    figures.add_row("opening → sold out (Redis)", _ms(db["open_to_sold_out_ms"]))
    figures.add_row("opening → last ticket committed", _ms(db["open_to_last_commit_ms"]))
    if viewers.get("watching"):
        figures.add_row("viewers connected", f"{viewers['connected']:,} of {viewers['watching']:,}")
        figures.add_row("viewers that showed 0", f"{viewers['saw_zero']:,}")
        figures.add_row("sold out → last viewer shows 0", _ms(viewers["last_saw_zero_after_sell_out_ms"]))
        rate = viewers["messages_per_viewer_per_second"]
        figures.add_row("messages per viewer per second", "—" if rate is None else f"{rate:.2f}")
    draw = report.get("draw")
    if draw:
        figures.add_row("draw: entries answered", _count(draw["entries_answered"]))
        figures.add_row("draw: entries per second", _count(draw["entries_per_second"]))
        figures.add_row("draw: entrants at close", _count(draw["entrants_at_close"]))
        figures.add_row("draw: duration", _ms(draw["draw_duration_ms"]))
        figures.add_row("draw time → every winner committed", _ms(draw["draw_at_to_all_committed_ms"]))
        figures.add_row("draw: waiting list", _count(draw["waiting_list"]))
        figures.add_row("draw: verified", "yes" if not draw["verify_problems"] else "NO")
    console.print(figures)

    if report["outcomes"].get("rate_limited"):
        console.print(
            "[yellow]Some requests were rate limited. All of them come from this one machine's address: "
            "see docs/rehearsal.md for WAR_RATE_LIMIT_IP during a rehearsal.[/]"
        )
    shortfall = report.get("shortfall") or {}
    if shortfall.get("missing") and shortfall.get("explained"):
        reasons = ", ".join(f"{n} x {code}" for code, n in shortfall["buyers_without_ticket"].items())
        console.print(
            f"[yellow]{shortfall['missing']} ticket(s) short of the {shortfall['expected_tickets']} possible, "
            f"because the buyers without a ticket were refused: {reasons}.[/]"
        )
    if plot_path:
        console.print(f"Figure written to {plot_path}")
    if report["exact"]:
        console.print(
            f"[bold green]EXACT[/]: {db['tickets']} tickets, numbers 1..{db['tickets']}, nobody twice, none "
            "before the opening, every acknowledged ticket in PostgreSQL."
        )
    else:
        console.print("[bold red]FAILED[/]: this rehearsal does not show an exact war:")
        for problem in report["violations"]:
            console.print(f"  [red]-[/] {problem}")
