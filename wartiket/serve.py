"""The production recipe: ``python -m wartiket.serve [ROLE]`` (``make prod``), the one place its command lines live.

docs/deploy.md shows these command lines, docker-compose.yml runs one role per container with this module,
and ``make bench`` measures exactly them (tests/test_serve.py and tests/test_bench_smoke.py check that all
three agree). Everything comes from the environment (DATABASE_URL, REDIS_URL, DJANGO_*, and the variables
in ``Config.from_env``), nothing from a file of its own.

Roles: ``web`` (granian, every HTTP request), ``ws`` (daphne, WebSockets only), ``worker`` and ``beat``
(Celery), ``live`` (``live_quota``, exactly one per deployment), ``all`` (every one of them, supervised
here), ``prepare`` (only the one-shot steps). ``web`` and ``all`` first run the steps docs/deploy.md asks
for before serving: migrate, collectstatic, sync_quota (``--no-prepare`` skips them).

One role: after the steps the process *becomes* the server (exec), so the container runtime or systemd
signals and supervises it directly. ``all``: each process runs in its own process group; SIGTERM/SIGINT
stops them all (SIGTERM, then SIGKILL after ``STOP_TIMEOUT``) and exits 0. If any process exits on its
own, the rest are stopped and ``serve`` exits 1: restarting is the outer supervisor's job (systemd
``Restart=always``, compose ``restart: unless-stopped``), which then starts one consistent set again. A
web *worker* that dies is not such an exit: the web server forks its replacement at once, ready to answer.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROLES = ("web", "ws", "worker", "beat", "live")
# Why these sizes on 2 cores: docs/benchmarks.md, "Sizing the web server". On a bigger machine, one worker per core.
WEB_WORKERS = 2
WEB_THREADS = 4
CELERY_CONCURRENCY = 2
LIVE_INTERVAL_MS = 250
# Background roles yield the CPU to the war: during an opening storm on a small machine, the Celery worker
# recording a thousand ticket events competed with the reservations themselves (docs/benchmarks.md). A
# Telegram message may wait a moment; a buyer's answer may not. Niceness only matters when CPU is short.
NICE = {"worker": 10, "beat": 10}
# Longer than the web server's graceful timeout, so in-flight reservations finish before anything is killed.
STOP_TIMEOUT = 25.0


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8001  # HTTP (granian)
    ws_port: int = 8002  # WebSockets (daphne)
    workers: int = WEB_WORKERS
    threads: int = WEB_THREADS
    schedule: str = "/var/lib/wartiket/celerybeat-schedule"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            host=env.get("HOST") or default.host,
            port=int(env.get("PORT") or default.port),
            ws_port=int(env.get("WS_PORT") or default.ws_port),
            workers=int(env.get("WEB_WORKERS") or default.workers),
            threads=int(env.get("WEB_THREADS") or default.threads),
            schedule=env.get("CELERY_BEAT_SCHEDULE") or default.schedule,
        )


def command(role: str, config: Config) -> list[str]:
    """One role's command line as docs/deploy.md shows it (``runnable`` turns it into what is executed)."""
    if role == "web":
        # granian with the application imported before its workers fork (wartiket/webserver.py says why).
        return [
            "python",
            "-m",
            "wartiket.webserver",
            "--host",
            config.host,
            "--port",
            str(config.port),
            "--workers",
            str(config.workers),
            "--threads",
            str(config.threads),
            "--backlog",
            "2048",
        ]
    if role == "ws":
        return ["daphne", "-b", config.host, "-p", str(config.ws_port), "--proxy-headers", "wartiket.asgi:application"]
    if role == "worker":
        return ["celery", "-A", "wartiket", "worker", "--concurrency", str(CELERY_CONCURRENCY), "-l", "info"]
    if role == "beat":
        return ["celery", "-A", "wartiket", "beat", "-l", "info", "--schedule", config.schedule]
    if role == "live":
        return ["python", "manage.py", "live_quota", "--interval-ms", str(LIVE_INTERVAL_MS)]
    raise ValueError(f"unknown role {role!r}")


def recipe(config: Config | None = None) -> list[tuple[str, list[str]]]:
    """Every long-running process of one production host, as (role, argv)."""
    config = config or Config()
    return [(role, command(role, config)) for role in ROLES]


def prepare_steps() -> list[list[str]]:
    """What docs/deploy.md runs before serving; each is safe to repeat on every deploy."""
    return [
        ["python", "manage.py", "migrate", "--noinput"],
        ["python", "manage.py", "collectstatic", "--noinput"],
        # Redis state from PostgreSQL: a Redis that restarted empty is rebuilt before the war trusts it.
        ["python", "manage.py", "sync_quota"],
    ]


def runnable(argv: list[str]) -> list[str]:
    """The same command run with this interpreter (``python -m celery`` for ``celery``)."""
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return [sys.executable, "-m", argv[0], *argv[1:]]


def yield_cpu(role: str) -> None:
    """Lower this process' priority if ``role`` is a background one (``NICE``)."""
    if NICE.get(role):
        os.nice(NICE[role])


def say(message: str) -> None:
    print(f"serve | {message}", file=sys.stderr, flush=True)


def prepare() -> None:
    for argv in prepare_steps():
        say(" ".join(argv))
        subprocess.run(runnable(argv), cwd=REPO, check=True)


class Group:
    """The processes of ``all``: started together, stopped together, and one exiting ends the group."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.stop_signal: int | None = None

    def start(self, config: Config) -> None:
        for role, argv in recipe(config):
            # Own process group: a terminal's Ctrl-C reaches only us, and we stop the children in order.
            self.procs[role] = subprocess.Popen(
                runnable(argv), cwd=REPO, start_new_session=True, preexec_fn=lambda role=role: yield_cpu(role)
            )
            say(f"{role} started (pid {self.procs[role].pid}): {' '.join(argv)}")

    def wait(self) -> int:
        """Until a signal (0) or a process exiting on its own (1)."""
        while self.stop_signal is None:
            for role, proc in self.procs.items():
                if proc.poll() is not None:
                    say(f"{role} exited with {proc.returncode}: stopping the others")
                    return 1
            time.sleep(0.2)
        say(f"{signal.Signals(self.stop_signal).name}: stopping")
        return 0

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for role, proc in self.procs.items():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say(f"{role} did not stop within {STOP_TIMEOUT:.0f}s: killed")
            # The whole group: the web server's workers, Celery's pool.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()


def serve_all(config: Config) -> int:
    group = Group()

    def note(signum: int, _frame: object) -> None:
        if group.stop_signal is None:
            group.stop_signal = signum

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, note)
    try:
        group.start(config)
        return group.wait()
    finally:
        group.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wartiket.serve",
        description="Run the production processes of docs/deploy.md from the environment.",
    )
    parser.add_argument("role", nargs="?", default="all", choices=[*ROLES, "all", "prepare"])
    parser.add_argument(
        "--no-prepare", action="store_true", help="web and all: skip migrate, collectstatic and sync_quota"
    )
    parser.add_argument("--print", action="store_true", help="print the command line(s) and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = Config.from_env()
    roles = ROLES if args.role == "all" else (() if args.role == "prepare" else (args.role,))
    if args.print:
        for role in roles:
            print(" ".join(command(role, config)))
        return 0
    os.chdir(REPO)
    if args.role in ("web", "all", "prepare") and not args.no_prepare:
        try:
            prepare()
        except subprocess.CalledProcessError as exc:
            say(f"{' '.join(exc.cmd[1:])} failed with {exc.returncode}: not serving")
            return 1
    if args.role == "prepare":
        return 0
    if args.role == "all":
        return serve_all(config)
    # One role: become it, so signals and exit status are the server's own.
    argv = runnable(command(args.role, config))
    yield_cpu(args.role)
    os.execv(argv[0], argv)  # noqa: S606 (our own argv, no shell)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
