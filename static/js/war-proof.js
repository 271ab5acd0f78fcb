/* Proof of work for war attempts (accounts/services/challenge.py): a solution ready before the click.
 *
 * On a slot whose challenge is on or hot, every attempt sends a solved challenge in X-Altcha, and each
 * solution is accepted once. The page fetches the slot's challenge (GET /api/challenge?slot=<id>) and
 * solves it with the vendored altcha library's own solver in Web Workers while the buyer waits for the
 * countdown, so the click at the opening sends at once. After an attempt that was not a success the
 * next one is solved straight away (a retry needs a fresh solution); a solution about to expire while
 * the page waits is replaced by a fresh one.
 */
import { solveChallengeWorkers } from "../vendor/altcha/altcha-lib.min.js";

// A solution this close to its challenge's expiry is replaced rather than sent (clocks and slow networks).
const EXPIRY_MARGIN_MS = 60_000;

export class Prover {
  /* url: the slot's challenge URL; worker: the altcha PBKDF2 worker script; now(): server epoch ms or null;
   * onState(state): "solving" | "ready" | "failed" | "spent", for the page (and its tests). */
  constructor({ url, worker, now, onState }) {
    this.url = url;
    this.worker = worker;
    this.now = () => now() ?? Date.now();
    this.onState = onState || (() => {});
    this.next = null; // Promise of {payload, expiresMs}: being solved or ready
    this.refresh = null;
  }

  /* Start solving the next solution unless one is ready or under way. */
  prepare() {
    if (!this.next) {
      this.onState("solving");
      const next = this.solve();
      this.next = next;
      next.then(
        (ready) => {
          if (this.next === next) {
            this.onState("ready");
            this.scheduleRefresh(ready.expiresMs);
          }
        },
        () => {
          if (this.next === next) {
            this.next = null; // solved again when next asked for
            this.onState("failed");
          }
        },
      );
    }
    return this.next;
  }

  async solve() {
    const response = await fetch(this.url, { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`challenge: HTTP ${response.status}`);
    const challenge = await response.json();
    const solution = await solveChallengeWorkers({
      challenge,
      // Several cores when the device has them; the page itself needs little CPU during a countdown.
      concurrency: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 2)),
      createWorker: () => new Worker(this.worker),
    });
    if (!solution) throw new Error("challenge: not solved in time");
    const { parameters, signature } = challenge;
    return {
      payload: btoa(JSON.stringify({ challenge: { parameters, signature }, solution })),
      expiresMs: parameters.expiresAt * 1000,
    };
  }

  scheduleRefresh(expiresMs) {
    clearTimeout(this.refresh);
    const wait = expiresMs - EXPIRY_MARGIN_MS - this.now();
    this.refresh = setTimeout(
      () => {
        this.next = null;
        this.prepare();
      },
      Math.max(1000, Math.min(wait, 2147483647)),
    );
  }

  /* The X-Altcha value for one attempt (waiting while it is still being solved), or null if none could be
   * made (the server then answers challenge_required and the page offers a retry). It is spent: the next
   * attempt gets another one (prepare). */
  async take() {
    let ready = await this.prepare().catch(() => null);
    if (ready && ready.expiresMs - EXPIRY_MARGIN_MS <= this.now()) {
      this.next = null;
      ready = await this.prepare().catch(() => null);
    }
    this.next = null;
    clearTimeout(this.refresh);
    this.onState("spent");
    return ready ? ready.payload : null;
  }
}
