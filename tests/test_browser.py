"""The buyer's journey in a real browser (Debian's chromium via Playwright) against real processes:
daphne serving pages, API and WebSockets on one origin, and the `live_quota` broadcaster.

Wars are created far in the future, then moved to open a few seconds ahead once the pages are up, the
way staff would move them in admin: that change itself travels to the pages over the socket.
"""

from __future__ import annotations

import base64
import datetime
import json
import re

import pytest
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services.identity import Principal
from accounts.validators import make_nik
from queueing.models import Allocation, Challenge, Draw, DrawEntry, Slot, Ticket
from queueing.services import clock, draws, reservations
from queueing.services.store import pow_key
from tests.browser import (
    DESKTOP,
    PHONE,
    phone_page,
    session_cookie,
    shifted_clock_script,
)
from tests.factory import make_slot, make_user
from tests.live import poll
from tests.pow import solve
from wartiket.redis_client import get_redis

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEN_MINUTES_MS = 10 * 60 * 1000


def open_war_in(slot: Slot, seconds: float) -> int:
    """Move the war to open ``seconds`` from now by the server clock (as staff would); returns its epoch ms."""
    opens = clock.redis_now() + datetime.timedelta(seconds=seconds)
    slot.war_opens_at = opens
    slot.save()  # post_save syncs Redis (bumping the version) and the catalog once committed
    return int(opens.timestamp() * 1000)


def buyers(n: int, start: int = 100) -> list[Principal]:
    users = User.objects.bulk_create(
        User(email=f"crowd{i}@example.com", full_name=f"Crowd {i}", nik=make_nik(i, birth=datetime.date(1988, 3, 4)))
        for i in range(start, start + n)
    )
    return [Principal(id=u.pk, has_nik=True) for u in users]


def text(page, selector: str) -> str:
    return page.locator(selector).inner_text().strip()


def is_live(page) -> bool:
    return page.locator("#live-status").get_attribute("data-live") == "1"


def test_a_new_buyer_registers_waits_for_the_war_and_takes_a_number_while_another_window_watches(
    site, browser, recorder
):
    slot = make_slot(quota_size=10, opens_in=3600)
    war_path = f"/war/{slot.pk}/"
    buyer_ctx = browser.new_context(viewport=PHONE, locale="id-ID")
    watcher_ctx = browser.new_context(viewport=DESKTOP, locale="id-ID")
    buyer, watcher = buyer_ctx.new_page(), watcher_ctx.new_page()
    recorder.watch("buyer", buyer)
    recorder.watch("watcher", watcher)
    war_posts = []
    buyer.on("request", lambda r: war_posts.append(r) if r.url.endswith("/api/war") else None)
    try:
        with recorder.on_failure():
            buyer.goto(f"{site}/accounts/register/?next={war_path}")
            buyer.fill("#id_email", "Sari.Wulandari@example.com")
            buyer.fill("#id_full_name", "Sari Wulandari")
            buyer.fill("#id_nik", make_nik(77, birth=datetime.date(1993, 6, 21), female=True))
            buyer.fill("#id_phone", "0813 2222 3333")
            buyer.fill("#id_password1", "gold-rush-2026!")
            buyer.fill("#id_password2", "gold-rush-2026!")
            # The proof-of-work widget solved in the background while the form was filled (no click on it):
            # its hidden field holds the payload the server verifies.
            buyer.wait_for_function("() => (document.querySelector('input[name=altcha]') || {}).value", timeout=30000)
            recorder.shot("register", buyer)
            buyer.click("form button[type=submit]")
            buyer.wait_for_url(f"{site}{war_path}")
            assert User.objects.get(email="sari.wulandari@example.com").nik

            watcher.goto(f"{site}{war_path}")
            poll(lambda: is_live(buyer) and is_live(watcher), message="both pages on the live socket")
            assert text(watcher, "#remaining") == "10"
            watcher.evaluate("window.__notReloaded = true")
            assert re.match(r"^(59:\d\d|01:00:00)$", text(buyer, "#countdown")), text(buyer, "#countdown")
            assert buyer.locator("#take").is_disabled()
            recorder.shot("prewar", buyer)

            # Record every countdown value the buyer sees, to check it runs down to zero.
            buyer.evaluate(
                """() => { window.__seen = [];
                   const el = document.getElementById('countdown');
                   new MutationObserver(() => window.__seen.push(el.textContent)).observe(el, {childList: true});
                }"""
            )
            # Seconds of slack for the move to reach the page on a loaded host (the countdown must show it).
            opens_ms = open_war_in(slot, 8)
            buyer.wait_for_function("() => !document.getElementById('take').disabled", timeout=20000)
            enabled_at = clock.redis_now_ms()
            seen = buyer.evaluate("window.__seen")
            assert "00:01" in seen and "00:03" in seen, seen
            assert enabled_at >= opens_ms - 300, "the button enabled before the server's open time"
            assert buyer.locator("#countdown-box").is_hidden()
            recorder.shot("open", buyer)

            # A double click is one request: the button disables itself before the request leaves.
            buyer.locator("#take").dblclick()
            buyer.locator("#panel-success").wait_for(state="visible", timeout=15000)
            ticket = Ticket.objects.get(user__email="sari.wulandari@example.com")
            assert text(buyer, "#queue-number") == str(ticket.queue_number) == "1"
            assert text(buyer, "#ticket-code") == ticket.code
            assert len(war_posts) == 1
            recorder.shot("success", buyer)

            watcher.wait_for_function("() => document.getElementById('remaining').textContent.trim() === '9'")
            for principal in buyers(9):
                reservations.reserve(principal, slot.location.slug, slot.time_label, slot.date, client_ip="10.9.9.9")
            watcher.wait_for_function("() => document.getElementById('remaining').textContent.trim() === '0'")
            buyer.wait_for_function("() => document.getElementById('remaining').textContent.trim() === '0'")
            assert watcher.locator("#war [data-state-badge]").get_attribute("data-state") == "sold_out"
            assert watcher.evaluate("window.__notReloaded") is True
            recorder.shot("sold-out", watcher)
    finally:
        buyer_ctx.close()
        watcher_ctx.close()


@pytest.mark.parametrize("offset_ms", [TEN_MINUTES_MS, -TEN_MINUTES_MS], ids=["device-10min-fast", "device-10min-slow"])
def test_a_wrong_device_clock_still_opens_the_button_at_the_servers_time(site, browser, recorder, offset_ms):
    slot = make_slot(quota_size=5, opens_in=3600)
    with (
        phone_page(browser, site, recorder, user=make_user(), init_script=shifted_clock_script(offset_ms)) as page,
        recorder.on_failure(),
    ):
        page.goto(f"{site}/war/{slot.pk}/")
        device_skew = page.evaluate("Date.now()") - clock.redis_now_ms()
        assert abs(device_skew - offset_ms) < 5000, "the init script shifted the page's clock"
        poll(lambda: is_live(page), message="the live socket")
        assert re.match(r"^(59:\d\d|01:00:00)$", text(page, "#countdown")), text(page, "#countdown")
        recorder.shot("prewar", page)

        opens_ms = open_war_in(slot, 8)
        page.wait_for_function("() => /^00:0[1-8]$/.test(document.getElementById('countdown').textContent)")
        assert page.locator("#take").is_disabled()
        page.wait_for_function("() => !document.getElementById('take').disabled", timeout=20000)
        enabled_at = clock.redis_now_ms()
        assert opens_ms - 300 <= enabled_at <= opens_ms + 3000, enabled_at - opens_ms
        recorder.shot("open", page)
        page.click("#take")
        page.locator("#panel-success").wait_for(state="visible", timeout=15000)
        assert text(page, "#queue-number") == "1"


def test_on_a_challenge_slot_the_page_solves_during_the_countdown_and_the_click_at_the_opening_gets_the_number(
    site, browser, recorder
):
    slot = make_slot(quota_size=5, opens_in=3600)
    slot.challenge = Challenge.ON
    slot.save()  # the war catalog learns the level after the commit, as from the admin
    with phone_page(browser, site, recorder, user=make_user()) as page, recorder.on_failure():
        war_posts = []
        page.on("request", lambda r: war_posts.append(r) if r.url.endswith("/api/war") else None)
        page.goto(f"{site}/war/{slot.pk}/")
        poll(lambda: is_live(page), message="the live socket")
        # Solved in the background (the altcha library's workers), long before the opening and with no click.
        page.wait_for_function("() => document.getElementById('war').dataset.proof === 'ready'", timeout=30000)
        assert page.locator("#take").is_disabled()
        recorder.shot("prewar-solved", page)

        open_war_in(slot, 5)
        page.wait_for_function("() => !document.getElementById('take').disabled", timeout=20000)
        page.click("#take")
        page.locator("#panel-success").wait_for(state="visible", timeout=15000)
        assert text(page, "#queue-number") == "1"
        assert len(war_posts) == 1
        payload = json.loads(base64.b64decode(war_posts[0].headers["x-altcha"]))
        assert payload["challenge"]["parameters"]["data"] == {"level": "on", "slot": slot.pk}
        # The server spent exactly that proof (reserve.lua's replay mark).
        assert get_redis().exists(pow_key(slot.war_day, payload["challenge"]["signature"]))
        recorder.shot("success", page)


def test_on_a_challenge_slot_a_retry_sends_a_fresh_solution(site, browser, recorder):
    slot = make_slot(quota_size=5, opens_in=-30)
    slot.challenge = Challenge.ON
    slot.save()
    with phone_page(browser, site, recorder, user=make_user()) as page, recorder.on_failure():
        proofs = []

        def route(request_route):
            proofs.append(request_route.request.headers.get("x-altcha"))
            if len(proofs) == 1:
                request_route.abort()  # the first attempt is lost on the way (a dropped connection)
            else:
                request_route.continue_()

        page.route("**/api/war", route)
        page.goto(f"{site}/war/{slot.pk}/")
        page.wait_for_function("() => document.getElementById('war').dataset.proof === 'ready'", timeout=30000)
        page.click("#take")
        page.locator("#panel-failure").wait_for(state="visible", timeout=15000)
        assert text(page, "#failure-code") == "network"
        page.wait_for_function("() => !document.getElementById('failure-retry').disabled", timeout=15000)
        page.click("#failure-retry")
        page.locator("#panel-success").wait_for(state="visible", timeout=15000)
        assert len(proofs) == 2 and all(proofs)
        assert proofs[0] != proofs[1], "each attempt carries its own solution"


def test_when_the_socket_drops_the_page_polls_says_so_still_takes_a_number_and_resyncs(site, browser, recorder):
    slot = make_slot(quota_size=6, opens_in=-30)
    with phone_page(browser, site, recorder, user=make_user()) as page, recorder.on_failure():
        sockets, mode = [], {"connect": True}

        def route(ws):
            sockets.append(ws)
            if mode["connect"]:
                ws.connect_to_server()

        page.route_web_socket(re.compile(r".*/ws/slots/\d+/$"), route)
        page.goto(f"{site}/war/{slot.pk}/")
        poll(lambda: is_live(page), message="the live socket")
        assert text(page, "#remaining") == "6"

        # The connection drops, and the next one reaches no server.
        mode["connect"] = False
        sockets[-1].close()
        poll(lambda: page.locator("#live-status").inner_text().startswith("Menyambung ulang"), message="notice")
        for principal in buyers(2):
            reservations.reserve(principal, slot.location.slug, slot.time_label, slot.date, client_ip="10.8.8.8")
        page.wait_for_function("() => document.getElementById('remaining').textContent.trim() === '4'")
        assert not is_live(page)
        recorder.shot("reconnecting", page)

        page.click("#take")
        page.locator("#panel-success").wait_for(state="visible", timeout=15000)
        assert text(page, "#queue-number") == "3"

        # The server comes back: the page reconnects and takes the state it missed.
        for principal in buyers(1, start=200):
            reservations.reserve(principal, slot.location.slug, slot.time_label, slot.date, client_ip="10.8.8.8")
        mode["connect"] = True
        sockets[-1].close()
        poll(lambda: is_live(page), timeout=30, message="the socket back")
        page.wait_for_function("() => document.getElementById('remaining').textContent.trim() === '2'")


def test_dev_controls_switch_states_without_calling_the_backend(site, browser, recorder):
    slot = make_slot(quota_size=5, opens_in=-30)
    with phone_page(browser, site, recorder, user=make_user()) as page, recorder.on_failure():
        war_posts = []
        page.on("request", lambda r: war_posts.append(r.url) if "/api/war" in r.url else None)
        page.goto(f"{site}/war/{slot.pk}/")
        dev = page.locator("#dev-controls")
        assert dev.is_visible()

        dev.locator("[data-dev=prewar]").click()
        assert page.locator("#countdown-box").is_visible() and page.locator("#take").is_disabled()
        assert re.match(r"^01:(29|30)$", text(page, "#countdown")), text(page, "#countdown")
        recorder.shot("prewar", page)

        dev.locator("[data-dev=loading]").click()
        assert page.locator("#take-spinner").is_visible() and page.locator("#take").is_disabled()
        recorder.shot("loading", page)

        dev.locator("[data-dev=success]").click()
        assert page.locator("#panel-success").is_visible() and text(page, "#queue-number") == "7"
        recorder.shot("success", page)

        dev.locator("#dev-code").select_option("one_per_day")
        dev.locator("[data-dev=failure]").click()
        assert page.locator("#panel-failure").is_visible()
        assert text(page, "#failure-code") == "one_per_day"
        assert page.locator("#failure-link").get_attribute("href").endswith("/tickets/#DEMO-0000-0001")
        dev.locator("#dev-code").select_option("rate_limited")
        dev.locator("[data-dev=failure]").click()
        assert re.match(r"^Coba lagi dalam [1-5] detik$", text(page, "#failure-retry"))
        recorder.shot("failure", page)

        dev.locator("[data-dev=live]").click()
        assert page.locator("#take").is_enabled() and page.locator("#panel-live").is_visible()
        assert war_posts == []
        assert Ticket.objects.count() == 0


def test_every_page_fits_a_390px_phone_without_sideways_scrolling(site, browser, recorder):
    slot = make_slot(quota_size=5, opens_in=-30)
    user = make_user()
    reservations.reserve(Principal(id=user.pk, has_nik=True), slot.location.slug, slot.time_label, slot.date)
    paths = ["/", "/locations/graha-dipta/", f"/war/{slot.pk}/", "/tickets/", "/accounts/profile/"]
    anonymous = ["/accounts/login/", "/accounts/register/"]
    context = browser.new_context(viewport=PHONE, locale="id-ID")
    guest = browser.new_context(viewport=PHONE, locale="id-ID")
    context.add_cookies([session_cookie(site, user)])
    try:
        with recorder.on_failure():
            for ctx, group in ((context, paths), (guest, anonymous)):
                page = ctx.new_page()
                recorder.watch("page", page)
                for path in group:
                    page.goto(f"{site}{path}")
                    recorder.shot(path.strip("/").replace("/", "-") or "home", page)
                    width = page.evaluate("document.documentElement.scrollWidth")
                    assert width <= PHONE["width"], f"{path} is {width}px wide"
                page.close()
    finally:
        context.close()
        guest.close()


def test_the_language_switcher_turns_the_page_english(site, browser, recorder):
    slot = make_slot(opens_in=600)
    with phone_page(browser, site, recorder) as page, recorder.on_failure():
        page.goto(f"{site}/war/{slot.pk}/")
        assert text(page, "#countdown-label") == "War dibuka dalam"
        page.click(".navbar-toggler")
        page.select_option("#lang-select", "en")
        page.wait_for_function("() => document.documentElement.lang === 'en'")
        assert text(page, "#countdown-label") == "War opens in"
        assert page.url.endswith(f"/war/{slot.pk}/")


def test_cancelling_a_ticket_asks_for_confirmation_first(site, browser, recorder):
    slot = make_slot(quota_size=5, opens_in=-30)
    user = make_user()
    held = reservations.reserve(Principal(id=user.pk, has_nik=True), slot.location.slug, slot.time_label, slot.date)
    with phone_page(browser, site, recorder, user=user) as page, recorder.on_failure():
        page.goto(f"{site}/tickets/")
        page.click("[data-testid=cancel]")
        dialog = page.locator(f"#cancel-{held.code}")
        dialog.wait_for(state="visible")
        recorder.shot("confirm", page)
        dialog.locator("button[data-bs-dismiss=modal].btn-secondary").click()
        dialog.wait_for(state="hidden")
        assert Ticket.objects.get(code=held.code).status == "active"

        page.click("[data-testid=cancel]")
        dialog.wait_for(state="visible")
        dialog.locator("[data-testid=confirm-cancel]").click()
        page.locator(f'[data-code="{held.code}"][data-status="cancelled"]').wait_for()
        assert Ticket.objects.get(code=held.code).status == "cancelled"
        assert page.locator(".alert-success").is_visible()
        recorder.shot("cancelled", page)


def test_a_buyer_enters_a_draw_war_sees_registered_then_the_waiting_list_then_a_promotion_and_verifies_it(
    site, browser, recorder
):
    """Draw mode as a buyer lives it: proof solved in the background, "terdaftar", the result arriving by itself.

    The slot's secret seed is replaced (before the draw, as only a test may) by one that puts this buyer
    second of two for one seat, so the waiting list and the promotion after a cancel are both seen.
    """
    now = clock.redis_now()
    slot = make_slot(quota_size=1, opens_in=3600)
    slot.allocation, slot.challenge, slot.draw_grace_seconds = Allocation.DRAW, Challenge.ON, 1
    slot.war_opens_at = now + datetime.timedelta(seconds=12)  # entries open 15 min before: open now
    slot.save()  # Redis, the catalog and the Draw row (its commitment) follow after the commit
    buyer = make_user(email="dewi.draw@example.com")
    with phone_page(browser, site, recorder, user=buyer) as page, recorder.on_failure():
        war_posts = []
        page.on("request", lambda r: war_posts.append(r) if r.url.endswith("/api/war") else None)
        page.goto(f"{site}/war/{slot.pk}/")
        poll(lambda: is_live(page), message="the live socket")
        page.wait_for_function("() => document.getElementById('war').dataset.proof === 'ready'", timeout=30000)
        assert page.locator("#war").get_attribute("data-draw") == "entry_open"
        assert not page.locator("#take").is_disabled()
        recorder.shot("draw-window", page)

        page.click("#take")
        page.locator("#panel-entered").wait_for(state="visible", timeout=15000)
        entry = DrawEntry.objects.get(slot=slot, user=buyer)
        assert text(page, "#entry-pseudonym") == entry.pseudonym
        assert "x-altcha" in war_posts[0].headers
        recorder.shot("entered", page)

        # A second entrant, then a seed that draws the buyer second (test-only: the seed is secret).
        [other] = buyers(1, start=500)
        proof = solve(APIClient().get(f"/api/challenge?slot={slot.pk}").json())
        reservations.reserve(other, slot.location.slug, slot.time_label, slot.date, client_ip="10.1.1.1", proof=proof)
        names = list(DrawEntry.objects.filter(slot=slot).values_list("pseudonym", flat=True))
        seed = next(s for s in (f"{i:064x}" for i in range(1000)) if draws.draw_order(s, names)[1] == entry.pseudonym)
        Draw.objects.filter(slot=slot).update(seed=seed, commitment=draws.commitment_of(seed))

        poll(lambda: clock.redis_now() >= slot.draw_at, timeout=30, message="the draw time")
        draws.run_draw(slot.pk)
        page.locator("#panel-waitlist").wait_for(state="visible", timeout=15000)
        assert text(page, "#waitlist-position") == "1"
        recorder.shot("waitlist", page)

        # The winner cancels: the seat goes to the first on the waiting list, and the page says so by itself.
        winner = Ticket.objects.get(slot=slot, status=Ticket.Status.ACTIVE)
        reservations.cancel(winner.user_id, winner.code)
        page.locator("#panel-success").wait_for(state="visible", timeout=20000)
        promoted = Ticket.objects.get(slot=slot, user=buyer, status=Ticket.Status.ACTIVE)
        assert text(page, "#queue-number") == str(promoted.queue_number) == "1"
        recorder.shot("promoted", page)

        # The public record: the seed revealed, the buyer's pseudonym listed, the snippet to check it.
        page.goto(f"{site}/draw/{slot.pk}/")
        body = page.locator("body").inner_text()
        assert seed in body and entry.pseudonym in body and "hmac" in body
        recorder.shot("record", page)
