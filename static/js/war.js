/* The war page: live quota over a WebSocket, a countdown on the server's clock, one click, one request.
 *
 * Views: "live" (pre-war countdown / open / sold out / closed, decided by the server clock and the live
 * state), "loading" (request in flight), "success" (the queue number), "failure" (message + next step).
 * Live state messages carry the slot's Redis version; anything not newer than what the page holds is
 * dropped, so a late or repeated message never moves the number backwards.
 *
 * Loaded as a module after site.js, which has started the shared clock.
 */
import { serverClock as clock } from "./server-clock.js";
import { formatDuration, formatTime, readJson, stateAt } from "./helpers.js";
import { Prover } from "./war-proof.js";

const cfg = readJson("war-config");
const S = cfg.strings;
const labels = readJson("state-labels") || {};

const $ = (id) => document.getElementById(id);

const el = {
  war: $("war"),
  remaining: $("remaining"),
  quota: $("quota"),
  bar: $("remaining-bar"),
  liveStatus: $("live-status"),
  badge: document.querySelector("#war [data-state-badge]"),
  panelLive: $("panel-live"),
  countdownBox: $("countdown-box"),
  countdownLabel: $("countdown-label"),
  countdown: $("countdown"),
  opensAt: $("opens-at"),
  openMessage: $("open-message"),
  take: $("take"),
  takeLabel: $("take-label"),
  takeSpinner: $("take-spinner"),
  panelSuccess: $("panel-success"),
  queueNumber: $("queue-number"),
  ticketCode: $("ticket-code"),
  alreadyNote: $("already-note"),
  panelFailure: $("panel-failure"),
  failureMessage: $("failure-message"),
  failureNext: $("failure-next"),
  failureRetry: $("failure-retry"),
  failureLink: $("failure-link"),
  failureBack: $("failure-back"),
  failureCode: $("failure-code"),
  hint: $("take-hint"),
  guestHint: $("guest-hint-tail"),
  otherSlots: $("other-slots"),
  panelEntered: $("panel-entered"),
  panelWaitlist: $("panel-waitlist"),
  drawCountdown: $("draw-countdown"),
  drawCountdownLabel: $("draw-countdown-label"),
  entryPseudonym: $("entry-pseudonym"),
  waitlistPosition: $("waitlist-position"),
};

const live = {
  remaining: cfg.state.remaining,
  quota: cfg.state.quota,
  version: cfg.state.version,
  opens: cfg.state.opens_ms,
  closes: cfg.state.closes_ms,
  drawn: cfg.state.drawn, // draw mode: the draw's result is in Redis (null on first-come slots)
};
// Draw mode: the buyer's entry ({pseudonym, outcome, waitlist_position}) once entered, else null.
const draw = cfg.draw;
let entry = draw ? draw.entry : null;
let view = cfg.ticket ? "success" : entry ? (entry.outcome === "waiting" ? "waitlist" : "entered") : "live";
let inFlight = false;
let retryAt = 0; // performance.now() before which a retry is refused (rate limited / busy)
let failure = null; // {code, retryAt, link}
let dev = { on: false, phase: null, opens: null };
let shownOpens = cfg.state.opens_ms;
let lastPhase = el.war.dataset.phase;
let openingTimer = null;

// --- Live state ----------------------------------------------------------------------------------

function apply(msg) {
  if (!msg || msg.type !== "state" || typeof msg.version !== "number") return false;
  if (live.version !== null && msg.version <= live.version) return false;
  live.version = msg.version;
  live.remaining = msg.remaining === null ? live.remaining : msg.remaining;
  live.quota = msg.quota === null ? live.quota : msg.quota;
  live.opens = msg.opens_ms;
  live.closes = msg.closes_ms;
  if (msg.drawn !== undefined) live.drawn = msg.drawn;
  if (view === "waitlist") slotChanged = true;
  scheduleOpening();
  render();
  askResultIfDue();
  return true;
}

function setLive(connected) {
  el.liveStatus.dataset.live = connected ? "1" : "0";
  el.liveStatus.textContent = connected ? S.live : S.reconnecting;
  el.liveStatus.className = `small live-dot text-nowrap ${connected ? "text-success" : "text-warning-emphasis"}`;
}

let socket = null;
let attempts = 0;
let pollTimer = null;

const wsUrl = () => (location.protocol === "https:" ? "wss://" : "ws://") + location.host + cfg.ws_path;

function connect() {
  const t0 = performance.now();
  let first = true;
  try {
    socket = new WebSocket(wsUrl());
  } catch (e) {
    scheduleReconnect();
    return;
  }
  socket.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    if (first) {
      // The server read its clock after we opened the socket and before this arrived: a clock sample.
      first = false;
      clock.add(msg.server_ms, t0, performance.now());
      attempts = 0;
      setLive(true);
      stopPolling();
    }
    apply(msg);
  };
  socket.onclose = () => {
    socket = null;
    setLive(false);
    startPolling();
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  attempts += 1;
  // Backoff with jitter: after an outage, thousands of pages must not reconnect in the same second.
  const delay = Math.min(15000, 500 * 2 ** Math.min(attempts, 5)) * (0.5 + Math.random());
  setTimeout(connect, delay);
}

function poll() {
  const t0 = performance.now();
  fetch(cfg.urls.state, { cache: "no-store", credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((msg) => {
      if (msg) {
        clock.add(msg.server_ms, t0, performance.now());
        apply(msg);
      }
    })
    .catch(() => {})
    .then(() => {
      if (pollTimer !== null) pollTimer = setTimeout(poll, 2500 + Math.random() * 1500);
    });
}

function startPolling() {
  if (pollTimer === null) pollTimer = setTimeout(poll, 500);
}

function stopPolling() {
  if (pollTimer !== null) clearTimeout(pollTimer);
  pollTimer = null;
}

// --- Alerts (opt-in): a beep, a vibration and a notification at the opening and at the result ------
//
// A buyer waiting in another tab hears and feels the war open. Nothing is asked or played unless the
// buyer switches the toggle on; the browser asks for notification permission only then. The choice is
// remembered in localStorage. Browsers let a page play sound only after a user gesture: the toggle is
// one, and after a reload the first tap anywhere on the page unlocks the sound again.

const alerts = (() => {
  const KEY = "wt.alerts";
  const toggle = $("alerts-toggle");
  const note = $("alerts-note");
  let audio = null;

  const stored = () => {
    try {
      return localStorage.getItem(KEY) === "on";
    } catch (e) {
      return false;
    }
  };
  let on = stored();

  function unlockAudio() {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) {
      try {
        audio = new Ctx();
      } catch (e) {
        return null;
      }
    }
    if (audio.state === "suspended" && audio.resume) audio.resume().catch(() => {});
    return audio;
  }

  function beep() {
    const ctx = unlockAudio();
    if (!ctx) return;
    // Three short 880 Hz beeps: no file to download, audible over a busy room.
    [0, 0.22, 0.44].forEach((at) => {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      const t = ctx.currentTime + at;
      osc.type = "sine";
      osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, t);
      gain.gain.exponentialRampToValueAtTime(0.3, t + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.16);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t);
      osc.stop(t + 0.18);
    });
  }

  function notify(title, body) {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    // Only when the buyer is looking elsewhere: on the page, the page itself says it.
    if (document.visibilityState === "visible") return;
    try {
      const n = new Notification(title, { body, tag: `war-${cfg.slot.id}`, icon: cfg.icon });
      n.onclick = () => {
        window.focus();
        n.close();
      };
    } catch (e) {
      /* some mobile browsers allow notifications only from a service worker */
    }
  }

  function showNote() {
    if (!note) return;
    const blocked = on && "Notification" in window && Notification.permission === "denied";
    note.hidden = !blocked;
  }

  function set(value) {
    on = value;
    try {
      localStorage.setItem(KEY, on ? "on" : "off");
    } catch (e) {}
    if (toggle) toggle.checked = on;
    if (!on && $("alerts-tap")) $("alerts-tap").hidden = true;
    if (on) {
      unlockAudio();
      beep(); // what it will sound like
      if ("Notification" in window && Notification.permission === "default") {
        const asked = Notification.requestPermission(showNote);
        if (asked && asked.then) asked.then(showNote);
      }
    }
    showNote();
  }

  if (toggle) {
    toggle.closest("[data-alerts]").hidden = false;
    toggle.checked = on;
    toggle.addEventListener("change", () => set(toggle.checked));
  }
  showNote();
  // After a reload the browser blocks sound and vibration until the buyer touches the page: say so.
  const tap = $("alerts-tap");
  const activation = navigator.userActivation;
  if (tap && on && activation && !activation.hasBeenActive) tap.hidden = false;
  ["pointerdown", "keydown"].forEach((type) => {
    document.addEventListener(
      type,
      () => {
        if (tap) tap.hidden = true;
        if (on) unlockAudio();
      },
      { once: true, capture: true },
    );
  });

  return {
    fire(title, body) {
      if (!on) return;
      beep();
      if (navigator.vibrate) {
        try {
          navigator.vibrate([200, 100, 200]);
        } catch (e) {}
      }
      notify(title, body);
    },
  };
})();

// The opening is also timed on its own: a background tab renders about once a second at best.
function scheduleOpening() {
  const now = clock.now();
  if (openingTimer !== null) clearTimeout(openingTimer);
  openingTimer = null;
  if (now === null || live.opens <= now) return;
  openingTimer = setTimeout(render, Math.min(live.opens - now + 5, 2147483647));
}

// --- Rendering -----------------------------------------------------------------------------------

function phaseNow(now) {
  if (dev.on && dev.phase) return dev.phase;
  if (now === null) return el.war.dataset.phase;
  return stateAt(now, live.opens, live.closes, live.remaining);
}

function show(node, visible) {
  if (node) node.hidden = !visible;
}

function render() {
  const now = clock.now();
  const phase = phaseNow(now);
  if (lastPhase === "upcoming" && phase === "open" && !cfg.blocked && view === "live") {
    alerts.fire(S.alert_open_title, S.alert_open_body);
  }
  lastPhase = phase;
  el.war.dataset.phase = phase;
  el.war.dataset.view = view;

  const remaining = dev.on && dev.phase === "upcoming" ? live.quota : live.remaining;
  el.remaining.textContent = remaining === null || remaining === undefined ? S.unknown : String(remaining);
  if (live.quota) {
    el.quota.textContent = String(live.quota);
    el.bar.style.width = `${Math.max(0, Math.min(100, (100 * (remaining || 0)) / live.quota))}%`;
  }
  if (el.badge && el.badge.dataset.state !== phase) {
    el.badge.dataset.state = phase;
    el.badge.className = `badge state-badge state-${phase}`;
    el.badge.textContent = labels[phase] || phase;
  }

  show(el.panelLive, view === "live" || view === "loading");
  show(el.panelSuccess, view === "success");
  show(el.panelFailure, view === "failure");
  show(el.panelEntered, view === "entered");
  show(el.panelWaitlist, view === "waitlist");
  const dphase = drawPhase(now);
  el.war.dataset.draw = dphase || "";
  if (view === "entered") renderEntered(now);

  // What the panel says follows the state: holding another ticket that day outranks everything, and
  // a sold-out war past its close is simply closed (no cancelled seat comes back any more).
  let panel = cfg.blocked ? "one_per_day" : phase;
  if (panel === "sold_out" && now !== null && now >= live.closes && !(dev.on && dev.phase)) panel = "closed";
  el.war.dataset.panel = panel;

  const opens = dev.on && dev.opens ? dev.opens : dphase === "entry_upcoming" ? draw.entry_opens_ms : live.opens;
  show(el.countdownBox, dphase ? dphase === "entry_upcoming" : phase === "upcoming");
  show(el.openMessage, (dphase ? dphase === "entry_open" : panel === "open") && view === "live");
  if (draw) {
    el.countdownLabel.textContent = dphase === "entry_upcoming" ? S.entry_opens_in : S.opens_in;
    el.openMessage.textContent = dphase === "entry_open" ? S.entry_open : S.open;
  }
  show(el.otherSlots, panel === "sold_out" || panel === "closed");
  if (el.hint && !cfg.blocked && dphase && el.hint.dataset.hint !== dphase) {
    el.hint.dataset.hint = dphase;
    el.hint.textContent = S[`hint_${dphase}`];
  } else if (el.hint && !cfg.blocked && !dphase && el.hint.dataset.hint !== panel && cfg.hints[panel]) {
    el.hint.dataset.hint = panel;
    el.hint.textContent = cfg.hints[panel];
  }
  if (el.guestHint && cfg.guest_hints[panel]) el.guestHint.textContent = cfg.guest_hints[panel];
  if (phase === "upcoming" || dphase === "entry_upcoming") {
    el.countdown.textContent = now === null ? "--:--" : formatDuration(opens - now, S.days);
    if (opens !== shownOpens) {
      // Staff moved the opening time: say the new one (the server rendered the first).
      shownOpens = opens;
      el.opensAt.textContent = formatTime(opens, cfg.time_zone) || el.opensAt.textContent;
    }
  }

  if (el.take) {
    const loading = view === "loading";
    const waiting = retryAt > performance.now();
    el.take.disabled = loading || inFlight || waiting || (dphase ? dphase !== "entry_open" : panel !== "open");
    show(el.takeSpinner, loading);
    if (loading) el.takeLabel.textContent = dphase ? S.entering : S.taking;
    else if (dphase === "drawing") el.takeLabel.textContent = S.drawing;
    else if (dphase) el.takeLabel.textContent = waiting ? S.retry_in.replace("%(n)s", Math.ceil((retryAt - performance.now()) / 1000)) : S.enter;
    else if (panel === "one_per_day") el.takeLabel.textContent = S.blocked;
    else if (panel === "sold_out") el.takeLabel.textContent = S.sold_out;
    else if (panel === "closed") el.takeLabel.textContent = S.closed;
    else if (waiting) el.takeLabel.textContent = S.retry_in.replace("%(n)s", Math.ceil((retryAt - performance.now()) / 1000));
    else el.takeLabel.textContent = S.take;
  }

  if (view === "failure" && failure) renderFailureRetry();
}

// --- Draw mode: enter in the window, wait for the draw, then the result arrives by itself ------------

/* Where a draw slot stands for a buyer who has not entered (null: first come, first served decides,
 * on first-come slots and on draw slots once drawn). */
function drawPhase(now) {
  if (!draw || live.drawn || now === null || (dev.on && dev.phase)) return null;
  if (now < draw.entry_opens_ms) return "entry_upcoming";
  if (now < draw.draw_ms) return "entry_open";
  return "drawing";
}

function renderEntered(now) {
  el.entryPseudonym.textContent = entry ? entry.pseudonym : "";
  const before = now !== null && now < draw.draw_ms;
  el.drawCountdownLabel.textContent = before ? S.draw_in : S.draw_now;
  show(el.drawCountdown, before);
  if (before) el.drawCountdown.textContent = formatDuration(draw.draw_ms - now, S.days);
}

function entered(newEntry) {
  entry = { pseudonym: newEntry.pseudonym, outcome: "pending", waitlist_position: null };
  view = "entered";
  alerts.fire(S.alert_entered_title, newEntry.pseudonym);
  render();
}

function waitlisted(body) {
  entry = { ...(entry || {}), outcome: "waiting", waitlist_position: body.waitlist_position };
  view = "waitlist";
  el.waitlistPosition.textContent = String(body.waitlist_position);
  render();
}

// An entrant learns the result by asking the war endpoint again (the same request as the entry): once
// the draw is in Redis, and on a waiting list whenever the slot changes (a cancelled seat may be theirs).
let resultTimer = null;
let lastAsked = 0;
let slotChanged = false; // on a waiting list: the slot changed since the last ask

function askResultIfDue() {
  if (!draw || !live.drawn || inFlight || resultTimer !== null) return;
  if (view !== "entered" && !(view === "waitlist" && slotChanged)) return;
  // At most one ask per 5 s from a waiting list, however often the count moves.
  const wait = Math.max(0, lastAsked + (view === "waitlist" ? 5000 : 0) - performance.now());
  resultTimer = setTimeout(() => {
    resultTimer = null;
    slotChanged = false;
    lastAsked = performance.now();
    take({ quiet: true });
  }, wait + Math.random() * 300); // spread a crowd's result requests over a few hundred ms
}

if (view === "waitlist") el.waitlistPosition.textContent = String(entry.waitlist_position);

// --- Proof of work (war-proof.js): solved during the countdown, one per attempt ----------------------

// Needed when the slot asks for it; also after the server said so (staff turned it on since page load).
let needProof = !!(cfg.challenge && cfg.challenge.required);
const prover =
  cfg.challenge && el.take
    ? new Prover({
        url: cfg.challenge.url,
        worker: cfg.challenge.worker,
        now: () => clock.now(),
        onState: (state) => {
          el.war.dataset.proof = state;
        },
      })
    : null;

// --- Taking a number -----------------------------------------------------------------------------

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

async function take({ quiet = false } = {}) {
  // Disabled synchronously, before anything else: a double click sends one request.
  if (inFlight) return;
  inFlight = true;
  // A result check (draw mode) keeps its panel; only a click shows the spinner.
  if (!quiet) view = "loading";
  render();
  if (dev.on) return; // Dev Controls never call the backend.
  const headers = { "Content-Type": "application/json", "X-CSRFToken": csrfToken() };
  if (prover && needProof) {
    // Normally solved long ago; a buyer who arrived seconds before the opening waits for it here.
    const proof = await prover.take();
    if (proof) headers["X-Altcha"] = proof;
  }
  fetch(cfg.urls.war, {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: JSON.stringify({
      location_id: cfg.slot.location,
      time_slot: cfg.slot.time_slot,
      date: cfg.slot.date,
    }),
  })
    .then((response) =>
      response
        .json()
        .catch(() => ({}))
        .then((body) => {
          if (response.status === 201 || response.status === 200) {
            alerts.fire(S.alert_success_title.replace("%(n)s", body.ticket.queue_number), S.alert_success_body);
            if (typeof body.remaining === "number" && (live.remaining === null || body.remaining < live.remaining)) {
              // Fresher than the last push; the next versioned message confirms or corrects it.
              live.remaining = body.remaining;
            }
            succeed(body.ticket, response.status === 200 && !quiet);
          } else if (response.status === 202 && body.entry) {
            entered(body.entry);
          } else if (body.code === "not_drawn") {
            if (view !== "waitlist") alerts.fire(S.alert_waitlist_title.replace("%(n)s", body.waitlist_position), "");
            waitlisted(body);
          } else if (quiet && [429, 503].includes(response.status)) {
            // The draw is not in Redis yet, or the server is busy: ask again after Retry-After.
            const retry = Number(response.headers.get("Retry-After")) || 1;
            lastAsked = performance.now() + retry * 1000;
            slotChanged = true;
          } else {
            const retry = Number(response.headers.get("Retry-After")) || null;
            const code = body.code || (response.status >= 500 ? "unavailable" : "invalid");
            if (code === "challenge_required" || code === "challenge_invalid") needProof = true;
            alerts.fire(S.alert_failure_title, (cfg.guide[code] || cfg.guide.unavailable).message);
            fail(code, body, retry);
          }
        }),
    )
    .catch(() => {
      if (quiet) {
        lastAsked = performance.now() + 2000;
        slotChanged = true;
      }
      else fail("network", {}, 2);
    })
    .then(() => {
      inFlight = false;
      askResultIfDue();
      // Each solution buys one attempt: solve the next now, while the buyer reads the answer.
      if (prover && needProof && view !== "success") prover.prepare();
      render();
    });
}

function succeed(ticket, already) {
  view = "success";
  el.queueNumber.textContent = String(ticket.queue_number);
  el.ticketCode.textContent = ticket.code;
  show(el.alreadyNote, !!already);
  render();
  el.panelSuccess.scrollIntoView({ block: "center", behavior: "smooth" });
}

function fail(code, body, retryAfter) {
  const guide = cfg.guide[code] || cfg.guide.unavailable;
  view = "failure";
  failure = { code, retryAt: retryAfter ? performance.now() + retryAfter * 1000 : 0 };
  retryAt = failure.retryAt;
  el.failureMessage.textContent = guide.message;
  el.failureNext.textContent = guide.next;
  el.failureCode.textContent = code;
  show(el.failureRetry, guide.action === "retry");
  let link = null;
  let text = null;
  if (guide.action === "other_slots") {
    link = cfg.urls.location;
    text = S.other_slots;
  }
  if (guide.action === "ticket") {
    const held = body && body.ticket && body.ticket.code;
    link = cfg.urls.tickets + (held ? `#${held}` : "");
    text = S.see_ticket;
  }
  if (guide.action === "profile") {
    link = cfg.urls.profile;
    text = S.to_profile;
  }
  if (guide.action === "login") {
    link = cfg.urls.login;
    text = S.login_first;
  }
  if (guide.action === "reload") {
    link = location.pathname;
    text = S.reload;
  }
  show(el.failureLink, !!link);
  if (link) {
    el.failureLink.href = link;
    el.failureLink.textContent = text;
  }
  if (code === "too_early") {
    // The server says we are early: our clock estimate is off. Measure again; the countdown follows.
    clock.reset();
    clock.measure(cfg.urls.time, 3);
  }
  render();
}

function renderFailureRetry() {
  if (el.failureRetry.hidden) return;
  const wait = failure.retryAt - performance.now();
  el.failureRetry.disabled = wait > 0;
  el.failureRetry.textContent = wait > 0 ? S.retry_in.replace("%(n)s", Math.ceil(wait / 1000)) : S.retry;
}

function backToLive() {
  view = "live";
  failure = null;
  render();
}

if (el.take) el.take.addEventListener("click", take);
el.failureBack.addEventListener("click", backToLive);
el.failureRetry.addEventListener("click", () => {
  if (failure && failure.retryAt > performance.now()) return;
  take();
});

// --- Dev Controls (DEBUG only): show each state without calling the backend ----------------------

const devBar = $("dev-controls");
const devToggle = $("dev-toggle");
if (devToggle) {
  // Collapsible, remembered per browser: expanded it covers ~100 px of a phone's screen.
  devToggle.addEventListener("click", () => {
    const collapsed = !devBar.classList.contains("collapsed");
    devBar.classList.toggle("collapsed", collapsed);
    document.body.classList.toggle("dev-controls-collapsed", collapsed);
    devToggle.setAttribute("aria-expanded", collapsed ? "false" : "true");
    try {
      localStorage.setItem("wt.devControls", collapsed ? "collapsed" : "expanded");
    } catch (e) {}
  });
}
if (devBar) {
  devBar.addEventListener("click", (event) => {
    const button = event.target.closest("[data-dev]");
    if (!button) return;
    const which = button.dataset.dev;
    inFlight = false;
    retryAt = 0;
    if (which === "live") {
      dev = { on: false, phase: null, opens: null };
      view = cfg.ticket ? "success" : "live";
    } else {
      dev.on = true;
      dev.phase = null;
      if (which === "prewar") {
        const now = clock.now() || performance.now();
        dev = { on: true, phase: "upcoming", opens: now + 90000 };
        view = "live";
      } else if (which === "loading") {
        dev.phase = "open";
        take();
      } else if (which === "success") {
        succeed({ queue_number: 7, code: "DEMO-0000-0007" }, false);
      } else if (which === "failure") {
        const code = $("dev-code").value;
        fail(code, { ticket: { code: "DEMO-0000-0001" } }, code === "rate_limited" || code === "unavailable" ? 5 : null);
      }
    }
    render();
  });
}

// --- Start ---------------------------------------------------------------------------------------

clock.onChange(render);
clock.onChange(scheduleOpening);
setLive(false);
el.liveStatus.textContent = S.connecting;
connect();
if (prover && needProof && !cfg.ticket && !cfg.blocked) prover.prepare();
// Fine-grained so the button enables within a tenth of a second of the server's opening time.
setInterval(render, 100);
askResultIfDue(); // an entrant who reloads after the draw hears the result at once
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && !socket) poll();
});
render();
