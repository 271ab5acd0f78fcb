"""`simulate_war` as an operator runs it: against live servers, its report checked against PostgreSQL.

The server side is real: granian (HTTP), daphne (WebSockets) and the `live_quota` broadcaster as OS
processes on the test database and Redis. The command runs as its own process too, as an operator's would.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import contextmanager

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiToken, User
from accounts.services import identity
from queueing.models import Location, Slot, Ticket
from queueing.services import audit, catalog, quota, rehearsal, reservations
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user
from tests.live import ROOT, free_port, server_env, stop_process, wait_for, web_server
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def process(argv: list[str], **env: str):
    proc = subprocess.Popen(argv, cwd=ROOT, env=server_env(**env), start_new_session=True)
    try:
        yield proc
    finally:
        stop_process(proc)


@contextmanager
def websocket_side():
    """daphne for /ws/ plus the live_quota broadcaster, as in production (docs/deploy.md)."""
    port = free_port()
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wartiket.asgi:application"]
    with process(daphne) as proc, process([sys.executable, "manage.py", "live_quota", "--interval-ms", "100"]):
        wait_for(f"http://127.0.0.1:{port}/api/time", proc=proc)
        yield f"http://127.0.0.1:{port}"


def simulate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "simulate_war", *args],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_rehearsal_report_matches_the_database_and_a_tampered_one_fails_the_audit(tmp_path):
    users, attempts, seats, early, viewers = 60, 2, 20, 6, 5
    plot = tmp_path / "war.png"
    with web_server(workers=2, threads=4) as base, websocket_side() as ws_base:
        result = simulate(
            "--url", base, "--ws-url", ws_base, "--users", str(users), "--attempts-per-user", str(attempts),
            "--quota", str(seats), "--opens-in", "2", "--concurrency", "16", "--early", str(early),
            "--viewers", str(viewers), "--json", "--plot", str(plot),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    report = json.loads(result.stdout)
    slot = Slot.objects.get(pk=report["slot"]["id"])
    tickets = list(Ticket.objects.filter(slot=slot).order_by("queue_number"))

    summary = {k: report[k] for k in ("outcomes", "database", "viewers", "violations")}
    # The report's counts are the database's.
    assert report["exact"] is True and report["violations"] == [], summary
    assert report["requests"] == users * attempts + early == sum(report["outcomes"].values()), summary
    assert report["outcomes"]["reserved"] == len(tickets) == seats == report["database"]["tickets"]
    assert [t.queue_number for t in tickets] == list(range(1, seats + 1))
    assert {a["code"] for a in report["acknowledged"]} == {t.code for t in tickets}
    assert all(t.user.is_rehearsal for t in tickets)
    assert report["database"]["open_to_sold_out_ms"] >= 0
    # reserve.lua counted the same outcomes the buyers were told (the war room reads these counters).
    stats = get_redis().hgetall(slot_keys(slot.pk, slot.war_day).stats)
    assert {k: int(v) for k, v in stats.items()} == report["outcomes"], summary
    # Every viewer watched the sell-out to the final 0.
    assert report["viewers"]["connected"] == report["viewers"]["saw_zero"] == viewers, summary
    assert report["viewers"]["last_saw_zero_after_sell_out_ms"] is not None
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000

    saved = tmp_path / "report.json"
    saved.write_text(result.stdout)
    code, out = audit_command(saved)
    assert code == 0 and "the report matches PostgreSQL; exact" in out

    # Negative control: one acknowledged ticket more than the database holds, under a number already given.
    tampered = dict(report, acknowledged=[*report["acknowledged"], {"code": "ZZZZ-ZZZZ-ZZZZ", "queue_number": 3}])
    saved.write_text(json.dumps(tampered))
    code, out = audit_command(saved)
    assert code == 1
    assert "one queue number told to two buyers: [3]" in out
    assert "without their PostgreSQL row: ['ZZZZ-ZZZZ-ZZZZ']" in out

    # A report that counted one ticket more than PostgreSQL holds fails too.
    saved.write_text(json.dumps(dict(report, database={**report["database"], "tickets": seats + 1})))
    code, out = audit_command(saved)
    assert code == 1 and f"the report counted {seats + 1} tickets but PostgreSQL holds {seats}" in out


def test_a_draw_rehearsal_enters_draws_on_time_tells_every_buyer_and_verifies():
    users, seats = 60, 20
    with web_server(workers=2, threads=4) as base, websocket_side():  # live_quota makes the draw
        result = simulate(
            "--url", base, "--users", str(users), "--quota", str(seats), "--opens-in", "2",
            "--allocation", "draw", "--draw-grace", "3", "--concurrency", "16", "--json",
        )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    report = json.loads(result.stdout)
    draw, outcomes = report["draw"], report["outcomes"]
    assert report["exact"] is True and report["violations"] == [], report["violations"]
    # Every buyer entered once, then asked once: the winners hold their ticket, the rest are on the list.
    assert outcomes["entered"] == users, outcomes
    assert outcomes["already_reserved"] == seats and outcomes["not_drawn"] == users - seats, outcomes
    assert (draw["entrants_at_close"], draw["winners"], draw["waiting_list"]) == (users, seats, users - seats)
    assert draw["verify_problems"] == [] and draw["draw_at_to_all_committed_ms"] is not None
    slot = Slot.objects.get(pk=report["slot"]["id"])
    assert sorted(Ticket.objects.filter(slot=slot).values_list("queue_number", flat=True)) == list(range(1, seats + 1))


def audit_command(path) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("simulate_war", "--audit", str(path), stdout=out, stderr=out)
    except SystemExit as exc:
        return exc.code, out.getvalue()
    return 0, out.getvalue()


def test_the_audit_catches_a_duplicate_number_and_an_untold_ticket():
    slot = make_slot(quota_size=3)
    buyers = [principal_of(make_user().pk) for _ in range(2)]
    made = [reservations.reserve(b, slot.location.slug, slot.time_label, slot.date) for b in buyers]
    told = [audit.Acknowledged(r.code, r.queue_number) for r in made]
    assert audit.exactness_violations(slot, told, expect_sold_out=False, all_answers_seen=True) == []

    duplicate = [*told, audit.Acknowledged("AAAA-BBBB-CCCC", made[0].queue_number)]
    problems = audit.exactness_violations(slot, duplicate, expect_sold_out=False)
    assert any(p.startswith("one queue number told to two buyers") for p in problems)
    untold = audit.exactness_violations(slot, told[:1], expect_sold_out=False, all_answers_seen=True)
    assert untold == [f"tickets in PostgreSQL that no buyer was told about: ['{made[1].code}']"]
    assert audit.exactness_violations(slot, told, expect_sold_out=True) == ["undersold: 2 tickets for a quota of 3"]


def test_rehearsal_buyers_are_reused_with_fresh_tokens():
    first = rehearsal.prepare_buyers(3)
    again = rehearsal.prepare_buyers(4)
    assert [b.user_id for b in again[:3]] == [b.user_id for b in first]
    assert User.objects.filter(is_rehearsal=True).count() == 4
    assert all(identity.principal_for_token(b.token) is None for b in first)
    assert all(identity.principal_for_token(b.token).id == b.user_id for b in again)
    assert ApiToken.objects.filter(user__is_rehearsal=True).count() == 4
    assert len({u.nik for u in User.objects.filter(is_rehearsal=True)}) == 4


def principal_of(user_id: int) -> identity.Principal:
    return identity.principal_for_user(User.objects.get(pk=user_id))


def test_cleanup_removes_rehearsals_and_gives_real_seats_back():
    real_slot = make_slot(quota_size=5)
    real_buyer = make_user()
    reservations.reserve(principal_of(real_buyer.pk), "graha-dipta", "10:00", real_slot.date)
    rehearsal_buyers = rehearsal.prepare_buyers(3)
    on_real = rehearsal_buyers[0]
    reservations.reserve(principal_of(on_real.user_id), "graha-dipta", "10:00", real_slot.date)
    own = rehearsal.open_in(rehearsal.create_slot(2), -1)
    for buyer in rehearsal_buyers[1:]:
        reservations.reserve(principal_of(buyer.user_id), "latihan", own.time_label, own.date)
    assert quota.remaining_for([real_slot])[real_slot.pk] == 3
    own_keys = slot_keys(own.pk, own.war_day)

    out = io.StringIO()
    call_command("simulate_war", "--cleanup", stdout=out)
    assert "Removed 3 rehearsal buyer(s), 3 ticket(s), 1 rehearsal slot(s); 1 seat(s)" in out.getvalue()

    assert not User.objects.filter(is_rehearsal=True).exists()
    assert not Slot.objects.filter(pk=own.pk).exists() and not Location.objects.filter(slug="latihan").exists()
    assert list(Ticket.objects.values_list("user_id", flat=True)) == [real_buyer.pk]
    assert quota.remaining_for([real_slot])[real_slot.pk] == 4
    r = get_redis()
    assert not r.exists(own_keys.slot, own_keys.holders, own_keys.stats)
    assert r.hkeys(own_keys.day) == []
    assert catalog.by_id(own.pk) is None
    assert identity.principal_for_token(on_real.token) is None


def test_simulate_war_refuses_nonsense_options():
    with pytest.raises(CommandError, match="at least 1"):
        call_command("simulate_war", "--users", "0")
    with pytest.raises(CommandError, match="http"):
        call_command("simulate_war", "--url", "ftp://example.com")


def test_nothing_listening_is_one_line_and_exit_1_and_creates_nothing():
    closed = f"http://127.0.0.1:{free_port()}"
    result = simulate("--url", closed, "--users", "5", "--quota", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"CommandError: nothing answers GET {closed}/api/time")
    assert "Traceback" not in result.stderr and "EXACT" not in result.stdout
    assert not Slot.objects.filter(location__slug=rehearsal.REHEARSAL_LOCATION).exists()
    assert not User.objects.filter(is_rehearsal=True).exists()


def test_the_default_url_is_where_make_run_serves():
    env = server_env(HOST="0.0.0.0", PORT="18123")  # noqa: S104 (an address to print, nothing binds it)
    result = subprocess.run(
        [sys.executable, "manage.py", "simulate_war", "--help"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert "http://127.0.0.1:18123" in " ".join(result.stdout.split())


def _info(users: int) -> rehearsal.RunInfo:
    return rehearsal.RunInfo(
        url="http://127.0.0.1:1", users=users, attempts_per_user=1, concurrency=1, processes=1, early=0, viewers=0,
        offset_ms=0.0,
    )  # fmt: skip


def _shot(index: int, status: int, code: str) -> rehearsal.Shot:
    return rehearsal.Shot(
        buyer=index, sent_at=1000.0 + index, latency=0.01, status=status, code=code, ticket=None, queue_number=None,
        early=False,
    )  # fmt: skip


def test_a_rehearsal_that_got_no_answer_or_unexplained_missing_tickets_fails():
    slot = make_slot(quota_size=2)
    refused = [_shot(i, 0, "client_error:ConnectionRefusedError") for i in range(5)]
    report = rehearsal.build_report(slot, refused, [], _info(5))
    assert report["exact"] is False
    assert report["violations"] == [
        "no attempt got an answer from http://127.0.0.1:1: 5 x client_error:ConnectionRefusedError"
    ]
    assert report["throughput_rps"] is None

    unavailable = [_shot(i, 503, "unavailable") for i in range(5)]
    report = rehearsal.build_report(slot, unavailable, [], _info(5))
    assert report["exact"] is False
    assert report["violations"][0].startswith("2 ticket(s) short of the 2 possible")
    assert report["violations"][0].endswith("the last answers of the buyers without a ticket: 5 x unavailable")


def test_missing_tickets_explained_by_rate_limits_are_reported_not_failed():
    slot = make_slot(quota_size=2)
    report = rehearsal.build_report(slot, [_shot(i, 429, "rate_limited") for i in range(3)], [], _info(3))
    assert report["exact"] is True, report["violations"]
    assert report["shortfall"] == {
        "expected_tickets": 2, "missing": 2, "buyers_without_ticket": {"rate_limited": 3}, "explained": True,
    }  # fmt: skip
