"""The production process recipe: what docs/deploy.md tells operators to run, and what ``make bench`` runs.

One source for both, so the benchmark measures the deployed configuration and nothing else; a test
(tests/test_bench_smoke.py) checks that every command line printed by ``recipe()`` appears verbatim in
docs/deploy.md.

- HTTP: gunicorn, WSGI, ``GUNICORN_WORKERS`` processes x ``GUNICORN_THREADS`` threads (gthread). Django
  under ASGI measured about 3x slower per request than under WSGI here (docs/deploy.md), so HTTP stays
  on WSGI; the counts are the best measured on 2 cores (docs/benchmarks.md, "Sizing gunicorn").
- WebSockets (``/ws/``): daphne, one process per ``DAPHNE_PROCESSES``.
- Celery worker and beat; ``manage.py live_quota`` (exactly one).
- In production a reverse proxy (nginx, docs/deploy.md) puts them behind one origin and terminates TLS;
  the benchmark talks to gunicorn and daphne directly and sends ``X-Forwarded-Proto: https`` as the
  proxy would.
"""

from __future__ import annotations

import sys

GUNICORN_WORKERS = 4
GUNICORN_THREADS = 4
DAPHNE_PROCESSES = 1
CELERY_CONCURRENCY = 2
LIVE_INTERVAL_MS = 250


def gunicorn(bind: str, *, workers: int = GUNICORN_WORKERS, threads: int = GUNICORN_THREADS) -> list[str]:
    return [
        "gunicorn",
        "wartiket.wsgi:application",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--backlog",
        "2048",
        "--keep-alive",
        "5",
        "--graceful-timeout",
        "20",
        # Import the app (settings, URLconf: ~1 s) once in the master, not in every worker and every
        # replacement worker. Safe: the boot opens no database connection, and Redis clients are per pid.
        "--preload",
    ]


def daphne(host: str, port: int) -> list[str]:
    return ["daphne", "-b", host, "-p", str(port), "--proxy-headers", "wartiket.asgi:application"]


def celery_worker() -> list[str]:
    return ["celery", "-A", "wartiket", "worker", "--concurrency", str(CELERY_CONCURRENCY), "-l", "info"]


def celery_beat(schedule: str) -> list[str]:
    return ["celery", "-A", "wartiket", "beat", "-l", "info", "--schedule", schedule]


def live_quota() -> list[str]:
    return ["python", "manage.py", "live_quota", "--interval-ms", str(LIVE_INTERVAL_MS)]


def recipe(
    *,
    http_bind: str = "127.0.0.1:8001",
    ws_host: str = "127.0.0.1",
    ws_port: int = 8002,
    schedule: str = "/var/lib/wartiket/celerybeat-schedule",
    workers: int = GUNICORN_WORKERS,
    threads: int = GUNICORN_THREADS,
) -> list[tuple[str, list[str]]]:
    """Every long-running process of one production host, as (name, argv)."""
    return [
        ("web", gunicorn(http_bind, workers=workers, threads=threads)),
        *(
            (f"ws{i + 1}" if DAPHNE_PROCESSES > 1 else "ws", daphne(ws_host, ws_port + i))
            for i in range(DAPHNE_PROCESSES)
        ),
        ("worker", celery_worker()),
        ("beat", celery_beat(schedule)),
        ("live", live_quota()),
    ]


def runnable(argv: list[str]) -> list[str]:
    """The same command run with this interpreter (``python -m gunicorn`` for ``gunicorn``)."""
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [sys.executable, "-m", argv[0], *argv[1:]]
