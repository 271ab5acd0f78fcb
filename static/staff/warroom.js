/* War room: figures pushed over a WebSocket twice a second, a table and a small live chart.
 *
 * The server sends complete figures every time (counts and per-second rates per slot), so a lost or
 * late message needs no repair: the next one replaces it. The chart keeps the last 60 seconds of
 * rates here in the page; nothing on the server remembers what a page has drawn.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("warroom-config").textContent);
  var initial = JSON.parse(document.getElementById("warroom-initial").textContent);
  var OUTCOMES = ["reserved", "too_early", "sold_out", "already_reserved", "one_per_day", "rate_limited", "closed", "errors"];
  var COLORS = {
    reserved: "#198754", too_early: "#0d6efd", sold_out: "#dc3545", already_reserved: "#6f42c1",
    one_per_day: "#fd7e14", rate_limited: "#d63384", closed: "#6c757d", errors: "#212529"
  };
  var WINDOW_MS = 60000;
  var history = [];
  var lastReceived = null;
  var socket = null;
  var retryMs = 1000;

  var $ = function (id) { return document.getElementById(id); };

  function fmtRate(value) {
    if (value === null || value === undefined) return "—";
    return value >= 100 ? Math.round(value).toLocaleString() : value.toFixed(1);
  }

  function fmtSince(ms) {
    var sign = ms < 0 ? "−" : "";
    var s = Math.floor(Math.abs(ms) / 1000);
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    return sign + (h ? h + ":" + pad(m) : pad(m)) + ":" + pad(sec);
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function renderRows(figures) {
    var body = $("wr-rows");
    body.textContent = "";
    if (!figures.slots.length) {
      var tr = document.createElement("tr");
      var td = cell(config.none, "text-secondary");
      td.colSpan = OUTCOMES.length + 5;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    figures.slots.forEach(function (slot) {
      var tr = document.createElement("tr");
      tr.dataset.slot = slot.id;
      var name = document.createElement("td");
      var link = document.createElement("a");
      link.href = "/staff/warroom/" + slot.id + "/";
      link.textContent = slot.name;
      name.appendChild(link);
      tr.appendChild(name);
      var state = document.createElement("td");
      var badge = document.createElement("span");
      badge.className = "badge state-badge state-" + slot.state;
      badge.textContent = config.states[slot.state] || slot.state;
      state.appendChild(badge);
      tr.appendChild(state);
      tr.appendChild(cell(fmtSince(slot.since_open_ms), "text-end font-monospace"));
      var remaining = cell(slot.remaining === null ? "—" : slot.remaining.toLocaleString(), "text-end fw-bold");
      remaining.dataset.testid = "remaining";
      tr.appendChild(remaining);
      var tickets = cell(slot.tickets.toLocaleString() + " / " + slot.quota.toLocaleString(), "text-end");
      tickets.dataset.testid = "tickets";
      tr.appendChild(tickets);
      OUTCOMES.forEach(function (code) {
        var td = cell("", "text-end");
        td.dataset.outcome = code;
        var rate = document.createElement("div");
        rate.className = "wr-rate";
        rate.textContent = fmtRate(slot.rates[code]);
        var count = document.createElement("div");
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
    var parts = Object.keys(errors.counts).sort().map(function (code) {
      return code + " " + errors.counts[code].toLocaleString();
    });
    $("wr-errors-detail").textContent = parts.length ? parts.join(" · ") : "—";
  }

  function record(figures) {
    var sums = {};
    var any = false;
    OUTCOMES.forEach(function (code) { sums[code] = 0; });
    figures.slots.forEach(function (slot) {
      OUTCOMES.forEach(function (code) {
        if (slot.rates[code] !== null && slot.rates[code] !== undefined) { sums[code] += slot.rates[code]; any = true; }
      });
    });
    if (figures.errors.rate !== null) { sums.errors += figures.errors.rate; any = true; }
    if (!any) return;
    history.push({ t: figures.server_ms, rates: sums });
    while (history.length && history[0].t < figures.server_ms - WINDOW_MS) history.shift();
  }

  function drawChart() {
    var canvas = $("wr-chart");
    var ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth, height = canvas.clientHeight || 260;
    if (canvas.width !== Math.round(width * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var left = 56, right = 150, top = 10, bottom = 24;
    var plotW = Math.max(10, width - left - right), plotH = Math.max(10, height - top - bottom);
    var end = history.length ? history[history.length - 1].t : Date.now();
    var start = end - WINDOW_MS;
    var max = 1;
    history.forEach(function (point) {
      OUTCOMES.forEach(function (code) { if (point.rates[code] > max) max = point.rates[code]; });
    });
    var step = Math.pow(10, Math.floor(Math.log10(max)));
    var nice = [1, 2, 5, 10].map(function (f) { return f * step; }).filter(function (v) { return v >= max / 4; })[0];
    var yMax = Math.ceil(max / nice) * nice;
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#e5e7eb";
    ctx.fillStyle = "#6c757d";
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (var v = 0; v <= yMax + 1e-9; v += nice) {
      var y = top + plotH - (v / yMax) * plotH;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + plotW, y); ctx.stroke();
      ctx.fillText(Math.round(v).toLocaleString(), left - 6, y);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (var s = 0; s <= 60; s += 10) {
      var x = left + plotW - (s / 60) * plotW;
      ctx.fillText(s ? "−" + s + " " + config.seconds : "0", x, top + plotH + 6);
    }
    OUTCOMES.forEach(function (code, index) {
      ctx.strokeStyle = COLORS[code];
      ctx.lineWidth = 2;
      ctx.beginPath();
      var started = false;
      history.forEach(function (point) {
        var px = left + ((point.t - start) / WINDOW_MS) * plotW;
        var py = top + plotH - (point.rates[code] / yMax) * plotH;
        if (!started) { ctx.moveTo(px, py); started = true; } else { ctx.lineTo(px, py); }
      });
      ctx.stroke();
      var ly = top + 8 + index * 16;
      ctx.fillStyle = COLORS[code];
      ctx.fillRect(left + plotW + 12, ly - 4, 10, 8);
      ctx.fillStyle = "#1d2433";
      ctx.textAlign = "left";
      ctx.textBaseline = "middle";
      var last = history.length ? history[history.length - 1].rates[code] : null;
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
    var el = $("wr-consistency");
    if (!check || check.checked_ago_s === null) {
      el.textContent = config.never_checked;
      el.dataset.ok = "";
      return;
    }
    var when = " (" + check.slots + " slot, " + check.checked_ago_s + " " + config.ago + ")";
    if (check.drift.length === 0) {
      el.textContent = config.consistent + when;
      el.dataset.ok = "1";
      el.className = "text-success";
    } else {
      el.textContent = config.drift + when + ": " + check.drift.map(function (d) {
        return "slot " + d.slot + ": " + d.lines.join("; ");
      }).join(" · ");
      el.dataset.ok = "0";
      el.className = "text-danger fw-bold";
    }
  }

  function setStatus(text, live) {
    var el = $("wr-status");
    el.textContent = text;
    el.dataset.live = live;
  }

  function connect() {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + config.socket);
    socket.onopen = function () { retryMs = 1000; setStatus(config.live, "1"); };
    socket.onmessage = function (event) { apply(JSON.parse(event.data)); };
    socket.onclose = function () {
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

  document.querySelectorAll("[data-label]").forEach(function (el) {
    el.textContent = config.labels[el.dataset.label] || el.dataset.label;
  });
  document.querySelectorAll(".wr-swatch").forEach(function (el) {
    el.style.background = COLORS[el.dataset.outcome];
  });
  apply(initial);
  connect();
  setInterval(tickAge, 100);
  window.addEventListener("resize", drawChart);
})();
