"""A real server process for tests: the production HTTP server (granian, ``wartiket.webserver``) on the test database.

Runs as separate OS processes, so a test can storm it from other processes or kill it mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.conf import settings
from django.db import connection, connections

from queueing.services import fanout

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """The URL of the database this test session uses (pytest-django's test_<name>)."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "") + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
    host = db["HOST"] or ""
    if host.startswith("/"):
        return f"postgresql://{auth}@/{db['NAME']}?host={quote(host)}"
    return f"postgresql://{auth}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def server_env(**overrides: str) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="wartiket.settings",
        DATABASE_URL=database_url(),
        TEST_REDIS_URL=settings.REDIS_URL,
        WAR_TESTING="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return env


def wait_for(url: str, *, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def poll(predicate, *, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    """Wait for ``predicate()`` to be truthy and return it; fail after ``timeout`` seconds (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM the process group (started with start_new_session), SIGKILL it if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def logged_process(argv: list[str], log_path: Path, **env: str):
    """A background process against the test database and Redis, output to ``log_path``.

    If the test fails while it runs, the log's tail is printed: that is where the reason usually is.
    """
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=server_env(PYTHONUNBUFFERED="1", **env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    proc.log_path = log_path
    try:
        yield proc
    except BaseException:
        sys.stderr.write(f"--- {log_path} ---\n{log_path.read_text(errors='replace')[-6000:]}\n")
        raise
    finally:
        stop_process(proc)


@contextmanager
def served(argv: list[str], port: int, *, quiet: bool = False, **env: str):
    """Run a server command against the test database and Redis until its /api/time answers; yield the URL."""
    output = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(argv, cwd=ROOT, env=server_env(**env), stdout=output, stderr=output, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/time", proc=proc)
        yield base
    finally:
        stop_process(proc)


@contextmanager
def web_server(*, workers: int = 2, threads: int = 8, **env: str):
    """The production HTTP server (``python -m wartiket.webserver``, granian) on a free port."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "wartiket.webserver",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    with served(argv, port, **env) as base:
        yield base


def run_async(scenario):
    """asyncio.run a consumer scenario, then close the database connections its worker threads opened."""

    async def wrapped():
        try:
            return await scenario()
        finally:
            await fanout.close_hub()
            # Thread-sensitive sync_to_async calls (the consumer's included) share one thread.
            await sync_to_async(connections.close_all)()

    try:
        return asyncio.run(wrapped())
    finally:
        # The process-wide channel layer keeps asyncio locks; one contended in this loop is bound to it,
        # and the next test's loop then fails on it ("bound to a different event loop": seen on a loaded
        # CI host). Production runs one loop per process; each test gets a fresh layer instead.
        channel_layers.backends.clear()
