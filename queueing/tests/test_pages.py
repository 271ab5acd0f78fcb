"""Buyer pages through Django's test client, on real PostgreSQL and Redis."""

from __future__ import annotations

import datetime
import json
import re

import pytest
import qrcode
from django.template.response import SimpleTemplateResponse
from django.test import Client
from django.utils import timezone

from queueing.models import Location, Slot, Ticket
from queueing.services import live, pages, quota
from queueing.services.store import slot_keys
from tests.factory import make_slot, make_user, token_client, war_body
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db

ONE_DAY = datetime.timedelta(days=1)


def logged_in(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def war_config(response) -> dict:
    match = re.search(
        r'<script id="war-config" type="application/json">(.*?)</script>', response.content.decode(), re.S
    )
    assert match, "the war page embeds its config"
    return json.loads(match.group(1))


def reserve(slot, user=None) -> dict:
    response = token_client(user or make_user()).post("/api/war", war_body(slot), format="json")
    assert response.status_code == 201, response.json()
    return response.json()["ticket"]


def test_home_leads_with_the_war_opening_soonest_and_lists_locations_with_states():
    later = make_slot(opens_in=3600, location="puri-indah", label="13:00")
    soon = make_slot(quota_size=7, opens_in=120, location="graha-dipta", label="10:00")
    response = Client().get("/")
    html = response.content.decode()
    assert response.status_code == 200
    hero = html[html.index('data-testid="next-war"') : html.index("</section>", html.index('data-testid="next-war"'))]
    assert soon.location.name in hero and f"/war/{soon.pk}/" in hero
    assert "7" in hero and "state-upcoming" in hero
    assert 'data-testid="location-puri-indah"' in html and f"/war/{later.pk}/" in html
    assert '<meta name="server-ms"' in html


def section(html: str, testid: str) -> str:
    start = html.index(f'data-testid="{testid}"')
    return html[start : html.index("</section>", start)]


def test_open_wars_are_listed_as_open_and_the_next_war_is_the_next_to_open():
    upcoming = make_slot(opens_in=60, location="puri-indah")
    open_now = make_slot(opens_in=-60, location="graha-dipta")
    html = Client().get("/").content.decode()
    opened = section(html, "open-wars")
    assert "Sedang dibuka" in opened and f"/war/{open_now.pk}/" in opened and f"/war/{upcoming.pk}/" not in opened
    hero = section(html, "next-war")
    assert "War berikutnya" in hero and f"/war/{upcoming.pk}/" in hero and f"/war/{open_now.pk}/" not in hero
    assert Client().get("/war/")["Location"] == f"/war/{open_now.pk}/"  # a newcomer goes where they can act now


def test_the_home_headline_is_the_site_not_a_boutique():
    make_slot(opens_in=60, location="graha-dipta")
    html = Client().get("/").content.decode()
    h1 = re.findall(r"<h1[^>]*>(.*?)</h1>", html, re.S)
    assert h1 == ["War antrean butik emas"]


def test_opening_times_are_said_in_the_tense_of_the_state_in_english():
    upcoming = make_slot(opens_in=600, location="puri-indah", label="13:00")
    open_now = make_slot(opens_in=-60, location="graha-dipta", label="10:00")
    client = Client()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})

    def visible_phrases(fragment: str) -> list[str]:
        return re.findall(r'<span data-when="\w+">([^<]+)</span>', fragment)

    home = client.get("/").content.decode()
    assert visible_phrases(section(home, "next-war")) == ["War opens"]
    assert "War opens" not in section(home, "open-wars") and "War opened" in section(home, "open-wars")
    place = client.get("/locations/graha-dipta/").content.decode()
    row = place[place.index(f'data-testid="slot-{open_now.pk}"') :]
    assert visible_phrases(row[: row.index("</a>")]) == ["War opened"]
    place = client.get("/locations/puri-indah/").content.decode()
    row = place[place.index(f'data-testid="slot-{upcoming.pk}"') :]
    assert visible_phrases(row[: row.index("</a>")]) == ["War opens"]


def test_a_logged_in_buyer_sees_their_tickets_on_home_and_no_demo_login(settings):
    from queueing.services.demo import BUYERS

    settings.DEBUG = True
    make_user(email=BUYERS[0][0])  # the demo buyer exists: visitors get the hint
    slot = make_slot(opens_in=-60, label="10:00")
    buyer = make_user()
    ticket = reserve(slot, buyer)
    assert 'data-testid="demo-login"' in Client().get("/").content.decode()
    assert 'data-testid="my-tickets"' not in Client().get("/").content.decode()

    html = logged_in(buyer).get("/").content.decode()
    assert 'data-testid="demo-login"' not in html
    mine = section(html, "my-tickets")
    assert f'href="/tickets/#{ticket["code"]}"' in mine and "Nomor 1" in mine and slot.location.name in mine
    # A cancelled ticket is not "your ticket" any more.
    logged_in(buyer).post(f"/tickets/{ticket['code']}/cancel")
    assert 'data-testid="my-tickets"' not in logged_in(buyer).get("/").content.decode()


def test_the_location_page_shows_each_slot_with_quota_remaining_and_state():
    upcoming = make_slot(quota_size=5, opens_in=600, label="08:00")
    open_now = make_slot(quota_size=3, opens_in=-60, label="10:00")
    sold_out = make_slot(quota_size=1, opens_in=-60, label="13:00")
    closed = make_slot(quota_size=4, opens_in=-120, closes_in=-60, label="15:00")
    reserve(open_now)
    reserve(sold_out)
    html = Client().get("/locations/graha-dipta/").content.decode()

    def row(slot) -> str:
        start = html.index(f'data-testid="slot-{slot.pk}"')
        return html[start : html.index("</a>", start)]

    assert "state-upcoming" in row(upcoming) and "<strong>5</strong> dari 5" in row(upcoming)
    assert "state-open" in row(open_now) and "<strong>2</strong> dari 3" in row(open_now)
    assert "state-sold_out" in row(sold_out) and "<strong>0</strong> dari 1" in row(sold_out)
    assert "state-closed" in row(closed)
    assert Client().get("/locations/nowhere/").status_code == 404


def test_the_war_page_for_an_anonymous_viewer_offers_login_and_the_live_state():
    slot = make_slot(quota_size=4, opens_in=300)
    response = Client().get(f"/war/{slot.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="login-to-war"' in html and f"/accounts/login/?next=/war/{slot.pk}/" in html
    assert 'data-testid="take"' not in html
    config = war_config(response)
    assert config["ws_path"] == f"/ws/slots/{slot.pk}/"
    assert config["state"]["remaining"] == 4 and config["state"]["state"] == "upcoming"
    assert config["state"]["version"] == int(get_redis().hget(slot_keys(slot.pk, slot.war_day).slot, "ver"))
    assert config["slot"] == {
        "id": slot.pk,
        "location": "graha-dipta",
        "date": slot.date.isoformat(),
        "time_slot": "10:00",
    }
    assert set(config["guide"]) >= {"sold_out", "one_per_day", "too_early", "rate_limited", "unavailable"}
    assert Client().get("/war/999999/").status_code == 404


def test_the_button_is_rendered_disabled_before_the_war_and_enabled_once_open():
    buyer = make_user()
    before = make_slot(opens_in=300, label="08:00")
    after = make_slot(opens_in=-5, label="10:00")
    client = logged_in(buyer)
    take = re.compile(r'<button[^>]*id="take"[^>]*>')
    assert "disabled" in take.search(client.get(f"/war/{before.pk}/").content.decode()).group(0)
    assert "disabled" not in take.search(client.get(f"/war/{after.pk}/").content.decode()).group(0)


def test_a_buyer_without_nik_is_sent_to_the_profile_first():
    slot = make_slot()
    html = logged_in(make_user(nik=None)).get(f"/war/{slot.pk}/").content.decode()
    assert 'data-testid="nik-first"' in html and f"/accounts/profile/?next=/war/{slot.pk}/" in html
    assert 'id="take"' not in html


def test_a_buyer_holding_a_number_sees_it_on_the_war_page():
    slot = make_slot()
    buyer = make_user()
    ticket = reserve(slot, buyer)
    response = logged_in(buyer).get(f"/war/{slot.pk}/")
    html = response.content.decode()
    success = html[html.index('id="panel-success"') :]
    assert success.index("hidden") > success.index(">")  # the success panel itself is not hidden
    assert f'data-testid="queue-number">{ticket["queue_number"]}<' in html
    assert ticket["code"] in html
    assert war_config(response)["ticket"] == {"code": ticket["code"], "queue_number": 1}


def test_holding_another_slot_that_day_is_pointed_out_with_a_link():
    morning = make_slot(label="08:00")
    noon = make_slot(label="13:00", date=morning.date)
    buyer = make_user()
    ticket = reserve(morning, buyer)
    html = logged_in(buyer).get(f"/war/{noon.pk}/").content.decode()
    assert 'data-testid="other-ticket"' in html and f"/tickets/#{ticket['code']}" in html


TAKE = re.compile(r'<button[^>]*id="take"[^>]*>.*?</button>', re.S)


def take_button(html: str) -> tuple[bool, str]:
    """(disabled?, label) of the war button as rendered."""
    button = TAKE.search(html).group(0)
    label = re.search(r'id="take-label">([^<]*)<', button).group(1)
    return " disabled" in button.split(">", 1)[0], label


def hint(html: str) -> tuple[str, str]:
    """(state, text) of the sentence under the war button."""
    match = re.search(r'id="take-hint" data-hint="([^"]+)"[^>]*>(.*?)</(p|div)>', html, re.S)
    return match.group(1), re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", match.group(2))).strip()


def test_one_per_day_the_button_is_off_and_the_page_says_why_with_a_link_to_the_ticket():
    morning = make_slot(label="08:00", location="puri-indah")
    noon = make_slot(label="13:00", date=morning.date, opens_in=-30)  # open, with seats
    buyer = make_user()
    held = reserve(morning, buyer)
    client = logged_in(buyer)
    response = client.get(f"/war/{noon.pk}/")
    html = response.content.decode()
    assert take_button(html) == (True, "Sudah punya antrean hari ini")
    state, text = hint(html)
    assert state == "one_per_day"
    assert "Anda sudah memegang nomor 1 di Puri Indah jam 08:00 pada hari yang sama" in text
    assert "tombol ini nonaktif" in text
    assert f'href="/tickets/#{held["code"]}" data-testid="other-ticket-link"' in html
    assert war_config(response)["blocked"] is True
    assert re.search(r'id="open-message"[^>]*hidden', html)  # no "War dibuka! Ambil antrean sekarang."
    # What the page says is what the war answers.
    refused = token_client(buyer).post("/api/war", war_body(noon, date=noon.date.isoformat()), format="json")
    assert (refused.status_code, refused.json()["code"]) == (409, "one_per_day")

    # Negative controls: another day, or a cancelled ticket, leaves the button on.
    other_day = make_slot(label="13:00", opens_in=-30, date=morning.date + datetime.timedelta(days=1))
    assert take_button(client.get(f"/war/{other_day.pk}/").content.decode()) == (False, "Ambil Antrean")
    client.post(f"/tickets/{held['code']}/cancel")
    html = client.get(f"/war/{noon.pk}/").content.decode()
    assert take_button(html) == (False, "Ambil Antrean") and 'data-testid="other-ticket"' not in html


def test_without_the_one_per_day_rule_another_ticket_that_day_does_not_block(settings):
    settings.WAR_ONE_PER_DAY = False
    morning = make_slot(label="08:00")
    noon = make_slot(label="13:00", date=morning.date, opens_in=-30)
    buyer = make_user()
    reserve(morning, buyer)
    response = logged_in(buyer).get(f"/war/{noon.pk}/")
    assert take_button(response.content.decode()) == (False, "Ambil Antrean")
    assert war_config(response)["blocked"] is False


def test_the_text_under_the_button_follows_the_state():
    buyer = make_user()
    client = logged_in(buyer)
    upcoming = make_slot(opens_in=600, label="08:00")
    open_now = make_slot(opens_in=-30, label="10:00")
    sold_out = make_slot(quota_size=1, opens_in=-30, label="13:00")
    closed = make_slot(opens_in=-120, closes_in=-60, label="15:00")
    sold_then_closed = make_slot(quota_size=1, opens_in=-120, closes_in=600, label="16:00")
    reserve(sold_out)
    reserve(sold_then_closed)
    # Sold while open, then its close moved into the past (as staff would; their save syncs Redis on commit).
    sold_then_closed.war_closes_at = timezone.now() - datetime.timedelta(seconds=5)
    sold_then_closed.save()
    quota.sync_all([sold_then_closed])

    def page(slot):
        html = client.get(f"/war/{slot.pk}/").content.decode()
        return take_button(html), hint(html)

    assert page(upcoming) == ((True, "Ambil Antrean"), ("upcoming", pages.war_hints()["upcoming"]))
    assert page(open_now) == ((False, "Ambil Antrean"), ("open", pages.war_hints()["open"]))
    (button, (state, text)) = page(sold_out)
    assert button == (True, "Kuota habis") and state == "sold_out"
    assert "muncul lagi di halaman ini secara langsung" in text
    assert "Tombol aktif tepat saat war dibuka" not in shown(client.get(f"/war/{sold_out.pk}/"))
    assert page(closed) == ((True, "War sudah ditutup"), ("closed", pages.war_hints()["closed"]))
    # Sold out and past its close: no seat comes back, so it must not promise one.
    assert page(sold_then_closed) == ((True, "War sudah ditutup"), ("closed", pages.war_hints()["closed"]))
    # Every state's sentence is in the config, for the page's script to swap in.
    assert set(war_config(client.get(f"/war/{open_now.pk}/"))["hints"]) == set(live.STATES)


def test_a_sold_out_war_links_other_open_or_upcoming_slots_of_that_place_or_day():
    sold = make_slot(quota_size=1, opens_in=-30, label="10:00", location="graha-dipta")
    reserve(sold)
    same_place_later = make_slot(opens_in=600, label="10:00", location="graha-dipta", date=sold.date + ONE_DAY)
    same_day_elsewhere = make_slot(opens_in=-30, label="13:00", location="puri-indah", date=sold.date)
    elsewhere_other_day = make_slot(opens_in=600, label="13:00", location="puri-indah", date=sold.date + ONE_DAY)
    closed_same_place = make_slot(opens_in=-120, closes_in=-60, label="15:00", location="graha-dipta", date=sold.date)
    sold_same_place = make_slot(quota_size=1, opens_in=-30, label="08:00", location="graha-dipta", date=sold.date)
    reserve(sold_same_place)

    html = Client().get(f"/war/{sold.pk}/").content.decode()
    block = html[html.index('id="other-slots"') : html.index("</section>", html.index('id="other-slots"'))]
    assert not re.search(r'id="other-slots"[^>]*hidden', html)  # shown at once: the war is sold out
    linked = [int(pk) for pk in re.findall(r'href="/war/(\d+)/" data-testid="other-slot"', block)]
    # This boutique first, then the same day elsewhere; never a closed, sold-out or unrelated slot.
    assert linked == [same_place_later.pk, same_day_elsewhere.pk]
    for absent in (elsewhere_other_day, closed_same_place, sold_same_place, sold):
        assert absent.pk not in linked

    # While seats are left the list waits hidden (the script shows it if the war sells out).
    html = Client().get(f"/war/{same_day_elsewhere.pk}/").content.decode()
    assert re.search(r'id="other-slots"[^>]*hidden', html)


def shown(response) -> str:
    """The page as rendered, without the script config (which carries every state's sentences)."""
    return response.content.decode().split('<script id="war-config"')[0]


def test_an_anonymous_visitor_of_an_open_war_is_not_told_to_prepare_before_it_opens():
    open_now = make_slot(opens_in=-30, label="10:00")
    upcoming = make_slot(opens_in=600, label="13:00")
    html = shown(Client().get(f"/war/{open_now.pk}/"))
    assert "sebelum war dibuka" not in html and "hanya sekali, lalu Anda kembali ke halaman ini" in html
    assert "siapkan sebelum war dibuka" in shown(Client().get(f"/war/{upcoming.pk}/"))


def test_dev_controls_are_on_the_war_page_with_debug(settings):
    settings.DEBUG = True
    slot = make_slot()
    response = Client().get(f"/war/{slot.pk}/")
    html = response.content.decode()
    assert 'id="dev-controls"' in html
    for state in ("prewar", "loading", "success", "failure"):
        assert f'data-dev="{state}"' in html
    assert war_config(response)["dev_controls"] is True


def test_dev_controls_are_absent_without_debug(settings):
    settings.DEBUG = False
    slot = make_slot()
    response = Client().get(f"/war/{slot.pk}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "dev-controls" not in html and "Dev Controls" not in html and "data-dev=" not in html
    assert war_config(response)["dev_controls"] is False


def test_the_state_endpoint_answers_what_the_socket_would_send():
    slot = make_slot(quota_size=3)
    reserve(slot)
    body = Client().get(f"/war/{slot.pk}/state").json()
    expected = live.read_state(slot.pk).message()
    assert {k: body[k] for k in ("slot", "remaining", "quota", "state", "version", "opens_ms")} == {
        k: expected[k] for k in ("slot", "remaining", "quota", "state", "version", "opens_ms")
    }
    assert body["remaining"] == 2
    assert Client().get("/war/999999/state").status_code == 404


def test_the_page_button_path_posts_to_the_api_with_the_session_and_csrf_token():
    slot = make_slot()
    client = logged_in(make_user(), enforce_csrf_checks=True)
    client.get(f"/war/{slot.pk}/")
    token = client.cookies["csrftoken"].value
    body = {"location_id": "graha-dipta", "time_slot": "10:00", "date": slot.date.isoformat()}
    refused = client.post("/api/war", body, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    taken = client.post("/api/war", body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert taken.status_code == 201, taken.json()
    assert taken.json()["ticket"]["queue_number"] == 1


def qr_modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules of an SvgPathImage QR: each 'Mx,yH…' is one module at column x, row y."""
    path = re.search(r'<path d="([^"]+)"', svg).group(1)
    return {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)H", path)}


def test_my_tickets_show_number_status_and_a_qr_of_the_code():
    slot = make_slot()
    buyer = make_user()
    ticket = reserve(slot, buyer)
    reserve(slot)  # someone else's ticket must not show
    response = logged_in(buyer).get("/tickets/")
    html = response.content.decode()
    assert html.count('data-testid="ticket"') == 1
    card = html[html.index(f'id="{ticket["code"]}"') :]
    assert 'data-testid="ticket-number">1<' in card and 'data-status="active"' in card
    svg = re.search(r"<svg .*?</svg>", card, re.S).group(0)
    matrix = qrcode.QRCode(border=2)
    matrix.add_data(ticket["code"])
    expected = {(x, y) for y, row in enumerate(matrix.get_matrix()) for x, dark in enumerate(row) if dark}
    assert qr_modules(svg) == expected
    assert Client().get("/tickets/").status_code == 302


def test_cancelling_from_my_tickets_frees_the_seat():
    slot = make_slot(quota_size=2)
    buyer = make_user()
    ticket = reserve(slot, buyer)
    client = logged_in(buyer)
    response = client.post(f"/tickets/{ticket['code']}/cancel", follow=True)
    assert Ticket.objects.get(code=ticket["code"]).status == "cancelled"
    assert live.read_state(slot.pk).remaining == 2
    html = response.content.decode()
    assert "dibatalkan" in html and 'data-status="cancelled"' in html
    assert "<svg" not in html  # no QR for a cancelled ticket
    assert client.get(f"/tickets/{ticket['code']}/cancel").status_code == 405


def test_nobody_can_cancel_someone_elses_ticket():
    slot = make_slot()
    ticket = reserve(slot, make_user())
    response = logged_in(make_user()).post(f"/tickets/{ticket['code']}/cancel", follow=True)
    assert Ticket.objects.get(code=ticket["code"]).status == "active"
    assert "Tidak ditemukan." in response.content.decode()


def test_indonesian_by_default_and_english_when_chosen():
    slot = make_slot()
    client = logged_in(make_user())
    assert "Ambil Antrean" in client.get(f"/war/{slot.pk}/").content.decode()
    client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    html = client.get(f"/war/{slot.pk}/").content.decode()
    assert 'lang="en"' in html
    assert "Take a queue number" in html and "Ambil Antrean" not in html
    assert war_config(client.get(f"/war/{slot.pk}/"))["guide"]["sold_out"]["message"].startswith("Sold out")


def test_next_war_shortcut_redirects_to_the_war_opening_soonest():
    make_slot(opens_in=7200, label="13:00")
    soon = make_slot(opens_in=90, label="10:00")
    assert Client().get("/war/")["Location"] == f"/war/{soon.pk}/"


def test_the_busy_page_renders_without_a_request():
    html = SimpleTemplateResponse("503.html", status=503).render().content.decode()
    assert "Layanan sedang sibuk" in html and "bootstrap.min.css" in html


def test_no_page_loads_anything_from_another_site():
    slot = make_slot()
    buyer = make_user()
    reserve(slot, buyer)
    client = logged_in(buyer)
    for path in ("/", "/locations/graha-dipta/", f"/war/{slot.pk}/", "/tickets/", "/accounts/profile/"):
        html = client.get(path).content.decode()
        assert client.get(path).status_code == 200, path
        assert not re.search(r'(src|href|action)="(https?:)?//', html), path


# --- Rehearsal locations are not for buyers ----------------------------------------------------------


def rehearsal_slot():
    """A slot exactly as `simulate_war` makes one: at the `latihan` location, on a real war day, open now."""
    from queueing.services import rehearsal

    return rehearsal.open_in(rehearsal.create_slot(5), -30)


def test_rehearsal_slots_are_hidden_from_buyers_everywhere_but_staff_see_them():
    real = make_slot(opens_in=600, location="graha-dipta")
    drill = rehearsal_slot()
    assert drill.location.is_rehearsal and drill.date > timezone.localdate()  # a real, upcoming war day

    home = Client().get("/").content.decode()
    assert "Latihan" not in home and "/locations/latihan/" not in home and f"/war/{drill.pk}/" not in home
    assert f"/war/{real.pk}/" in home  # negative control: the same page does list a real war
    assert Client().get("/locations/latihan/").status_code == 404
    assert Client().get(f"/war/{drill.pk}/").status_code == 404
    assert logged_in(make_user()).get(f"/war/{drill.pk}/").status_code == 404
    assert Client().get("/war/")["Location"] == f"/war/{real.pk}/"  # the open rehearsal is not "the next war"

    # What /api/slots lists (queueing/api.py builds it on this helper): the real slot only.
    assert list(Slot.objects.visible()) == [real]
    assert list(Location.objects.visible()) == [real.location]

    staff = logged_in(make_user(is_staff=True, is_superuser=True))
    warroom = staff.get("/staff/warroom/").content.decode()
    assert "Latihan war (rehearsal)" in warroom
    assert staff.get(f"/staff/warroom/{drill.pk}/").status_code == 200
    assert "Latihan war (rehearsal)" in staff.get("/admin/queueing/location/").content.decode()


def test_an_inactive_location_is_hidden_from_buyers_too():
    slot = make_slot(opens_in=600, location="tutup")
    Location.objects.filter(pk=slot.location_id).update(active=False)
    assert Client().get("/locations/tutup/").status_code == 404
    assert Client().get(f"/war/{slot.pk}/").status_code == 404
    assert "/locations/tutup/" not in Client().get("/").content.decode()


def test_a_rehearsal_location_made_before_the_flag_is_flagged_when_a_rehearsal_reuses_it():
    from queueing.services import rehearsal

    Location.objects.create(slug="latihan", name="Latihan war (rehearsal)")
    assert rehearsal.rehearsal_location().is_rehearsal
    assert Location.objects.get(slug="latihan").is_rehearsal
    assert not Location.objects.visible().filter(slug="latihan").exists()


def test_the_slots_api_leaves_rehearsal_slots_out():
    real = make_slot(opens_in=600)
    drill = rehearsal_slot()
    listed = {item["id"] for item in Client().get("/api/slots").json()}
    assert real.pk in listed and drill.pk not in listed
    assert Client().get(f"/api/slots/{drill.pk}").status_code == 404


# --- The admin speaks Indonesian ---------------------------------------------------------------------


def staff_client(**kwargs) -> Client:
    return logged_in(make_user(is_staff=True, is_superuser=True), **kwargs)


def test_the_admin_is_indonesian_from_header_to_field_labels():
    slot = make_slot()
    reserve(slot)
    admin = staff_client()
    index = admin.get("/admin/").content.decode()
    for word in ("War Tiket — Admin", "Antrean war", "Lokasi", "Tiket", "Token bypass", "Notifikasi Telegram"):
        assert word in index, word
    for english in ("Django administration", "Administrasi Django", "Queueing", "Locations", "Tickets", "Accounts"):
        assert english not in index, english

    locations = admin.get("/admin/queueing/location/").content.decode()
    assert "Pilih lokasi untuk diubah" in locations and "Pilih location untuk diubah" not in locations

    slots = admin.get("/admin/queueing/slot/").content.decode()
    for label in ("Tanggal", "Jam kunjungan", "Kuota", "Sisa (Redis)", "War dibuka", "War ditutup"):
        assert f">{label}<" in slots, label
    for english in ("Time label", "Quota", "Remaining (Redis)", "Closes at", "War opens at"):
        assert english not in slots, english

    form = admin.get(f"/admin/queueing/location/{slot.location_id}/change/").content.decode()
    assert "Detik war dibuka, menurut jam server" in form
    assert "The second the war opens" not in form and "Empty: the war closes" not in form

    tickets = admin.get("/admin/queueing/ticket/").content.decode()
    assert "Tandai tiket terpilih sudah hadir" in tickets and "Check in selected tickets" not in tickets
    assert ">Pembeli<" in tickets and ">Diambil pada<" in tickets

    user = admin.get(f"/admin/accounts/user/{make_user().pk}/change/").content.decode()
    assert ">Profil<" in user and ">Hak akses<" in user and ">Profile<" not in user


def test_admin_ticket_actions_answer_in_indonesian_with_plurals_in_english():
    slot = make_slot(quota_size=3)
    codes = [reserve(slot)["code"] for _ in range(2)]
    pks = list(Ticket.objects.filter(code__in=codes).values_list("pk", flat=True))
    admin = staff_client()
    done = admin.post("/admin/queueing/ticket/", {"action": "check_in", "_selected_action": pks[:1]}, follow=True)
    assert "1 tiket ditandai hadir." in done.content.decode()

    admin.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    done = admin.post("/admin/queueing/ticket/", {"action": "cancel", "_selected_action": pks}, follow=True)
    html = done.content.decode()
    assert "1 ticket cancelled." in html  # the checked-in one is not cancellable: one of two
    assert "Cancel selected tickets" in html and "War Tiket — Admin" in html
    assert "Time label" not in admin.get("/admin/queueing/slot/").content.decode()
    assert ">Visit time<" in admin.get("/admin/queueing/slot/").content.decode()
