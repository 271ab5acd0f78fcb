/* War Tiket: code every page runs. Starts the page's server clock (see server-clock.js) and the
 * countdown badges of the home and location pages. Loaded as a module from base.html.
 */
import { serverClock } from "./server-clock.js";
import { formatDuration, formatTime, readJson, stateAt } from "./helpers.js";

const REMEASURE_MS = 30000;

/* Countdown badges on the home and location pages: [data-countdown] with opens/closes/remaining. */
function startCountdowns() {
  const nodes = document.querySelectorAll("[data-countdown]");
  if (!nodes.length) return;
  const labels = readJson("state-labels") || {};
  const render = () => {
    const now = serverClock.now();
    if (now === null) return;
    nodes.forEach((node) => {
      const opens = Number(node.dataset.opensMs);
      const closes = Number(node.dataset.closesMs);
      const remaining = node.dataset.remaining === "" ? null : Number(node.dataset.remaining);
      const state = stateAt(now, opens, closes, remaining);
      const badge = node.querySelector("[data-state-badge]");
      if (badge && badge.dataset.state !== state) {
        badge.dataset.state = state;
        badge.className = `badge state-badge state-${state}`;
        badge.textContent = labels[state] || state;
      }
      // "War opens …" turns into "War opened …" at the opening (the tense follows the state).
      node.querySelectorAll("[data-when]").forEach((when) => {
        when.hidden = (when.dataset.when === "upcoming") !== (state === "upcoming");
      });
      const timer = node.querySelector("[data-timer]");
      if (timer) {
        timer.textContent = state === "upcoming" ? formatDuration(opens - now, labels.days) : "";
        timer.hidden = state !== "upcoming";
      }
    });
  };
  render();
  serverClock.onChange(render);
  setInterval(render, 250);
}

function startClock() {
  const seed = document.querySelector('meta[name="server-ms"]');
  // The page itself is a sample: the server read its clock between navigation start (0) and now.
  if (seed) serverClock.add(Number(seed.content), 0, performance.now());
  const timeUrl = (document.querySelector('meta[name="time-url"]') || {}).content;
  if (!timeUrl) return;
  serverClock.measure(timeUrl, 3);
  setInterval(() => serverClock.measure(timeUrl, 1), REMEASURE_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") {
      serverClock.reset();
      serverClock.measure(timeUrl, 3);
    }
  });
}

document.querySelectorAll("[data-autosubmit]").forEach((el) => {
  el.addEventListener("change", () => el.form.submit());
});

// The same names as before the move to modules, for the browser console (modules import them instead).
window.WarTiket = { ServerClock: serverClock, formatDuration, formatTime, stateAt, readJson };

startClock();
startCountdowns();
