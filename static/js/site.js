/* War Tiket: shared page code. The server's clock, countdowns, small helpers.
 *
 * The server clock (Redis TIME) decides when a war opens. The device clock may be minutes off, so pages
 * never compare Date.now() with an opening time. They measure the offset between the server's epoch ms
 * and performance.now() (monotonic, unaffected by the device clock being wrong or changed) from samples
 * whose round trip bounds when the server read its clock, and keep the sample with the smallest
 * round trip: its error is at most half that round trip.
 */
(function () {
  "use strict";

  var MAX_SAMPLES = 8;
  var REMEASURE_MS = 30000;

  var ServerClock = {
    samples: [],
    offset: null,
    listeners: [],

    /* The server read its clock (serverMs) somewhere between t0 and t1 (performance.now()). */
    add: function (serverMs, t0, t1) {
      if (typeof serverMs !== "number" || !isFinite(serverMs) || t1 < t0) return;
      this.samples.push({ offset: serverMs - (t0 + t1) / 2, rtt: t1 - t0 });
      if (this.samples.length > MAX_SAMPLES) this.samples.shift();
      var best = this.samples[0];
      for (var i = 1; i < this.samples.length; i++) {
        if (this.samples[i].rtt < best.rtt) best = this.samples[i];
      }
      this.offset = best.offset;
      this.listeners.forEach(function (fn) { fn(); });
    },

    /* Server epoch ms now, or null before the first sample. */
    now: function () {
      return this.offset === null ? null : performance.now() + this.offset;
    },

    measure: function (url, count) {
      var self = this;
      var left = count || 1;
      function once() {
        var t0 = performance.now();
        return fetch(url, { cache: "no-store", credentials: "same-origin" })
          .then(function (r) { return r.ok ? r.json() : null; })
          .then(function (body) {
            if (body) self.add(body.epoch_ms, t0, performance.now());
            left -= 1;
            return left > 0 ? once() : null;
          })
          .catch(function () { return null; });
      }
      return once();
    },

    /* Samples older than a wake-up from sleep may be off (performance.now() can pause): start over. */
    reset: function () {
      this.samples = [];
    },

    onChange: function (fn) {
      this.listeners.push(fn);
    },
  };

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  /* "mm:ss", "hh:mm:ss", or "N days hh:mm:ss" (daysLabel like "%(n)s hari"). */
  function formatDuration(ms, daysLabel) {
    var total = Math.max(0, Math.ceil(ms / 1000));
    var days = Math.floor(total / 86400);
    var h = Math.floor((total % 86400) / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    var clock = (h || days ? pad(h) + ":" : "") + pad(m) + ":" + pad(s);
    if (days) return (daysLabel || "%(n)s d").replace("%(n)s", days) + " " + clock;
    return clock;
  }

  function formatTime(ms, timeZone, lang) {
    try {
      return new Intl.DateTimeFormat(lang || document.documentElement.lang || "id", {
        day: "numeric", month: "long", year: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false, timeZone: timeZone,
      }).format(new Date(ms));
    } catch (e) {
      return "";
    }
  }

  function stateAt(now, opensMs, closesMs, remaining) {
    if (now < opensMs) return "upcoming";
    if (remaining !== null && remaining !== undefined && remaining <= 0) return "sold_out";
    if (now >= closesMs) return "closed";
    return "open";
  }

  function readJson(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  /* Countdown badges on the home and location pages: [data-countdown] with opens/closes/remaining. */
  function startCountdowns() {
    var nodes = document.querySelectorAll("[data-countdown]");
    if (!nodes.length) return;
    var labels = readJson("state-labels") || {};
    function render() {
      var now = ServerClock.now();
      if (now === null) return;
      nodes.forEach(function (node) {
        var opens = Number(node.dataset.opensMs);
        var closes = Number(node.dataset.closesMs);
        var remaining = node.dataset.remaining === "" ? null : Number(node.dataset.remaining);
        var state = stateAt(now, opens, closes, remaining);
        var badge = node.querySelector("[data-state-badge]");
        if (badge && badge.dataset.state !== state) {
          badge.dataset.state = state;
          badge.className = "badge state-badge state-" + state;
          badge.textContent = labels[state] || state;
        }
        // "War opens …" turns into "War opened …" at the opening (the tense follows the state).
        node.querySelectorAll("[data-when]").forEach(function (when) {
          when.hidden = (when.dataset.when === "upcoming") !== (state === "upcoming");
        });
        var timer = node.querySelector("[data-timer]");
        if (timer) {
          timer.textContent = state === "upcoming" ? formatDuration(opens - now, labels.days) : "";
          timer.hidden = state !== "upcoming";
        }
      });
    }
    render();
    ServerClock.onChange(render);
    setInterval(render, 250);
  }

  function startClock() {
    var seed = document.querySelector('meta[name="server-ms"]');
    // The page itself is a sample: the server read its clock between navigation start (0) and now.
    if (seed) ServerClock.add(Number(seed.content), 0, performance.now());
    var timeUrl = (document.querySelector('meta[name="time-url"]') || {}).content;
    if (!timeUrl) return;
    ServerClock.measure(timeUrl, 3);
    setInterval(function () { ServerClock.measure(timeUrl, 1); }, REMEASURE_MS);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") {
        ServerClock.reset();
        ServerClock.measure(timeUrl, 3);
      }
    });
  }

  document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });

  window.WarTiket = {
    ServerClock: ServerClock,
    formatDuration: formatDuration,
    formatTime: formatTime,
    stateAt: stateAt,
    readJson: readJson,
  };

  startClock();
  startCountdowns();
})();
