"""What one *winning* war attempt costs, in one process, without the network: ``python -m bench.profile_reserve``.

N distinct rehearsal buyers each reserve one seat of an open N-seat slot through the WSGI application
(``wartiket.wsgi.application``: the war endpoint, Redis scripts, ticket INSERT and notification hand-off
the web server runs), one after another on one thread. Prints per reservation: wall µs, this process' CPU µs (all
of its threads, so a background publisher's work is counted; the clock stops after the queued ticket events
are published), PostgreSQL queries, and Celery publishes. Uses DATABASE_URL / REDIS_URL (production
settings, DEBUG off); creates rehearsal data and removes it. The ticket events' tasks stay on the broker
(CELERY_BROKER_URL, default REDIS_URL) for a worker to discard: rehearsal buyers have no Telegram link.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bench.profile_war import environ, setup_django

WARM_UP = 50


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_reserve", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="reservations measured (default 1000)")
    parser.add_argument("--profile", action="store_true", help="then a pyinstrument profile of as many more")
    args = parser.parse_args(argv)
    setup_django()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from queueing.services import rehearsal
    from wartiket.celery import app as celery_app
    from wartiket.wsgi import application as app  # what the web server serves

    publishes = []
    send_task = celery_app.send_task

    def counted_send_task(name, *a, **kw):
        publishes.append(name)
        return send_task(name, *a, **kw)

    celery_app.send_task = counted_send_task

    def flush_events() -> None:
        # Before the batching publisher existed every publish happened inside the request: nothing to wait for.
        try:
            from notifications.services import publisher
        except ImportError:
            return
        publisher.flush()

    def call(token: str, payload: bytes) -> tuple[str, bytes]:
        out = []
        chunks = app(environ("/api/war", payload, token), lambda status, headers, exc_info=None: out.append(status))
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        return out[0], data

    def reserve_all(buyers, slot) -> None:
        payload = json.dumps(
            {"location_id": "latihan", "time_slot": slot.time_label, "date": slot.date.isoformat()}
        ).encode()
        for buyer in buyers:
            status, data = call(buyer.token, payload)
            if not status.startswith("201"):
                raise SystemExit(f"expected 201 reserved, got {status} {data[:200]!r}")

    rounds = 2 if args.profile else 1
    try:
        buyers = rehearsal.prepare_buyers(WARM_UP + rounds * args.n)
        warm, measured, profiled = buyers[:WARM_UP], buyers[WARM_UP : WARM_UP + args.n], buyers[WARM_UP + args.n :]
        # One slot per phase, each on a war day of its own: a buyer holds one ticket a day.
        warm_slot = rehearsal.open_in(rehearsal.create_slot(WARM_UP, time_label="08:00"), -5)
        slot = rehearsal.open_in(rehearsal.create_slot(args.n, time_label="09:00"), -5)
        half = WARM_UP // 2
        reserve_all(warm[:half], warm_slot)  # first-call costs (connections, scripts, imports) out of the way
        with CaptureQueriesContext(connection) as queries:  # counted apart: capturing costs time itself
            reserve_all(warm[half:], warm_slot)
        flush_events()
        query_count = len(queries) / (WARM_UP - half)

        published = len(publishes)
        started, cpu = time.perf_counter(), time.process_time()
        reserve_all(measured, slot)
        flush_events()
        per = (time.perf_counter() - started) / args.n * 1e6
        per_cpu = (time.process_time() - cpu) / args.n * 1e6
        sent = len(publishes) - published
        print(
            f"reservation  {per:6.0f} µs wall  {per_cpu:6.0f} µs CPU  {query_count:.1f} SQL  "
            f"{sent / args.n:.3f} Celery publishes  (n={args.n})"
        )
        if args.profile:
            from pyinstrument import Profiler

            profile_slot = rehearsal.open_in(rehearsal.create_slot(args.n, time_label="10:00"), -5)
            profiler = Profiler(interval=0.0001)
            profiler.start()
            reserve_all(profiled, profile_slot)
            flush_events()
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
    finally:
        celery_app.send_task = send_task
        rehearsal.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
