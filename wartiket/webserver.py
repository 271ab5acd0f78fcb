"""The web role's server: granian serving ``wartiket.wsgi:application``, the application imported once here.

``python -m wartiket.webserver --host H --port P --workers N --threads T`` (``wartiket.serve`` builds this
command line; run it through ``python -m wartiket.serve web``).

Why granian: its HTTP layer is Rust, so Python spends its time only in the application. Measured on this
project's 2 cores (docs/benchmarks.md), it answers a bare Django view about twice as fast as gunicorn's
threaded workers, and a refused war attempt several times as fast.

Why this module rather than granian's command line: granian starts its workers by forking this process
(Linux' default start method), and each worker then loads the target. Here the target is imported
*before* the server starts, and the loader hands the already-imported application over: a worker, first
or replacement after a crash, forks with Django, the URLconf and the war endpoint ready (what gunicorn's
``--preload`` did) and answers within milliseconds instead of importing Django for about a second. The
import opens no database connection, and every Redis client is made per pid, so nothing is shared across
the fork.
"""

from __future__ import annotations

import argparse
import os
import sys

from wartiket.serve import WEB_THREADS, WEB_WORKERS  # the production sizes (serve.py says why)

TARGET = "wartiket.wsgi:application"
# Seconds a stopping worker gets to finish its requests (SIGTERM → SIGKILL); in-flight reservations finish.
GRACEFUL_TIMEOUT = 20


class _NoCrashLoopGuard(dict):
    """granian's record of when each worker was last respawned, read as "long ago".

    granian stops the *whole server* when a worker dies again within 5.5 s of its respawn (its crash-loop
    guard, meant for an application that fails to import). Here a worker forks with the application
    already imported, so it cannot fail that way; what can kill workers in a row is load or an attacker
    during a war, and a server that exits then takes the site down. Replaced at once, every time, instead
    (as gunicorn does).
    """

    def get(self, key, default=None):
        return float("-inf")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m wartiket.webserver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=WEB_WORKERS, help="processes (default %(default)s)")
    parser.add_argument(
        "--threads", type=int, default=WEB_THREADS, help="Python threads per process (default %(default)s)"
    )
    parser.add_argument("--backlog", type=int, default=2048)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
    from granian import Granian
    from granian.constants import Interfaces

    from wartiket.celery import app as celery_app
    from wartiket.wsgi import application  # the preload: every worker forks with it imported

    # A worker's first ticket event would import kombu's Redis transport while publishing: about a tenth of
    # a second holding the GIL, in the middle of a war's opening (seen in a profile of the storm). Making a
    # broker connection object imports it; the object opens nothing and is dropped before the fork.
    celery_app.connection_for_write().release()

    server = Granian(
        TARGET,
        address=args.host,
        port=args.port,
        interface=Interfaces.WSGI,
        workers=args.workers,
        blocking_threads=args.threads,
        backlog=args.backlog,
        # A worker that dies (OOM killer, a crash) is replaced at once, from the preloaded parent.
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT,
        log_access=False,
    )
    server.respawned_wrks = _NoCrashLoopGuard()
    server.serve(target_loader=lambda _target: application, wrap_loader=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
