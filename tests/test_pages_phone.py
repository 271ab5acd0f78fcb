"""What buyers and staff see on a phone, in a real browser (Debian's chromium via Playwright) against
daphne and `live_quota`: pages that say what is true, and nothing wider than a 390 px screen."""

from __future__ import annotations

import pytest

from accounts.services.identity import Principal
from queueing.services import reservations
from tests.browser import phone_page, session_cookie
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


def test_rehearsal_wars_are_invisible_to_buyers_but_staff_watch_them_in_the_war_room(site, browser, recorder):
    from queueing.services import rehearsal

    real = make_slot(opens_in=600)
    drill = rehearsal.open_in(rehearsal.create_slot(5), -30)  # as simulate_war makes it: open, real war day
    staff = make_user(is_staff=True, is_superuser=True)
    with recorder.on_failure():
        with phone_page(browser, site, recorder, user=make_user()) as page:
            page.goto(f"{site}/")
            assert "Latihan" not in page.locator("main").inner_text()
            assert page.locator(f'a[href="/war/{real.pk}/"]').count() >= 1  # the real war is listed
            assert page.goto(f"{site}/locations/latihan/").status == 404
            assert page.goto(f"{site}/war/{drill.pk}/").status == 404
            assert page.goto(f"{site}/war/")  # the shortcut does not lead to the rehearsal either
            assert page.url.endswith(f"/war/{real.pk}/")
        with phone_page(browser, site, recorder, user=staff) as page:
            page.goto(f"{site}/staff/warroom/")
            row = page.locator("#wr-rows tr", has_text="Latihan war (rehearsal)")
            row.wait_for()
            recorder.shot("warroom", page)


# --- Nothing wider than a phone --------------------------------------------------------------------

PHONE_WIDTH = 390
WIDTH = "document.documentElement.scrollWidth"


def page_width(page, url: str) -> int:
    page.goto(url)
    page.wait_for_load_state("load")
    return page.evaluate(WIDTH)


def test_no_page_scrolls_sideways_on_a_390px_phone_buyer_or_staff(site, browser, recorder):
    upcoming = make_slot(opens_in=3600, label="08:00", location="graha-dipta")
    sold_out = make_slot(quota_size=1, opens_in=-30, label="10:00", date=upcoming.date)
    open_now = make_slot(quota_size=5, opens_in=-30, label="13:00", date=upcoming.date, location="puri-indah")
    closed = make_slot(opens_in=-120, closes_in=-60, label="15:00", date=upcoming.date)
    # A buyer with a long address holding a ticket: the one-per-day page, the tickets page, home's list.
    buyer = make_user(email="pembeli.dengan.alamat.surel.yang.sangat.panjang.sekali@contoh-domain-panjang.co.id")
    hold(sold_out, buyer)
    hold(open_now, make_user())
    staff = make_user(is_staff=True, is_superuser=True)
    buyer_paths = [
        "/",
        "/locations/graha-dipta/",
        f"/war/{upcoming.pk}/",  # one per day (holds sold_out that day)
        f"/war/{sold_out.pk}/",  # holding: the number
        f"/war/{open_now.pk}/",
        f"/war/{closed.pk}/",
        "/tickets/",
        "/accounts/profile/",
    ]
    guest_paths = ["/", f"/war/{sold_out.pk}/", f"/war/{open_now.pk}/", "/accounts/login/", "/accounts/register/"]
    staff_paths = [
        "/admin/",
        "/admin/queueing/slot/",
        "/admin/queueing/ticket/",
        "/admin/queueing/location/",
        f"/admin/queueing/location/{upcoming.location_id}/change/",
        "/admin/accounts/user/",
        "/staff/warroom/",
        f"/staff/warroom/{sold_out.pk}/",
    ]
    too_wide = []
    with recorder.on_failure():
        for user, paths in ((buyer, buyer_paths), (None, guest_paths), (staff, staff_paths)):
            with phone_page(browser, site, recorder, user=user) as page:
                for path in paths:
                    width = page_width(page, f"{site}{path}")
                    recorder.shot(path.strip("/").replace("/", "-") or "home", page)
                    if width > PHONE_WIDTH:
                        too_wide.append((path, width))
    assert too_wide == []


def test_the_sideways_check_catches_a_page_that_is_too_wide(site, browser, recorder):
    """Negative control: the same measurement on a page made 600 px wide must fail."""
    with phone_page(browser, site, recorder) as page, recorder.on_failure():
        assert page_width(page, f"{site}/") <= PHONE_WIDTH
        page.evaluate(
            "document.querySelector('main').insertAdjacentHTML('beforeend', '<div style=\"width:600px\">x</div>')"
        )
        assert page.evaluate(WIDTH) > PHONE_WIDTH
        # And the broken-word check (below) catches a word squeezed letter by letter, as the admin's was.
        page.evaluate(
            "document.querySelector('main').insertAdjacentHTML('beforeend', "
            '\'<table id="squeezed"><tr><th style="width:1px;overflow-wrap:anywhere">Ditutup</th></tr></table>\')'
        )
        assert page.evaluate(BROKEN_WORDS, "#squeezed") == ["Ditutup"]


def test_the_admin_index_on_a_phone_keeps_words_whole(site, browser, recorder):
    """'Ruang pantau war' used to render one letter per line: its link must be one line wide."""
    staff = make_user(is_staff=True, is_superuser=True)
    with phone_page(browser, site, recorder, user=staff) as page, recorder.on_failure():
        page.goto(f"{site}/admin/")
        links = page.locator("#warroom-link a")  # the war room, then abuse signals
        assert links.count() >= 1
        for link in links.all():
            box = link.bounding_box()
            line = float(link.evaluate("el => parseFloat(getComputedStyle(el).lineHeight) || 20"))
            assert box["height"] < 2 * line and box["width"] > 100, (link.inner_text(), box)
        assert page.evaluate(WIDTH) <= PHONE_WIDTH


def test_war_room_headers_and_states_are_never_broken_inside_a_word_on_a_laptop(site, browser, recorder):
    """'Ditutu/p' (desktop) and 'Seja/k/dibu/ka' (phone): every word of the table stays whole."""
    make_slot(opens_in=-120, closes_in=-60, label="08:00")
    make_slot(opens_in=-30, label="10:00")
    staff = make_user(is_staff=True, is_superuser=True)
    for viewport in ({"width": 1366, "height": 800}, {"width": 390, "height": 844}):
        context = browser.new_context(viewport=viewport, locale="id-ID")
        try:
            context.add_cookies([session_cookie(site, staff)])
            page = context.new_page()
            recorder.watch(f"warroom-{viewport['width']}", page)
            with recorder.on_failure():
                page.goto(f"{site}/staff/warroom/")
                page.locator("#wr-rows tr td").first.wait_for()
                broken = page.evaluate(BROKEN_WORDS, "[data-testid=warroom-table]")
                assert broken == [], (viewport, broken)
                assert page.evaluate(WIDTH) <= viewport["width"]
        finally:
            context.close()


# Words of the table's cells that the browser wrapped inside the word (a word taller than one line).
BROKEN_WORDS = """
(selector) => {
  const table = document.querySelector(selector);
  const broken = [];
  const range = document.createRange();
  const walker = document.createTreeWalker(table, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const re = /\\S+/g;
    let m;
    while ((m = re.exec(node.data))) {
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const rects = range.getClientRects();
      if (rects.length > 1) broken.push(m[0]);
    }
  }
  return broken;
}
"""


# --- Icon, manifest, colours -----------------------------------------------------------------------

HEAD = """() => ({
  icon: (document.querySelector('link[rel=icon]') || {}).href || null,
  manifest: (document.querySelector('link[rel=manifest]') || {}).href || null,
  theme: [...document.querySelectorAll('meta[name=theme-color]')].map(m => m.content),
})"""


def test_every_page_has_the_icon_theme_colour_and_manifest_admin_too_and_the_manifest_is_served(
    site, browser, recorder
):
    slot = make_slot(opens_in=600)
    staff = make_user(is_staff=True, is_superuser=True)
    pages = {
        None: ["/", "/locations/graha-dipta/", f"/war/{slot.pk}/", "/accounts/login/", "/accounts/register/"],
        staff: ["/tickets/", "/accounts/profile/", "/admin/", "/admin/queueing/ticket/", "/staff/warroom/"],
    }
    seen = set()
    with recorder.on_failure():
        for user, paths in pages.items():
            with phone_page(browser, site, recorder, user=user) as page:
                for path in [*paths, "/admin/login/"] if user is None else paths:
                    page.goto(f"{site}{path}")
                    head = page.evaluate(HEAD)
                    assert head["icon"] and head["manifest"] and head["theme"], (path, head)
                    seen.add((head["icon"], head["manifest"]))
                assert page.evaluate("document.querySelector('link[rel=icon]').href").endswith(
                    "/static/img/favicon.svg"
                )
                manifest = page.request.get(f"{site}/static/manifest.webmanifest")
                assert manifest.status == 200 and "manifest+json" in manifest.headers["content-type"]
                body = manifest.json()
                assert body["name"] == "War Tiket" and body["start_url"] == "/"
                for icon in body["icons"]:
                    served = page.request.get(f"{site}/static/{icon['src']}")
                    assert served.status == 200, icon
    assert len(seen) == 1  # the same icon and manifest everywhere


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_colour_scheme_follows_the_device(site, browser, recorder, scheme):
    slot = make_slot(opens_in=600)
    context = browser.new_context(viewport={"width": 390, "height": 844}, color_scheme=scheme)
    try:
        page = context.new_page()
        recorder.watch("page", page)
        with recorder.on_failure():
            page.goto(f"{site}/war/{slot.pk}/")
            assert page.evaluate("document.documentElement.dataset.bsTheme") == scheme
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
            channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
            assert (sum(channels) / 3 < 60) == (scheme == "dark"), background
    finally:
        context.close()


# --- Dev Controls ----------------------------------------------------------------------------------


def test_dev_controls_collapse_and_stay_collapsed_after_a_reload(site, browser, recorder):
    slot = make_slot(opens_in=-30)
    with phone_page(browser, site, recorder, user=make_user()) as page, recorder.on_failure():
        page.goto(f"{site}/war/{slot.pk}/")
        bar = page.locator("#dev-controls")
        expanded = bar.bounding_box()
        assert expanded["height"] > 60 and expanded["width"] == PHONE_WIDTH  # the full bar over the page
        page.click("#dev-toggle")
        collapsed = bar.bounding_box()
        assert collapsed["height"] < 48 and collapsed["width"] < PHONE_WIDTH / 2, collapsed
        assert page.locator("[data-dev=prewar]").is_hidden()
        assert page.get_attribute("#dev-toggle", "aria-expanded") == "false"
        recorder.shot("collapsed", page)

        page.reload()
        assert bar.bounding_box()["height"] < 48 and page.locator("[data-dev=prewar]").is_hidden()
        # The page's last line is not under the collapsed button.
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        last = page.locator("footer").bounding_box()
        assert last["y"] + last["height"] <= bar.bounding_box()["y"] + 1

        page.click("#dev-toggle")
        assert page.locator("[data-dev=prewar]").is_visible()
        page.reload()
        assert page.locator("[data-dev=prewar]").is_visible() and bar.bounding_box()["height"] > 60


# --- Opt-in alerts at the opening and at the result ------------------------------------------------

# Records what the page asks of the browser's sound, vibration and notification APIs (the real ones
# still run for sound; notifications and vibration are recorded, as headless chromium has no desktop),
# and lets the test say the tab is in the background.
ALERT_SPY = """
(() => {
  const log = window.__alerts = { beeps: 0, vibrations: 0, notifications: [], permissionAsks: 0 };
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) { log.beeps += 1; return start.apply(this, args); };
  navigator.vibrate = () => { log.vibrations += 1; return true; };
  // A granted permission outlives a reload, as the browser's does.
  class FakeNotification {
    constructor(title, options) { log.notifications.push({ title, body: options && options.body }); }
    close() {}
    static get permission() { return sessionStorage.getItem("__permission") || "default"; }
    static requestPermission() {
      log.permissionAsks += 1;
      sessionStorage.setItem("__permission", "granted");
      return Promise.resolve("granted");
    }
  }
  window.Notification = FakeNotification;
  Object.defineProperty(document, "visibilityState", { get: () => window.__visibility || "visible" });
})();
"""


def alerts_log(page) -> dict:
    return page.evaluate("window.__alerts")


def test_alerts_are_opt_in_and_sound_vibrate_and_notify_at_the_opening_and_the_result(site, browser, recorder):
    slot = make_slot(quota_size=3, opens_in=3600)
    with (
        phone_page(browser, site, recorder, user=make_user(), init_script=ALERT_SPY) as page,
        recorder.on_failure(),
    ):
        page.goto(f"{site}/war/{slot.pk}/")
        page.wait_for_function("() => document.getElementById('live-status').dataset.live === '1'")
        toggle = page.locator("[data-testid=alerts-toggle]")
        assert toggle.is_visible() and not toggle.is_checked()
        assert alerts_log(page)["permissionAsks"] == 0  # nothing asked before the buyer opts in

        toggle.check()
        log = alerts_log(page)
        assert log["permissionAsks"] == 1 and log["beeps"] == 3  # the sample beep
        assert page.evaluate("localStorage.getItem('wt.alerts')") == "on"

        page.reload()
        page.wait_for_function("() => document.getElementById('live-status').dataset.live === '1'")
        assert toggle.is_checked() and alerts_log(page)["permissionAsks"] == 0  # remembered, not asked again
        tap = page.locator("#alerts-tap")
        assert tap.is_visible()  # sound and vibration need one touch after a reload: the page says so
        page.locator("h1").click()
        assert tap.is_hidden()
        page.evaluate("window.__visibility = 'hidden'")  # the buyer switched tabs
        open_war_in(slot, 2)
        page.wait_for_function("() => window.__alerts.notifications.length >= 1", timeout=15_000)
        log = alerts_log(page)
        assert log["notifications"][0]["title"] == "War dibuka!"
        assert "ambil antrean sekarang" in log["notifications"][0]["body"]
        assert log["beeps"] >= 3 and log["vibrations"] == 1

        page.evaluate("window.__visibility = 'visible'")
        page.locator("#take").click()
        page.locator("#panel-success").wait_for()
        page.evaluate("window.__visibility = 'hidden'")
        log = alerts_log(page)
        assert log["vibrations"] == 2 and log["beeps"] >= 6  # the result is in
        # On the page itself (visible) the result needs no notification.
        assert [n["title"] for n in log["notifications"]] == ["War dibuka!"]


def test_without_the_toggle_the_opening_is_silent(site, browser, recorder):
    slot = make_slot(opens_in=3600)
    with (
        phone_page(browser, site, recorder, user=make_user(), init_script=ALERT_SPY) as page,
        recorder.on_failure(),
    ):
        page.goto(f"{site}/war/{slot.pk}/")
        page.wait_for_function("() => document.getElementById('live-status').dataset.live === '1'")
        page.evaluate("window.__visibility = 'hidden'")
        open_war_in(slot, 2)
        page.wait_for_function("() => document.getElementById('war').dataset.phase === 'open'", timeout=15_000)
        page.wait_for_timeout(300)
        assert alerts_log(page) == {"beeps": 0, "vibrations": 0, "notifications": [], "permissionAsks": 0}
