"""Ticket events to Celery in batches, from a background thread: one broker publish per batch, not per ticket.

A Celery publish costs about 1 ms of CPU (kombu sets up a Redis client for each), about 30 % of a winning
war attempt when it ran on the request thread once per ticket. Here the request thread only appends
``(kind, code)`` to this process's queue (microseconds); a daemon thread waits ``BATCH_WINDOW_S`` after the
first event for more to arrive (or until ``BATCH_MAX`` are waiting) and publishes them as ONE
``notifications.ticket_events`` task. At 1,000 reservations a second that is ~100 publishes, not 1,000.

What is promised, and why it still holds:

- Exactly one Telegram message per event: the worker records a batch with ``notify.record_ticket_events``
  (idempotent over the Notification row's unique constraint) and delivery claims the row; neither cares
  whether an event came alone or in a batch, or twice.
- Nothing is lost beyond what the sweeper backfills. An event lives only in this process's memory until
  its batch is published, so a process killed (SIGKILL, OOM) with a non-empty queue loses those entries,
  as does a batch whose publish fails (broker down: logged, dropped, never raised into a request) or an
  event refused because the queue is full. Each of those is a ticket event that was never queued, which is
  exactly what the sweeper (``tasks.sweep`` → ``notify.backfill_ticket_events``, every minute, tickets
  older than 5 minutes and younger than 6 hours) records and queues: the message comes minutes late, once.
  A normal exit publishes what is queued (atexit; in a multiprocessing child, its exit finalizer).
- Fork safety: the queue, its lock and its thread belong to the process that made them. A forked child
  (a web worker, a test) starts with an empty queue and starts its own thread on its first event: it
  never publishes, or drops, events its parent queued; the parent's own thread publishes those.
"""

from __future__ import annotations

import atexit
import collections
import logging
import multiprocessing.util
import os
import threading
import time

from wartiket import pid
from wartiket.celery import app

log = logging.getLogger(__name__)

TASK = "notifications.ticket_events"
# The first event of a batch waits at most this long for company: far below a Telegram send's own latency.
BATCH_WINDOW_S = 0.01
# A batch is published at once when this many events are waiting (and never holds more).
BATCH_MAX = 200
# Beyond this many unpublished events (the broker down for a while under a storm), new events are dropped
# for the sweeper rather than growing the process's memory without bound.
MAX_PENDING = 20_000
# How long a process's exit waits for its last batches.
EXIT_FLUSH_TIMEOUT_S = 5.0


def _send(name: str, args: tuple) -> None:
    """The one broker call (replaced in tests to count publishes or to fail like a broker that is down)."""
    app.send_task(name, args=args)


class Publisher:
    """One process's queue of ticket events and the daemon thread that publishes them in batches."""

    def __init__(self) -> None:
        self.pid = pid.current()
        self.cond = threading.Condition(threading.Lock())
        self.events: collections.deque[tuple[str, str]] = collections.deque()
        self.thread: threading.Thread | None = None
        self.flushers = 0  # callers of flush() waiting: the thread publishes without waiting out its window
        self.in_flight = 0  # events taken from the queue whose publish has not finished
        self.published = 0  # batches handed to the broker (tests and the benchmark read these)
        self.dropped = 0

    def put(self, kind: str, code: str) -> None:
        with self.cond:
            if len(self.events) >= MAX_PENDING:
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.error("ticket events: %s waiting, dropping %s for the sweeper", MAX_PENDING, code)
                return
            self.events.append((kind, code))
            if self.thread is None or not self.thread.is_alive():
                self._start()
            # Wake the thread when a batch begins, and again when it is full.
            if len(self.events) == 1 or len(self.events) >= BATCH_MAX:
                self.cond.notify_all()

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name="ticket-event-publisher", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutdown: the event stays queued for flush() (atexit) to publish
            log.warning("ticket events: no publisher thread at shutdown; flushing at exit")
            return
        self.thread = thread

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                self._publish(batch)
            finally:
                with self.cond:
                    self.in_flight -= len(batch)
                    self.cond.notify_all()

    def _next_batch(self) -> list[tuple[str, str]]:
        with self.cond:
            while not self.events:
                self.cond.wait()
            deadline = time.monotonic() + BATCH_WINDOW_S
            while len(self.events) < BATCH_MAX and not self.flushers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            batch = [self.events.popleft() for _ in range(min(len(self.events), BATCH_MAX))]
            self.in_flight += len(batch)
            return batch

    def _publish(self, batch: list[tuple[str, str]]) -> None:
        try:
            _send(TASK, ([[kind, code] for kind, code in batch],))
        except Exception:  # the broker is down: the sweeper backfills these events, the requests never knew
            log.exception("could not queue %s ticket events; the sweeper will pick them up", len(batch))
            return
        self.published += 1

    def flush(self, timeout: float = EXIT_FLUSH_TIMEOUT_S) -> bool:
        """Publish everything queued so far and wait for it; True when nothing is left unpublished."""
        deadline = time.monotonic() + timeout
        with self.cond:
            self.flushers += 1
            self.cond.notify_all()  # the thread stops waiting out its window
            try:
                while self.events or self.in_flight:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    if self.events and (self.thread is None or not self.thread.is_alive()):
                        break  # no thread to do it (it died, or interpreter shutdown): publish here
                    self.cond.wait(left)
                else:
                    return True
                batch = list(self.events)
                self.events.clear()
            finally:
                self.flushers -= 1
        for start in range(0, len(batch), BATCH_MAX):
            self._publish(batch[start : start + BATCH_MAX])
        return True

    def pending(self) -> int:
        with self.cond:
            return len(self.events) + self.in_flight


_publisher: Publisher | None = None
_create_lock = threading.Lock()


def publisher() -> Publisher:
    """This process's publisher, made on first use; a forked child's first use makes its own."""
    global _publisher
    current = _publisher
    if current is not None and current.pid == pid.current():
        return current
    with _create_lock:
        if _publisher is None or _publisher.pid != pid.current():
            _publisher = Publisher()
            # A multiprocessing child (each granian web worker is one) ends with os._exit(), which skips
            # atexit; it runs the finalizers registered in it instead (those of its parent are cleared).
            multiprocessing.util.Finalize(None, flush, exitpriority=10)
        return _publisher


def put(kind: str, code: str) -> None:
    """Queue one ticket event for the next batch. Never raises into the caller's request."""
    try:
        publisher().put(kind, code)
    except Exception:  # nothing expected raises here; if anything does, the sweeper backfills the event
        log.exception("could not queue ticket event %s %s; the sweeper will pick it up", kind, code)


def flush(timeout: float = EXIT_FLUSH_TIMEOUT_S) -> bool:
    """Publish what this process has queued (atexit; tests; the benchmark before it stops its clock)."""
    current = _publisher
    if current is None or current.pid != pid.current():
        return True  # nothing of this process's own; a parent's queue is the parent's to publish
    return current.flush(timeout)


def _after_fork_in_child() -> None:
    global _publisher, _create_lock
    # The parent's queue, lock and thread are not ours: the thread does not exist here, and its lock may
    # have been held at the moment of the fork. Start empty; the parent publishes its own events.
    _publisher = None
    _create_lock = threading.Lock()
    # Celery's producer pool likewise (its mutex may have been held by the parent's publishing thread).
    # Celery resets it by itself only in billiard's children; web workers and os.fork need this.
    app._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(flush)
