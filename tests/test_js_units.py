"""Unit tests of the page's JavaScript modules, run in the real browser the other browser tests use
(Debian's chromium via Playwright): no Node toolchain. A page of the live test server is opened only
so the modules load from /static/ the way pages load them; each test then imports the module and
drives it directly.

ServerClock (static/js/server-clock.js) estimates the server's epoch ms as monotonic ms + offset,
where a sample (serverMs read somewhere between monotonic t0 and t1) gives offset = serverMs minus the
midpoint of t0 and t1, and the sample with the shortest round trip among the last eight wins. Most
tests give the clock a fake monotonic source so the numbers are exact.
"""

from __future__ import annotations

import pytest

from queueing.services import clock
from tests.browser import PHONE, shifted_clock_script

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TEN_MINUTES_MS = 10 * 60 * 1000
SERVER_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC, an epoch ms far from any monotonic value


@pytest.fixture(scope="module")
def page(site, browser):
    context = browser.new_context(viewport=PHONE, locale="id-ID")
    page = context.new_page()
    page.goto(f"{site}/")
    yield page
    context.close()


def run(page, body: str, arg=None):
    """Evaluate ``body`` (JavaScript statements ending in a return) with ServerClock imported and a
    fake monotonic clock: ``fake()`` builds a ServerClock whose monotonic ms is ``mono.t``."""
    return page.evaluate(
        """async ([body, arg]) => {
          const module = await import('/static/js/server-clock.js');
          const { ServerClock } = module;
          const mono = { t: 0 };
          const fake = () => new ServerClock({ monotonic: () => mono.t });
          const AsyncFunction = (async () => {}).constructor;
          return await new AsyncFunction('module', 'ServerClock', 'mono', 'fake', 'arg', body)(
            module, ServerClock, mono, fake, arg);
        }""",
        [body, arg],
    )


def test_a_sample_counts_from_the_midpoint_of_its_round_trip(page):
    result = run(
        page,
        """
        const c = fake();
        // Sent at monotonic 1000, answered at 1200: the server read its clock (arg) in between.
        c.add(arg, 1000, 1200);
        mono.t = 1200;
        const atArrival = c.now();
        mono.t = 61200;
        return { offset: c.offset, atArrival, aMinuteLater: c.now() };
        """,
        SERVER_MS,
    )
    assert result["offset"] == SERVER_MS - 1100
    # At arrival the server's clock has moved on by half the round trip since it was read.
    assert result["atArrival"] == SERVER_MS + 100
    assert result["aMinuteLater"] == SERVER_MS + 100 + 60_000
    # Negative control: taking the reply's time as "now" at arrival (no round-trip compensation) would
    # be half a round trip behind. The test would notice an estimator that did that.
    naive_at_arrival = SERVER_MS
    assert result["atArrival"] != naive_at_arrival
    assert result["atArrival"] - naive_at_arrival == 100


def test_before_any_sample_the_clock_knows_nothing_and_the_first_sample_is_taken_whatever_its_round_trip(page):
    # On a war page the first sample may be the page itself (<meta name=server-ms>, round trip from
    # navigation start) or the socket's first message (round trip from opening the socket): slow ones.
    result = run(
        page,
        """
        const c = fake();
        mono.t = 5000;
        const before = c.now();
        // The socket's first message without server_ms (or a non-number) is no sample.
        c.add(undefined, 4000, 4900);
        c.add('1767225600000', 4000, 4900);
        const afterNonSamples = c.now();
        c.add(arg, 4000, 4900);  // a slow first message: 900 ms round trip
        const first = c.now();
        c.add(arg + 1000, 4990, 5010);  // then /api/time answers in 20 ms
        const measured = c.now();
        return { before, afterNonSamples, first, measured, samples: c.samples.length };
        """,
        SERVER_MS,
    )
    assert result["before"] is None
    assert result["afterNonSamples"] is None
    assert result["first"] == SERVER_MS + 5000 - 4450
    assert result["measured"] == SERVER_MS + 1000 + 5000 - 5000
    assert result["samples"] == 2


def test_the_sample_with_the_shortest_round_trip_wins(page):
    result = run(
        page,
        """
        const c = fake();
        const seen = [];
        c.add(arg, 0, 400);            // rtt 400, offset arg - 200
        seen.push(c.offset);
        c.add(arg + 7, 1000, 1040);    // rtt 40,  offset arg + 7 - 1020
        seen.push(c.offset);
        c.add(arg + 2500, 2000, 2200); // rtt 200 (later, but slower): not taken
        seen.push(c.offset);
        c.add(arg + 3000, 3000, 3040); // rtt 40 again: a tie keeps the earlier sample
        seen.push(c.offset);
        return seen;
        """,
        SERVER_MS,
    )
    assert result == [SERVER_MS - 200, SERVER_MS + 7 - 1020, SERVER_MS + 7 - 1020, SERVER_MS + 7 - 1020]


def test_only_the_last_eight_samples_count(page):
    result = run(
        page,
        """
        const c = fake();
        c.add(arg, 0, 10);  // the best sample: rtt 10
        const offsets = [];
        for (let i = 1; i <= 8; i++) {
          c.add(arg + i, 100 * i, 100 * i + 100 + i);  // rtt 101..108
          offsets.push(c.offset);
        }
        return { offsets, kept: c.samples.length };
        """,
        SERVER_MS,
    )
    assert result["kept"] == 8
    # The rtt-10 sample holds for seven more samples; the eighth pushes it out and the best of the
    # remaining eight (rtt 101, sent at 100) takes over.
    assert result["offsets"][:7] == [SERVER_MS - 5] * 7
    assert result["offsets"][7] == SERVER_MS + 1 - (100 + 201) / 2


def test_samples_that_cannot_be_true_are_ignored_and_do_not_notify(page):
    result = run(
        page,
        """
        const c = fake();
        let calls = 0;
        c.onChange(() => { calls += 1; });
        c.add(arg, 0, 20);
        const offset = c.offset;
        c.add(arg, 50, 40);         // answered before it was sent
        c.add(NaN, 0, 1);
        c.add(Infinity, 0, 1);
        c.add(null, 0, 1);
        return { calls, same: c.offset === offset, samples: c.samples.length };
        """,
        SERVER_MS,
    )
    assert result == {"calls": 1, "same": True, "samples": 1}


def test_reset_keeps_the_estimate_until_the_next_sample_which_then_wins_whatever_its_round_trip(page):
    # After a wake-up from sleep the old samples may be wrong: the next one replaces them even if slower.
    result = run(
        page,
        """
        const c = fake();
        c.add(arg, 0, 10);
        c.reset();
        mono.t = 100;
        const afterReset = c.now();
        c.add(arg + 60000, 1000, 1500);  // slow, but the only sample now
        return { afterReset, offset: c.offset, samples: c.samples.length };
        """,
        SERVER_MS,
    )
    assert result["afterReset"] == SERVER_MS - 5 + 100
    assert result["offset"] == SERVER_MS + 60000 - 1250
    assert result["samples"] == 1


def test_a_page_has_one_shared_clock_seeded_by_the_page_itself(page):
    result = page.evaluate(
        """async () => {
          const { serverClock } = await import('/static/js/server-clock.js');
          return { same: serverClock === window.WarTiket.ServerClock, samples: serverClock.samples.length };
        }"""
    )
    # One module instance: site.js feeds the clock war.js and the countdowns read.
    assert result["same"] is True
    assert result["samples"] >= 1


@pytest.mark.parametrize("offset_ms", [TEN_MINUTES_MS, -TEN_MINUTES_MS], ids=["device-10min-fast", "device-10min-slow"])
def test_the_estimate_follows_the_server_whatever_the_device_clock_says(site, browser, offset_ms):
    context = browser.new_context(viewport=PHONE, locale="id-ID")
    context.add_init_script(shifted_clock_script(offset_ms))
    try:
        page = context.new_page()
        page.goto(f"{site}/")
        before = clock.redis_now_ms()
        result = run(
            page,
            """
            const c = new ServerClock();  // the real monotonic clock, performance.now()
            await c.measure('/api/time', 3);
            const rtt = Math.min(...c.samples.map((s) => s.rtt));
            return { estimate: c.now(), device: Date.now(), rtt, samples: c.samples.length };
            """,
        )
        after = clock.redis_now_ms()
    finally:
        context.close()
    assert result["samples"] == 3
    # The device clock is as wrong as the init script made it (the negative control: using it would be
    # ten minutes off) ...
    assert abs(result["device"] - after - offset_ms) < 5000
    # ... while the estimate lies between the server's times before and after, give or take half the
    # best round trip (plus a millisecond of rounding on each side).
    slack = result["rtt"] / 2 + 2
    assert before - slack <= result["estimate"] <= after + slack, (result, before, after)
