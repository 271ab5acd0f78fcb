/* The server's clock, estimated in the page.
 *
 * The server clock (Redis TIME) decides when a war opens. The device clock may be minutes off, so pages
 * never compare Date.now() with an opening time. They measure the offset between the server's epoch ms
 * and performance.now() (monotonic, unaffected by the device clock being wrong or changed) from samples
 * whose round trip bounds when the server read its clock, and keep the sample with the smallest
 * round trip: its error is at most half that round trip.
 *
 * A module of its own so it can be tested alone (tests/test_js_units.py); `serverClock` is the one
 * instance a page shares: site.js feeds it, war.js and the countdowns read it.
 */

const MAX_SAMPLES = 8;

export class ServerClock {
  /* `monotonic` is the page's monotonic clock in ms; tests pass their own. */
  constructor({ monotonic = () => performance.now(), maxSamples = MAX_SAMPLES } = {}) {
    this.monotonic = monotonic;
    this.maxSamples = maxSamples;
    this.samples = [];
    this.offset = null;
    this.listeners = [];
  }

  /* The server read its clock (serverMs) somewhere between t0 and t1 (monotonic ms). */
  add(serverMs, t0, t1) {
    if (typeof serverMs !== "number" || !Number.isFinite(serverMs) || t1 < t0) return;
    this.samples.push({ offset: serverMs - (t0 + t1) / 2, rtt: t1 - t0 });
    if (this.samples.length > this.maxSamples) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.offset = best.offset;
    this.listeners.forEach((fn) => fn());
  }

  /* Server epoch ms now, or null before the first sample. */
  now() {
    return this.offset === null ? null : this.monotonic() + this.offset;
  }

  /* `count` samples from `url` (an /api/time endpoint answering {epoch_ms}), one after another. */
  measure(url, count) {
    let left = count || 1;
    const once = () => {
      const t0 = this.monotonic();
      return fetch(url, { cache: "no-store", credentials: "same-origin" })
        .then((r) => (r.ok ? r.json() : null))
        .then((body) => {
          if (body) this.add(body.epoch_ms, t0, this.monotonic());
          left -= 1;
          return left > 0 ? once() : null;
        })
        .catch(() => null);
    };
    return once();
  }

  /* Samples older than a wake-up from sleep may be off (performance.now() can pause): start over.
   * The current offset stays in use until the next sample replaces it. */
  reset() {
    this.samples = [];
  }

  onChange(fn) {
    this.listeners.push(fn);
  }
}

/* The page's clock. */
export const serverClock = new ServerClock();
