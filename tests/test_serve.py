"""`python -m wartiket.serve` (make prod): the one production recipe, and docker-compose.yml runs it too.

The recipe's command lines appearing in docs/deploy.md is checked in tests/test_bench_smoke.py (the benchmark
runs the same recipe).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.request

import psutil
import pytest
import yaml
from django.conf import settings

from tests.live import ROOT, free_port, poll, server_env
from wartiket import serve

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_each_role_of_the_recipe_in_its_own_container():
    services = COMPOSE["services"]
    for role in serve.ROLES:
        assert services[role]["command"] == ["python", "-m", "wartiket.serve", role], role
    # nginx talks to the ports the recipe listens on by default, and the image listens on every interface.
    nginx = (ROOT / "deploy" / "nginx.compose.conf").read_text()
    config = serve.Config()
    assert f"server web:{config.port};" in nginx and f"server ws:{config.ws_port};" in nginx
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HOST=0.0.0.0" in dockerfile
    assert 'CMD ["python", "-m", "wartiket.serve", "all"]' in dockerfile
    # No container runs a server command of its own next to the recipe (the drift this replaced).
    commands = [" ".join(s.get("command", [])) for name, s in services.items() if name in serve.ROLES]
    assert not any(word in c for c in commands for word in ("gunicorn", "daphne", "celery", "live_quota"))


def test_the_recipe_reads_the_environment():
    config = serve.Config.from_env({"HOST": "10.0.0.5", "PORT": "9001", "WS_PORT": "9002", "WEB_WORKERS": "2"})
    assert serve.command("web", config)[3:7] == ["--host", "10.0.0.5", "--port", "9001"]
    assert "--workers 2 " in " ".join(serve.command("web", config))
    assert serve.command("ws", config)[1:5] == ["-b", "10.0.0.5", "-p", "9002"]
    assert serve.command("worker", config)[3:6] == ["worker", "--concurrency", "2"]
    assert serve.Config.from_env({}) == serve.Config()


def serve_env(tmp_path, http: int, ws: int, **overrides: str) -> dict:
    return server_env(
        HOST="127.0.0.1",
        PORT=str(http),
        WS_PORT=str(ws),
        WEB_WORKERS="2",
        WEB_THREADS="2",
        CELERY_BEAT_SCHEDULE=str(tmp_path / "beat"),
        CELERY_BROKER_URL=settings.REDIS_URL,
        PYTHONUNBUFFERED="1",
        **overrides,
    )


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback only)
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def serving(tmp_path, *args: str, **env: str):
    http, ws = free_port(), free_port()
    log = open(tmp_path / "serve.log", "wb")
    environment = serve_env(tmp_path, http, ws, **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wartiket.serve", *args],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.http, proc.ws = f"http://127.0.0.1:{http}", f"http://127.0.0.1:{ws}"
    proc.recipe = serve.recipe(serve.Config.from_env(environment))
    try:
        yield proc
    except BaseException:
        sys.stderr.write((tmp_path / "serve.log").read_text(errors="replace")[-6000:])
        raise
    finally:
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                child.kill()
            proc.kill()
        proc.wait()
        log.close()


def roles_running(proc) -> dict[str, psutil.Process]:
    """The recipe's processes under ``serve all``, by role (the direct children)."""
    found = {}
    for child in psutil.Process(proc.pid).children():
        cmdline = " ".join(child.cmdline())
        for role, argv in proc.recipe:
            if cmdline.endswith(" ".join(argv[1:])):
                found[role] = child
    return found


@pytest.mark.django_db(transaction=True)
def test_serve_all_starts_every_process_and_sigterm_stops_them_all(tmp_path):
    with serving(tmp_path, "all", "--no-prepare") as proc:
        poll(lambda: answers(proc.http + "/api/time"), timeout=90, message="the web server")
        poll(lambda: answers(proc.ws + "/api/time"), timeout=90, message="daphne")
        poll(lambda: set(roles_running(proc)) == set(serve.ROLES), timeout=30, message="every role")
        # Telegram's worker and beat yield the CPU to the war's processes.
        niceness = {role: process.nice() for role, process in roles_running(proc).items()}
        assert niceness == {"web": 0, "ws": 0, "worker": 10, "beat": 10, "live": 0}
        everything = psutil.Process(proc.pid).children(recursive=True)
        assert len(everything) > len(serve.ROLES)  # the web server's workers and Celery's pool too

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        _gone, alive = psutil.wait_procs(everything, timeout=10)
        assert alive == [], [p.pid for p in alive]


@pytest.mark.django_db(transaction=True)
def test_serve_all_exits_nonzero_and_stops_the_rest_when_one_process_dies(tmp_path):
    with serving(tmp_path, "all", "--no-prepare") as proc:
        running = poll(lambda: (r := roles_running(proc)) and set(r) == set(serve.ROLES) and r, timeout=90)
        poll(lambda: answers(proc.http + "/api/time"), timeout=90, message="the web server")
        everything = psutil.Process(proc.pid).children(recursive=True)
        running["live"].kill()
        assert proc.wait(60) == 1
        _gone, alive = psutil.wait_procs(everything, timeout=10)
        assert alive == [], [p.pid for p in alive]
        assert b"live exited" in (tmp_path / "serve.log").read_bytes()


@pytest.mark.django_db(transaction=True)
def test_one_role_becomes_its_server(tmp_path):
    with serving(tmp_path, "web", "--no-prepare") as proc:
        poll(lambda: answers(proc.http + "/api/time"), timeout=90, message="the web server")
        # exec: the pid the supervisor started is the web server's main process, with its workers as children.
        assert "wartiket.webserver" in " ".join(psutil.Process(proc.pid).cmdline())
        # The first worker may answer while the second is still booting on a busy machine.
        poll(lambda: len(psutil.Process(proc.pid).children()) == 2, timeout=30, message="two web workers")
        # A killed worker is replaced from the preloaded parent, every time: three kills in a row of the same
        # worker slot, faster than granian's own crash-loop guard (5.5 s) would allow, and the server stays.
        for _ in range(3):
            victim = max(psutil.Process(proc.pid).children(), key=lambda c: c.create_time())  # the replacement
            victim.kill()
            poll(
                lambda v=victim: len([c for c in psutil.Process(proc.pid).children() if c.pid != v.pid]) == 2,
                timeout=10,
                message="a replacement worker",
            )
            assert answers(proc.http + "/api/time") and proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_web_does_not_serve_when_a_preparation_step_fails(tmp_path):
    # No database to migrate: migrate fails, and nothing listens afterwards.
    with serving(tmp_path, "web", DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere") as proc:
        assert proc.wait(120) == 1
        assert not answers(proc.http + "/api/time")
    assert b"migrate --noinput failed" in (tmp_path / "serve.log").read_bytes()
    assert b"granian" not in (tmp_path / "serve.log").read_bytes().split(b"failed")[-1]


def test_print_shows_the_documented_lines():
    env = {k: v for k, v in os.environ.items() if k not in {"HOST", "PORT", "WS_PORT", "WEB_WORKERS", "WEB_THREADS"}}
    env.pop("CELERY_BEAT_SCHEDULE", None)
    argv = [sys.executable, "-m", "wartiket.serve", "--print"]
    out = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [" ".join(argv) for _role, argv in serve.recipe()]
