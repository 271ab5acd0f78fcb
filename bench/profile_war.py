"""Where a war request's time goes, in one process, without the network: ``python -m bench.profile_war``.

Calls the WSGI application directly (the same middleware, views and Redis calls the web server runs) for the
bare ceiling view and for war requests that are refused (sold out, not yet open) and prints the
microseconds per request of each (wall clock, and this process' CPU time, which bounds a server's
throughput and is far less noisy on a shared machine), then a pyinstrument profile of a refused
war request. Uses DATABASE_URL / REDIS_URL (production settings, DEBUG off); creates rehearsal data and
removes it.
Counts PostgreSQL queries per refused request as well: it must be zero.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import sys
import time


def environ(path: str, body: bytes, token: str) -> dict:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8001",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8001",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_AUTHORIZATION": f"Token {token}",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def setup_django() -> None:
    """Production settings (DEBUG off) in this process, without the limits a one-client loop would hit."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        WAR_TESTING="0",
        WAR_RATE_LIMIT_IP="0",
        WAR_RATE_LIMIT_USER="0",
    )
    import django

    django.setup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_war", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=3000, help="requests per measurement (default 3000)")
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    setup_django()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.services.identity import Principal
    from queueing.services import rehearsal, reservations

    buyers = rehearsal.prepare_buyers(2)
    sold_out = rehearsal.open_in(rehearsal.create_slot(1, time_label="08:00"), -5)
    reservations.reserve(Principal(id=buyers[0].user_id, has_nik=True), "latihan", "08:00", sold_out.date)
    not_open = rehearsal.create_slot(5, time_label="13:00")
    from wartiket.wsgi import application as app  # what the web server serves: /api/war before Django

    token = buyers[1].token

    def body(slot) -> bytes:
        return json.dumps(
            {"location_id": "latihan", "time_slot": slot.time_label, "date": slot.date.isoformat()}
        ).encode()

    cases = {
        "ceiling": ("/bench/ceiling", body(sold_out)),
        "war: sold out": ("/api/war", body(sold_out)),
        "war: not yet open": ("/api/war", body(not_open)),
    }

    def call(path: str, payload: bytes) -> bytes:
        out = []
        chunks = app(environ(path, payload, token), lambda status, headers, exc_info=None: out.append(status))
        data = b"".join(chunks)
        if hasattr(chunks, "close"):
            chunks.close()
        return out[0].encode() + b" " + data

    try:
        for name, (path, payload) in cases.items():
            for _ in range(200):
                call(path, payload)
            with CaptureQueriesContext(connection) as queries:
                answer = call(path, payload)
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(args.n):
                call(path, payload)
            per = (time.perf_counter() - started) / args.n * 1e6
            per_cpu = (time.process_time() - cpu) / args.n * 1e6
            print(f"{name:<20} {per:6.0f} µs/request wall, {per_cpu:6.0f} µs CPU  {len(queries)} SQL  {answer[:60]!r}")
        if not args.no_profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0001)
            path, payload = cases["war: sold out"]
            profiler.start()
            for _ in range(args.n):
                call(path, payload)
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
    finally:
        rehearsal.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
