"""Operator commands and the staff admin, used the way staff would."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from queueing.models import BypassToken, Location, Slot, Ticket
from queueing.services import quota
from queueing.services.store import slot_keys
from tests.factory import admin_slot_form, make_slot, make_user, token_client, war_body
from tests.live import ROOT, server_env
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=out)
    return out.getvalue()


def test_seed_demo_is_idempotent_and_prints_logins(settings):
    settings.DEBUG = True
    first = run("seed_demo", "--demo-war-in", "90")
    assert "pembeli@example.com / antre-dulu-2026" in first
    assert "staf@example.com" in first
    counts = (Location.objects.count(), Slot.objects.count())
    run("seed_demo")
    assert (Location.objects.count(), Slot.objects.count()) == counts
    assert Location.objects.filter(slug="graha-dipta").exists()


def test_seed_demo_opens_the_demo_war_that_the_readme_curl_reaches(settings):
    settings.DEBUG = True
    run("seed_demo", "--demo-war-in", "90")
    # on_commit does not fire inside a test transaction: sync as `make run` does next.
    call_command("sync_quota", stdout=io.StringIO())
    buyer = token_client(make_user())
    response = buyer.post("/api/war", {"location_id": "graha-dipta", "time_slot": "10:00"}, format="json")
    assert response.json()["code"] == "too_early"
    assert 80 <= int(response["Retry-After"]) <= 91


def test_seed_demo_refuses_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="Refusing"):
        run("seed_demo")


def test_war_status_shows_each_war():
    slot = make_slot(quota_size=7)
    token_client(make_user()).post("/api/war", war_body(slot), format="json")
    out = run("war_status")
    line = next(row for row in out.splitlines() if row.strip().startswith(str(slot.pk)))
    assert line.split()[-3:] == ["7", "6", "1"]
    assert "OPEN" in line


def test_sync_quota_one_slot_after_redis_lost_it():
    slot = make_slot(quota_size=3)
    get_redis().delete(slot_keys(slot.pk, slot.war_day).slot)
    assert quota.remaining_for([slot])[slot.pk] is None
    out = run("sync_quota", "--slot", str(slot.pk))
    assert f"slot {slot.pk}: built, remaining 3" in out
    assert quota.remaining_for([slot])[slot.pk] == 3


@pytest.fixture
def staff_client(client):
    staff = make_user(is_staff=True, is_superuser=True)
    client.force_login(staff)
    return client


def test_admin_refuses_a_quota_below_an_issued_number(staff_client):
    slot = make_slot(quota_size=5)
    for _ in range(3):
        token_client(make_user()).post("/api/war", war_body(slot), format="json")
    url = reverse("admin:queueing_slot_change", args=[slot.pk])
    form = admin_slot_form(slot, quota="2")
    response = staff_client.post(url, form)
    assert response.status_code == 200
    assert "sampai 3" in response.content.decode()
    slot.refresh_from_db()
    assert slot.quota == 5


def test_admin_slot_list_shows_remaining_from_redis(staff_client):
    slot = make_slot(quota_size=5)
    token_client(make_user()).post("/api/war", war_body(slot), format="json")
    page = staff_client.get(reverse("admin:queueing_slot_changelist")).content.decode()
    assert '<td class="field-remaining">4</td>' in page


def test_admin_shows_a_new_bypass_token_once_and_stores_only_its_hash(staff_client):
    slot = make_slot()
    response = staff_client.post(
        reverse("admin:queueing_bypasstoken_add"),
        {"name": "Audit BPK", "slot": slot.pk, "expires_at_0": "2099-01-01", "expires_at_1": "10:00:00"},
        follow=True,
    )
    page = response.content.decode()
    token = BypassToken.objects.get()
    raw = page.split("<code>")[1].split("</code>")[0]
    assert raw.startswith("wtb_")
    assert raw not in (token.key_hash, token.prefix)
    assert raw not in staff_client.get(reverse("admin:queueing_bypasstoken_change", args=[token.pk])).content.decode()


def test_production_settings_pass_check_deploy():
    env = {
        **os.environ,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "p" * 30 + "Q" * 30 + "!@#$%^&*()",
        "DJANGO_ALLOWED_HOSTS": "antrean.example.id",
        "WAR_TESTING": "0",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_secrets_can_come_from_files(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" + "k" * 50 + "\n")
    env = {**os.environ, "DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY_FILE": str(secret), "WAR_TESTING": "0"}
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; from django.conf import settings; django.setup(); print(settings.SECRET_KEY)",
        ],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "wartiket.settings"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "from-a-file-" + "k" * 50


def test_staff_cancel_in_admin_frees_the_seat_and_check_in_keeps_it(staff_client):
    slot = make_slot(quota_size=2)
    codes = [
        token_client(make_user()).post("/api/war", war_body(slot), format="json").json()["ticket"]["code"]
        for _ in range(2)
    ]
    changelist = reverse("admin:queueing_ticket_changelist")
    first, second = (Ticket.objects.get(code=c) for c in codes)
    staff_client.post(changelist, {"action": "cancel", "_selected_action": [first.pk]})
    staff_client.post(changelist, {"action": "check_in", "_selected_action": [second.pk]})
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("cancelled", "checked_in")
    assert quota.remaining_for([slot])[slot.pk] == 1
    # A checked-in ticket still holds its number: the freed number 1 is the one reissued.
    again = token_client(make_user()).post("/api/war", war_body(slot), format="json").json()
    assert again["ticket"]["queue_number"] == first.queue_number


def _long_named_slots():
    return [
        make_slot(quota_size=q, location=location, label=label)
        for location, label, q in (
            ("butik-emas-lm-gedung-antam-pulo-gadung", "10:00", 11),
            ("butik-emas-lm-gedung-antam-pulo-gadung", "13:00", 12),
            ("butik-emas-lm-setiabudi-one", "10:00", 13),
        )
    ]


@pytest.mark.parametrize("columns", [80, 120])
def test_war_status_fits_the_terminal_and_shows_every_slots_id_time_and_remaining(monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    slots = _long_named_slots()
    lines = run("war_status").splitlines()
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    header = lines[0].split()
    assert header[:3] == ["id", "date", "time"] and header[-3:] == ["quota", "left", "tickets"]
    for slot in slots:
        row = next(line for line in lines if line.split()[0] == str(slot.pk))
        cells = row.split()
        assert cells[2] == slot.time_label  # 10:00 and 13:00 of one boutique no longer look alike
        assert cells[-3:] == [str(slot.quota), str(slot.quota), "0"]
    if columns == 80:  # the full names do not fit: the words they share go first
        assert "(locations without 'Butik Emas Lm')" in lines


@pytest.mark.parametrize("command", ["reconcile", "sync_quota"])
def test_every_operator_command_refuses_an_unknown_slot_id(command):
    make_slot(quota_size=4)
    with pytest.raises(CommandError, match="no slot with id 9999"):
        call_command(command, slot=[9999])


def test_war_status_says_whether_postgres_and_redis_agreed_at_the_last_check(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    slot = make_slot(quota_size=4)
    assert "PostgreSQL/Redis: not checked yet" in run("war_status")
    call_command("reconcile")  # the check beat runs every minute, recorded
    assert "PostgreSQL/Redis: consistent (" in run("war_status")
    get_redis().hset(slot_keys(slot.pk, slot.war_day).slot, "quota", 9)
    with pytest.raises(SystemExit):
        call_command("reconcile")
    out = run("war_status")
    assert "PostgreSQL/Redis: DRIFT (" in out and f"slot {slot.pk}: quota differs" in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_war_status_drops_less_important_columns_on_a_narrow_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "50")
    slots = _long_named_slots()
    lines = run("war_status").splitlines()
    assert all(len(line) <= 50 for line in lines), "\n".join(lines)
    for slot in slots:
        row = next(line for line in lines if line.split()[0] == str(slot.pk))
        header = lines[0].split()
        assert "id" in header and "time" in header and "left" in header
        # Location cells may hold spaces: count the time from the left and "left" from the right.
        assert row.split()[header.index("time")] == slot.time_label
        assert row.split()[header.index("left") - len(header)] == str(slot.quota)
    assert any(line.startswith("(not shown at 50 columns: ") and "quota" in line for line in lines)


def test_war_status_slot_filters_and_an_unknown_slot_is_an_error():
    wanted, other = make_slot(quota_size=4), make_slot(quota_size=5, label="13:00")
    out = run("war_status", "--slot", str(wanted.pk))
    rows = [line.split() for line in out.splitlines()[1:]]
    ids = [cells[0] for cells in rows if cells[0].isdigit() and cells[1] != "slot(s);"]
    assert ids == [str(wanted.pk)] and str(other.pk) not in ids
    for extra in ([], ["--watch", "--count", "1"]):
        with pytest.raises(CommandError, match="no slot with id 9999"):
            run("war_status", "--slot", "9999", *extra)
    result = subprocess.run(
        [sys.executable, "manage.py", "war_status", "--watch", "--slot", "9999", "--count", "1"],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: no slot with id 9999; `manage.py war_status` lists them"
