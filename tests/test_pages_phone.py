"""What buyers and staff see on a phone, in a real browser (Debian's chromium via Playwright) against
daphne and `live_quota`: pages that say what is true, and nothing wider than a 390 px screen."""

from __future__ import annotations

import pytest

from accounts.services.identity import Principal
from queueing.services import reservations
from tests.browser import phone_page
from tests.factory import make_slot, make_user
from tests.test_browser import open_war_in, text

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def hold(slot, user):
    return reservations.reserve(Principal(id=user.pk, has_nik=True), slot.location.slug, slot.time_label, slot.date)


def test_a_sold_out_war_says_so_offers_other_slots_and_a_cancelled_seat_comes_back_live(site, browser, recorder):
    sold = make_slot(quota_size=1, opens_in=-30, label="10:00")
    later = make_slot(opens_in=3600, label="13:00", date=sold.date)
    holder = make_user()
    held = hold(sold, holder)
    with phone_page(browser, site, recorder, user=make_user()) as page, recorder.on_failure():
        page.goto(f"{site}/war/{sold.pk}/")
        page.wait_for_function("() => document.getElementById('live-status').dataset.live === '1'")
        take = page.locator("#take")
        assert take.is_disabled() and text(page, "#take-label") == "Kuota habis"
        hint = text(page, "#take-hint")
        assert "Jika seseorang membatalkan tiketnya, nomornya muncul lagi di halaman ini" in hint
        assert "Tombol aktif tepat saat war dibuka" not in page.locator("#panel-live").inner_text()
        others = page.locator("#other-slots")
        assert others.is_visible()
        assert others.locator("[data-testid=other-slot]").first.get_attribute("href") == f"/war/{later.pk}/"
        recorder.shot("sold-out", page)

        # What the page promises: the holder cancels, the seat shows up here without a reload.
        reservations.cancel(holder.pk, held.code)
        page.wait_for_function("() => !document.getElementById('take').disabled", timeout=10_000)
        assert text(page, "#remaining") == "1" and text(page, "#take-label") == "Ambil Antrean"
        assert page.locator("#take-hint").get_attribute("data-hint") == "open"
        assert not others.is_visible()
        recorder.shot("seat-back", page)


def test_one_per_day_keeps_the_button_off_even_when_the_war_opens(site, browser, recorder):
    morning = make_slot(opens_in=-30, label="08:00", location="puri-indah")
    noon = make_slot(opens_in=3600, label="13:00", date=morning.date)
    buyer = make_user()
    held = hold(morning, buyer)
    with phone_page(browser, site, recorder, user=buyer) as page, recorder.on_failure():
        page.goto(f"{site}/war/{noon.pk}/")
        page.wait_for_function("() => document.getElementById('live-status').dataset.live === '1'")
        open_war_in(noon, 2)
        page.wait_for_function("() => document.getElementById('war').dataset.phase === 'open'", timeout=15_000)
        page.wait_for_timeout(300)  # a few render ticks after the opening
        assert page.locator("#take").is_disabled()
        assert text(page, "#take-label") == "Sudah punya antrean hari ini"
        assert page.locator("#open-message").is_hidden()
        assert "Anda sudah memegang nomor 1 di Puri Indah jam 08:00" in text(page, "#take-hint")
        link = page.locator("[data-testid=other-ticket-link]")
        assert link.get_attribute("href") == f"/tickets/#{held.code}"
        recorder.shot("one-per-day", page)
        link.click()
        page.locator(f'[id="{held.code}"]').wait_for()
