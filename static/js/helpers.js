/* Small helpers shared by the page modules (site.js, war.js). No side effects on import. */

const pad = (n) => (n < 10 ? `0${n}` : String(n));

/* "mm:ss", "hh:mm:ss", or "N days hh:mm:ss" (daysLabel like "%(n)s hari"). */
export function formatDuration(ms, daysLabel) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const days = Math.floor(total / 86400);
  const h = Math.floor((total % 86400) / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const clock = (h || days ? `${pad(h)}:` : "") + `${pad(m)}:${pad(s)}`;
  if (days) return `${(daysLabel || "%(n)s d").replace("%(n)s", days)} ${clock}`;
  return clock;
}

export function formatTime(ms, timeZone, lang) {
  try {
    return new Intl.DateTimeFormat(lang || document.documentElement.lang || "id", {
      day: "numeric",
      month: "long",
      year: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hour12: false,
      timeZone,
    }).format(new Date(ms));
  } catch (e) {
    return "";
  }
}

export function stateAt(now, opensMs, closesMs, remaining) {
  if (now < opensMs) return "upcoming";
  if (remaining !== null && remaining !== undefined && remaining <= 0) return "sold_out";
  if (now >= closesMs) return "closed";
  return "open";
}

/* The parsed contents of <script type="application/json" id="…">, or null if the page has none. */
export function readJson(id) {
  const el = document.getElementById(id);
  return el ? JSON.parse(el.textContent) : null;
}
