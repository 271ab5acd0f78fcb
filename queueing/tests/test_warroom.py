"""The war room: counters with exactly the outcomes that happened, staff-only page and socket, the terminal view."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import urllib.request

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse

from accounts.models import ApiToken
from queueing.services import warroom
from queueing.tests.test_simulate_war import process
from tests.factory import make_slot, make_user, token_client, war_body
from tests.live import ROOT, free_port, wait_for
from tests.live import run_async as run
from wartiket.asgi import application
from wartiket.redis_client import get_redis, reset_redis

ORIGIN = (b"origin", b"http://127.0.0.1")


def post(client, body, **extra):
    return client.post("/api/war", body, format="json", **extra)


@pytest.mark.django_db
def test_a_known_mix_of_outcomes_gives_exactly_those_counts(settings):
    settings.WAR_RATE_LIMIT_USER = 4
    slot = make_slot(quota_size=2)
    later = make_slot(quota_size=5, opens_in=3600, label="13:00", date=slot.date)
    other_day = make_slot(quota_size=5, label="08:00")
    over = make_slot(quota_size=5, opens_in=-120, closes_in=-60, label="15:00", date=slot.date)
    a, b, c, d = (token_client(make_user()) for _ in range(4))

    codes = [
        post(a, war_body(slot)),  # reserved
        post(b, war_body(slot)),  # reserved
        post(a, war_body(slot)),  # already_reserved
        post(c, war_body(slot)),  # sold_out
        post(c, war_body(slot)),  # sold_out
        post(d, war_body(later, date=later.date.isoformat())),  # too_early (another slot: counted there)
        post(a, war_body(over, date=over.date.isoformat())),  # closed
        post(d, war_body(other_day, date=other_day.date.isoformat())),  # reserved on another day
    ]
    # d holds a ticket on another day, so here: one_per_day only on the same day. b tries a second slot today.
    codes.append(post(b, war_body(later, date=later.date.isoformat())))  # too_early
    for _ in range(3):
        codes.append(post(c, war_body(slot)))  # c's 3rd, 4th attempt: sold_out; 5th: rate_limited
    # Refused before the script: counted once each as site-wide errors.
    codes.append(post(a, {"location_id": "nowhere", "time_slot": "10:00"}))  # unknown_slot
    codes.append(post(a, {"time_slot": "25:99"}))  # invalid
    codes.append(Client().post("/api/war", "{", content_type="application/json"))  # not_authenticated
    codes.append(a.post("/api/war", "{", content_type="application/json"))  # malformed_json
    codes.append(post(token_client(make_user(nik=None)), war_body(slot)))  # nik_required
    seen = [response.json()["code"] for response in codes]
    assert seen == [
        "reserved", "reserved", "already_reserved", "sold_out", "sold_out", "too_early", "closed", "reserved",
        "too_early", "sold_out", "sold_out", "rate_limited", "unknown_slot", "invalid", "not_authenticated",
        "malformed_json", "nik_required",
    ]  # fmt: skip

    figures = warroom.Sampler([slot.pk, later.pk, over.pk]).sample()
    by_id = {item["id"]: item for item in figures["slots"]}
    assert by_id[slot.pk]["counts"] == {
        "reserved": 2,
        "too_early": 0,
        "sold_out": 4,
        "already_reserved": 1,
        "one_per_day": 0,
        "rate_limited": 1,
        "closed": 0,
        "entered": 0,
        "challenge_invalid": 0,
        "errors": 0,
    }
    assert by_id[later.pk]["counts"]["too_early"] == 2
    assert by_id[over.pk]["counts"]["closed"] == 1
    assert (by_id[slot.pk]["remaining"], by_id[slot.pk]["tickets"], by_id[slot.pk]["state"]) == (0, 2, "sold_out")
    assert by_id[later.pk]["state"] == "upcoming" and by_id[later.pk]["since_open_ms"] < 0
    assert figures["errors"]["counts"] == {
        "unknown_slot": 1,
        "invalid": 1,
        "not_authenticated": 1,
        "malformed_json": 1,
        "nik_required": 1,
    }


@pytest.mark.django_db
def test_one_per_day_and_rates_between_two_readings():
    slot = make_slot(quota_size=5)
    second = make_slot(quota_size=5, label="13:00", date=slot.date)
    buyer = token_client(make_user())
    post(buyer, war_body(slot))
    sampler = warroom.Sampler([second.pk])
    first = sampler.sample()
    assert first["slots"][0]["rates"]["one_per_day"] is None  # no earlier reading to compare with yet
    for _ in range(3):
        assert post(buyer, war_body(second, date=second.date.isoformat())).json()["code"] == "one_per_day"
    later = sampler.sample()
    seconds = (later["server_ms"] - first["server_ms"]) / 1000
    assert later["slots"][0]["counts"]["one_per_day"] == 3
    assert later["slots"][0]["rates"]["one_per_day"] == round(3 / seconds, 1)
    assert later["slots"][0]["rates"]["reserved"] == 0.0


@pytest.mark.django_db
def test_errors_counted_while_redis_was_down_are_added_when_it_is_back(settings):
    warroom._pending.clear()
    warroom._retry_at = 0.0
    real = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there: a real refused connection
    settings.REDIS_SOCKET_TIMEOUT = 0.5
    reset_redis()
    warroom.count_error("unavailable")
    warroom.count_error("unavailable")  # within the retry pause: not even tried
    settings.REDIS_URL = real
    reset_redis()
    assert get_redis().hgetall(warroom.ERRORS_KEY) == {}
    warroom._retry_at = 0.0  # the pause is over
    warroom.count_error("invalid")
    assert get_redis().hgetall(warroom.ERRORS_KEY) == {"unavailable": "2", "invalid": "1"}


@pytest.mark.django_db
def test_todays_wars_are_those_opening_today_or_open_now():
    open_now = make_slot(opens_in=-60)  # slot day is in two days; its war opened a minute ago
    later_today = make_slot(opens_in=5, label="13:00")
    next_week = make_slot(opens_in=7 * 86400, label="08:00")
    ids = [s.pk for s in warroom.todays_slots()]
    assert open_now.pk in ids and later_today.pk in ids and next_week.pk not in ids


@pytest.mark.django_db
def test_the_war_room_page_is_for_staff_only(client):
    slot = make_slot(quota_size=3)
    url = reverse("staff:warroom")
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"] == f"{reverse('admin:login')}?next={url}"

    client.force_login(make_user())
    assert client.get(url).status_code == 403
    assert client.get(reverse("staff:warroom-slot", args=[slot.pk])).status_code == 403

    client.force_login(make_user(is_staff=True))
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["figures"]["slots"][0]["id"] == slot.pk
    assert 'id="warroom-initial"' in page.content.decode() and "/ws/staff/warroom/" in page.content.decode()
    one = client.get(reverse("staff:warroom-slot", args=[slot.pk]))
    assert one.status_code == 200 and f"/ws/staff/warroom/{slot.pk}/" in one.content.decode()
    assert client.get(reverse("staff:warroom-slot", args=[999999])).status_code == 404


@pytest.mark.django_db
def test_the_admin_index_links_the_war_room(client):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse("staff:warroom")}"' in page
    assert "Site administration" in page or "Administrasi situs" in page  # the admin's own index is still there


def session_cookie(user) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode())


@pytest.mark.django_db(transaction=True)
def test_the_war_room_socket_pushes_fresh_figures_to_staff_only():
    slot = make_slot(quota_size=4)
    staff, buyer = make_user(is_staff=True), make_user()
    staff_cookie, buyer_cookie = session_cookie(staff), session_cookie(buyer)
    token = token_client(buyer)

    def reserve_and_close():
        try:
            post(token, war_body(slot))
        finally:
            connections.close_all()

    async def scenario():
        refused = WebsocketCommunicator(application, "/ws/staff/warroom/", headers=[ORIGIN, buyer_cookie])
        refused_anonymous = WebsocketCommunicator(application, f"/ws/staff/warroom/{slot.pk}/", headers=[ORIGIN])
        results = [(await refused.connect())[0], (await refused_anonymous.connect())[0]]

        socket = WebsocketCommunicator(application, f"/ws/staff/warroom/{slot.pk}/", headers=[ORIGIN, staff_cookie])
        connected, _ = await socket.connect()
        first = await socket.receive_json_from(timeout=5)
        await sync_to_async(reserve_and_close, thread_sensitive=False)()
        # Poll with a deadline: the reservation shows up in one of the next pushes (twice a second).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        latest = first
        while latest["slots"][0]["counts"]["reserved"] == 0 and loop.time() < deadline:
            latest = await socket.receive_json_from(timeout=5)
        await socket.disconnect()
        return results, connected, first, latest

    refusals, connected, first, latest = run(scenario)
    assert refusals == [False, False]
    assert connected
    assert first["type"] == "figures" and [s["id"] for s in first["slots"]] == [slot.pk]
    assert latest["slots"][0]["counts"]["reserved"] == 1
    assert (latest["slots"][0]["remaining"], latest["slots"][0]["tickets"]) == (3, 1)
    assert latest["server_ms"] - first["server_ms"] <= 5000


@pytest.mark.django_db
def test_war_status_watch_shows_the_war_room_figures(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # wide enough for every outcome column
    slot = make_slot(quota_size=6)
    buyer = token_client(make_user())
    post(buyer, war_body(slot))
    post(buyer, war_body(slot))
    out = io.StringIO()
    call_command("war_status", "--watch", "--slot", str(slot.pk), "--count", "2", "--interval", "0.2", stdout=out)
    text = out.getvalue()
    assert text.count("War room — ") == 2
    row = next(line for line in text.splitlines() if line.startswith(f"│ {slot.pk:>2} ") or f"│ {slot.pk} │" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[4:6] == ["5", "1/6"]  # id, time, state, since open, left, tickets (one location: in the title)
    assert cells[6].endswith("· 1") and cells[9].endswith("· 1")  # reserved 1, already_reserved 1
    assert "Not shown at" not in text
    assert text.rstrip().endswith("war_status: 2 refresh(es)")


@pytest.mark.django_db
@pytest.mark.parametrize("columns", [80, 120])
def test_war_status_watch_fits_80_and_120_columns_with_every_slots_id_time_and_remaining(monkeypatch, columns):
    # rich squeezed the 14 columns into 80 or 120 until some had zero width.
    monkeypatch.setenv("COLUMNS", str(columns))
    slots = [
        make_slot(quota_size=5, location=location, label=label)
        for location, label in (
            ("butik-emas-lm-gedung-antam-pulo-gadung", "10:00"),
            ("butik-emas-lm-gedung-antam-pulo-gadung", "13:00"),
            ("butik-emas-lm-setiabudi-one", "10:00"),
        )
    ]
    post(token_client(make_user()), war_body(slots[1]))
    out = io.StringIO()
    ids = [arg for slot in slots for arg in ("--slot", str(slot.pk))]
    call_command("war_status", "--watch", *ids, "--count", "1", "--interval", "0.2", stdout=out)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    header = next(line for line in lines if "since open" in line)
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    assert names[:3] == ["id", "time", "location"] and {"left", "tickets", "reserved"} <= set(names)
    assert all(names), names  # no column squeezed to nothing
    for slot, left in zip(slots, (5, 4, 5), strict=True):
        row = next(line for line in lines if line.startswith("│") and line.split("│")[1].strip() == str(slot.pk))
        cells = dict(zip(names, (cell.strip() for cell in row.split("│")[1:-1]), strict=True))
        assert cells["time"] == slot.time_label
        assert cells["left"] == str(left)
    if columns == 80:
        assert "Not shown at 80 columns:" in out.getvalue()
    else:
        assert {"sold out", "errors", "limited"} <= set(names)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_staff_watch_a_war_live_in_a_real_browser():
    from playwright.sync_api import expect, sync_playwright

    slot = make_slot(quota_size=5)
    make_user(email="staf@example.com", password="rahasia-staf-2026", is_staff=True)
    tokens = [ApiToken.issue(make_user()) for _ in range(2)]
    connections.close_all()  # the browser part runs an event loop in this thread: no ORM from here on

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "wartiket.asgi:application"]
    with process(argv) as proc, sync_playwright() as pw:
        wait_for(f"{base}/api/time", proc=proc)
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{base}/staff/warroom/")
        assert "/admin/login/" in page.url  # anonymous: the admin login first
        page.fill("#id_username", "staf@example.com")
        page.fill("#id_password", "rahasia-staf-2026")
        page.click("input[type=submit]")
        page.wait_for_url(f"{base}/staff/warroom/")
        expect(page.get_by_test_id("warroom-status")).to_have_attribute("data-live", "1")
        row = page.locator(f"tr[data-slot='{slot.pk}']")
        expect(row.get_by_test_id("remaining")).to_have_text("5")

        body = json.dumps(war_body(slot)).encode()
        for token in tokens:
            request = urllib.request.Request(  # noqa: S310 (loopback only)
                f"{base}/api/war",
                data=body,
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback only)
                assert response.status == 201
        expect(row.get_by_test_id("remaining")).to_have_text("3", timeout=5000)
        expect(row.get_by_test_id("tickets")).to_have_text("2 / 5")
        expect(row.locator("[data-count=reserved]")).to_have_text("2")
        age = float(page.get_by_test_id("warroom-age").inner_text().split()[0])
        assert age <= 1.0
        # Let the chart gather a few seconds of history, then keep a picture for humans to look at.
        page.wait_for_timeout(2500)
        (ROOT / "artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "artifacts" / "warroom.png"), full_page=True)
        browser.close()


# --- The war endpoint's own validation (queueing.war_endpoint.war_fields) accepts only what its schema documents ---

PLAIN_CASES = [
    {"location_id": "graha-dipta", "time_slot": "10:00"},
    {"location_id": "graha-dipta", "time_slot": "10:00", "date": "2026-01-31", "user_id": 5},
    {"location_id": "graha-dipta", "time_slot": "10:00", "user_id": "5", "extra": [1, 2]},
    {"location_id": "g" * 64, "time_slot": "23:59"},
    {"location_id": "g" * 65, "time_slot": "10:00"},
    {"location_id": " graha-dipta", "time_slot": "10:00"},
    {"location_id": "graha dipta", "time_slot": "10:00"},
    {"location_id": "graha-dipta", "time_slot": "10:00\n"},
    {"location_id": "graha-dipta", "time_slot": "24:00"},
    {"location_id": "graha-dipta", "time_slot": "9:00"},
    {"location_id": "graha-dipta", "time_slot": "10:00", "date": "2026-02-30"},
    {"location_id": "graha-dipta", "time_slot": "10:00", "date": "2026-2-3"},
    {"location_id": "graha-dipta", "time_slot": "10:00", "date": None},
    {"location_id": "graha-dipta", "time_slot": "10:00", "user_id": True},
    {"location_id": "graha-dipta", "time_slot": "10:00", "user_id": 1.5},
    {"location_id": 7, "time_slot": "10:00"},
    ["graha-dipta", "10:00"],
]


@pytest.mark.parametrize("body", PLAIN_CASES)
def test_war_fields_accept_only_what_the_schemas_serializer_accepts_with_the_same_values(body):
    from queueing.serializers import WarRequestSerializer
    from queueing.war_endpoint import war_fields

    fields, errors = war_fields(body)
    form = WarRequestSerializer(data=body)
    if not errors:
        assert form.is_valid(), form.errors
        assert fields == dict(form.validated_data)
    else:
        assert errors and all(isinstance(messages, list) and messages for messages in errors.values())
