/* War room: figures pushed over a WebSocket twice a second, a table and a small live chart.
 *
 * The server sends complete figures every time (counts and per-second rates per slot), so a lost or
 * late message needs no repair: the next one replaces it. The chart keeps the last 60 seconds of
 * rates here in the page; nothing on the server remembers what a page has drawn.
 *
 * A module (deferred, strict), loaded from templates/staff/warroom.html.
 */
const config = JSON.parse(document.getElementById("warroom-config").textContent);
const initial = JSON.parse(document.getElementById("warroom-initial").textContent);
// The columns, in the server's order (queueing/services/warroom.py SHOWN): one list for both.
const OUTCOMES = config.outcomes;
const COLORS = {
  reserved: "#198754", too_early: "#0d6efd", sold_out: "#dc3545", already_reserved: "#6f42c1",
  one_per_day: "#fd7e14", rate_limited: "#d63384", closed: "#6c757d", errors: "#212529",
  entered: "#20c997", challenge_invalid: "#ffc107"
};
const WINDOW_MS = 60000;
const history = [];
let lastReceived = null;
let socket = null;
let retryMs = 1000;

const $ = (id) => document.getElementById(id);

function fmtRate(value) {
  if (value === null || value === undefined) return "—";
  return value >= 100 ? Math.round(value).toLocaleString() : value.toFixed(1);
}

function fmtSince(ms) {
  const sign = ms < 0 ? "−" : "";
  const s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const pad = (n) => (n < 10 ? "0" : "") + n;
  return sign + (h ? h + ":" + pad(m) : pad(m)) + ":" + pad(sec);
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function renderRows(figures) {
  const body = $("wr-rows");
  body.textContent = "";
  if (!figures.slots.length) {
    const tr = document.createElement("tr");
    const td = cell(config.none, "text-secondary");
    td.colSpan = OUTCOMES.length + 5;
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  figures.slots.forEach((slot) => {
    const tr = document.createElement("tr");
    tr.dataset.slot = slot.id;
    const name = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/staff/warroom/" + slot.id + "/";
    // Non-breaking hyphens: a narrow column may wrap between the name's words, never inside its date.
    link.textContent = slot.name.replace(/-/g, "\u2011");
    name.appendChild(link);
    tr.appendChild(name);
    const state = document.createElement("td");
    const badge = document.createElement("span");
    badge.className = "badge state-badge state-" + slot.state;
    badge.textContent = config.states[slot.state] || slot.state;
    state.appendChild(badge);
    tr.appendChild(state);
    tr.appendChild(cell(fmtSince(slot.since_open_ms), "text-end font-monospace"));
    const remaining = cell(slot.remaining === null ? "—" : slot.remaining.toLocaleString(), "text-end fw-bold");
    remaining.dataset.testid = "remaining";
    tr.appendChild(remaining);
    const tickets = cell(slot.tickets.toLocaleString() + " / " + slot.quota.toLocaleString(), "text-end");
    tickets.dataset.testid = "tickets";
    tr.appendChild(tickets);
    OUTCOMES.forEach((code) => {
      const td = cell("", "text-end");
      td.dataset.outcome = code;
      const rate = document.createElement("div");
      rate.className = "wr-rate";
      rate.textContent = fmtRate(slot.rates[code]);
      const count = document.createElement("div");
      count.className = "small text-secondary";
      count.dataset.count = code;
      count.textContent = (slot.counts[code] || 0).toLocaleString();
      td.appendChild(rate);
      td.appendChild(count);
      tr.appendChild(td);
    });
    body.appendChild(tr);
  });
}

function renderErrors(errors) {
  $("wr-errors-rate").textContent = fmtRate(errors.rate);
  const parts = Object.keys(errors.counts).sort().map((code) => {
    return code + " " + errors.counts[code].toLocaleString();
  });
  $("wr-errors-detail").textContent = parts.length ? parts.join(" · ") : "—";
}

function record(figures) {
  const sums = {};
  let any = false;
  OUTCOMES.forEach((code) => { sums[code] = 0; });
  figures.slots.forEach((slot) => {
    OUTCOMES.forEach((code) => {
      if (slot.rates[code] !== null && slot.rates[code] !== undefined) { sums[code] += slot.rates[code]; any = true; }
    });
  });
  if (figures.errors.rate !== null) { sums.errors += figures.errors.rate; any = true; }
  if (!any) return;
  history.push({ t: figures.server_ms, rates: sums });
  while (history.length && history[0].t < figures.server_ms - WINDOW_MS) history.shift();
}

function drawChart() {
  const canvas = $("wr-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight || 260;
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 56, right = 150, top = 10, bottom = 24;
  const plotW = Math.max(10, width - left - right), plotH = Math.max(10, height - top - bottom);
  const end = history.length ? history[history.length - 1].t : Date.now();
  const start = end - WINDOW_MS;
  let max = 1;
  history.forEach((point) => {
    OUTCOMES.forEach((code) => { if (point.rates[code] > max) max = point.rates[code]; });
  });
  const step = 10 ** Math.floor(Math.log10(max));
  const nice = [1, 2, 5, 10].map((f) => f * step).filter((v) => v >= max / 4)[0];
  const yMax = Math.ceil(max / nice) * nice;
  ctx.font = "11px system-ui, sans-serif";
  ctx.strokeStyle = "#e5e7eb";
  ctx.fillStyle = "#6c757d";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let v = 0; v <= yMax + 1e-9; v += nice) {
    const y = top + plotH - (v / yMax) * plotH;
    ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + plotW, y); ctx.stroke();
    ctx.fillText(Math.round(v).toLocaleString(), left - 6, y);
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  for (let s = 0; s <= 60; s += 10) {
    const x = left + plotW - (s / 60) * plotW;
    ctx.fillText(s ? "−" + s + " " + config.seconds : "0", x, top + plotH + 6);
  }
  OUTCOMES.forEach((code, index) => {
    ctx.strokeStyle = COLORS[code];
    ctx.lineWidth = 2;
    ctx.beginPath();
    let started = false;
    history.forEach((point) => {
      const px = left + ((point.t - start) / WINDOW_MS) * plotW;
      const py = top + plotH - (point.rates[code] / yMax) * plotH;
      if (!started) { ctx.moveTo(px, py); started = true; } else { ctx.lineTo(px, py); }
    });
    ctx.stroke();
    const ly = top + 8 + index * 16;
    ctx.fillStyle = COLORS[code];
    ctx.fillRect(left + plotW + 12, ly - 4, 10, 8);
    ctx.fillStyle = "#1d2433";
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    const last = history.length ? history[history.length - 1].rates[code] : null;
    ctx.fillText((config.labels[code] || code) + (last === null ? "" : " " + fmtRate(last)), left + plotW + 26, ly);
  });
}

function apply(figures) {
  if (figures.type === "unavailable") {
    setStatus(config.unavailable, "0");
    return;
  }
  lastReceived = performance.now();
  renderRows(figures);
  renderErrors(figures.errors);
  renderConsistency(figures.consistency);
  $("wr-server-time").textContent = new Date(figures.server_ms).toLocaleTimeString("id-ID", { timeZone: "Asia/Jakarta", hour12: false });
  record(figures);
  drawChart();
}

// The latest reconcile check: drift between PostgreSQL and Redis is what an operator must see first.
function renderConsistency(check) {
  const el = $("wr-consistency");
  if (!check || check.checked_ago_s === null) {
    el.textContent = config.never_checked;
    el.dataset.ok = "";
    return;
  }
  const when = " (" + check.slots + " slot, " + check.checked_ago_s + " " + config.ago + ")";
  if (check.drift.length === 0) {
    el.textContent = config.consistent + when;
    el.dataset.ok = "1";
    el.className = "text-success";
  } else {
    el.textContent = config.drift + when + ": " + check.drift.map((d) => {
      return "slot " + d.slot + ": " + d.lines.join("; ");
    }).join(" · ");
    el.dataset.ok = "0";
    el.className = "text-danger fw-bold";
  }
}

function setStatus(text, live) {
  const el = $("wr-status");
  el.textContent = text;
  el.dataset.live = live;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  socket = new WebSocket(scheme + location.host + config.socket);
  socket.onopen = () => { retryMs = 1000; setStatus(config.live, "1"); };
  socket.onmessage = (event) => { apply(JSON.parse(event.data)); };
  socket.onclose = () => {
    setStatus(config.offline, "0");
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
}

function tickAge() {
  if (lastReceived !== null) {
    $("wr-age").textContent = ((performance.now() - lastReceived) / 1000).toFixed(1) + " " + config.seconds;
  }
}

document.querySelectorAll("[data-label]").forEach((el) => {
  el.textContent = config.labels[el.dataset.label] || el.dataset.label;
});
document.querySelectorAll(".wr-swatch").forEach((el) => {
  el.style.background = COLORS[el.dataset.outcome];
});
apply(initial);
connect();
setInterval(tickAge, 100);
window.addEventListener("resize", drawChart);
