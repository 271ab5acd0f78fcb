"""The dev runner (`make run`) with real processes: it serves, and it leaves nothing behind when stopped.

Also: .env.example keeps up with the variables settings.py reads.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from wartiket import devrun, instance
from wartiket.env import database_from_url

REPO = Path(__file__).resolve().parent.parent
STARTUP_DEADLINE = 120
# Variables the runner must not inherit from the test process: they would point it at our servers.
SCRUBBED = (
    "DATABASE_URL",
    "REDIS_URL",
    "TEST_REDIS_URL",
    "CELERY_BROKER_URL",
    "WAR_TESTING",
    "WAR_DATA_DIR",
    "WAR_REDIS_PORT",
    "WAR_SKIP_SEED",
    "HOST",
    "PORT",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def runner_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED}
    env.update(overrides)
    return env


def http_status(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/time", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def is_alive(process: psutil.Process) -> bool:
    """Running, as opposed to gone or a zombie (exited, waiting for init to reap it).

    psutil.Process remembers the start time, so a reused pid does not count as alive.
    """
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def all_gone(processes: list[psutil.Process]) -> bool:
    return not any(is_alive(process) for process in processes)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def port_is_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Runner:
    """`python -m wartiket.devrun run` in its own session, output to a file (read on failure)."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.log = tmp_path / "devrun.log"
        self.port = int(env["PORT"])
        self.data_dir = Path(env["WAR_DATA_DIR"])
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wartiket.devrun", "run"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_until_serving(self) -> None:
        served = wait_for(lambda: self.proc.poll() is not None or http_status(self.port) == 200, STARTUP_DEADLINE)
        assert served and self.proc.poll() is None, f"devrun did not serve /api/time:\n{self.output()}"

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def stop(self, signum: int) -> int:
        self.proc.send_signal(signum)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"devrun did not exit within 90 s of {signal.Signals(signum).name}:\n{self.output()}")

    def servers(self) -> dict[str, psutil.Process]:
        """The embedded servers, from their pid files (PostgreSQL is not the runner's descendant)."""
        found = {}
        for name, pid_file in (
            ("postgres", self.data_dir / "postgres" / "postmaster.pid"),
            ("redis-server", self.data_dir / "redis" / "redis.pid"),
        ):
            with contextlib.suppress(FileNotFoundError, ValueError, IndexError, psutil.NoSuchProcess):
                process = psutil.Process(int(pid_file.read_text().split()[0]))
                # A stale pid file can name an unrelated process by now.
                if process.name() == name:
                    found[name] = process
        return found

    def kill_leftovers(self, processes: list[psutil.Process]) -> None:
        """Only after a failed or interrupted test: never leave processes behind for the next run."""
        if self.proc.poll() is None:
            # Let the runner clean up after itself first; kill only what it could not stop.
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        processes = processes + list(self.servers().values())
        for process in processes:
            if is_alive(process):
                # SIGQUIT is PostgreSQL's immediate shutdown; anything else dies on it too.
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGQUIT)
        if not wait_for(lambda: all_gone(processes), 10):
            for process in processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()


def test_ctrl_c_stops_the_app_and_the_embedded_servers_it_started(tmp_path):
    data_dir = tmp_path / "data"
    redis_port = free_port()
    env = runner_env(
        HOST="127.0.0.1", PORT=str(free_port()), WAR_DATA_DIR=str(data_dir), WAR_REDIS_PORT=str(redis_port)
    )
    runner = Runner(tmp_path, env)
    processes: list[psutil.Process] = []
    try:
        runner.wait_until_serving()

        servers = runner.servers()
        assert set(servers) == {"postgres", "redis-server"}, runner.output()
        postmaster = servers["postgres"]
        started = runner.descendants()
        processes = [*started, postmaster, *postmaster.children(recursive=True)]
        commands = [" ".join(p.cmdline()) for p in started]
        assert servers["redis-server"] in started, "the embedded Redis must be the runner's own child"
        for expected in ("daphne", "celery -A wartiket worker", "celery -A wartiket beat"):
            assert any(expected in command for command in commands), f"no {expected!r} among {commands}"
        assert port_is_open(redis_port)

        assert runner.stop(signal.SIGINT) == 0, runner.output()

        assert wait_for(lambda: all_gone(processes), 10), (
            f"still running after Ctrl-C: {[p for p in processes if is_alive(p)]}\n{runner.output()}"
        )
        assert not port_is_open(redis_port)
        assert not port_is_open(runner.port)
        assert "database system is shut down" in (data_dir / "postgres" / "log").read_text()
    finally:
        runner.kill_leftovers(processes)


@pytest.fixture
def scratch_database_url():
    """A database of its own on the suite's PostgreSQL: the runner migrates it, and commits real rows."""
    parts = urlsplit(settings.DATABASE_URL)
    name = f"{database_from_url(settings.DATABASE_URL)['NAME']}_devrun"
    admin_url = urlunsplit(parts._replace(path="/postgres"))

    def recreate(create: bool) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if create:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    recreate(create=True)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    recreate(create=False)


def test_with_database_and_redis_urls_set_it_starts_no_embedded_server(tmp_path, scratch_database_url):
    data_dir = tmp_path / "data"
    env = runner_env(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WAR_DATA_DIR=str(data_dir),
        DATABASE_URL=scratch_database_url,
        # The suite's own Redis database: flushed before every test anyway.
        REDIS_URL=settings.REDIS_URL,
        WAR_SKIP_SEED="1",
    )
    runner = Runner(tmp_path, env)
    started: list[psutil.Process] = []
    try:
        runner.wait_until_serving()

        started = runner.descendants()
        names = {p.name() for p in started}
        assert not names & {"postgres", "pg_ctl", "redis-server"}, names
        assert not (data_dir / "postgres").exists()
        assert not (data_dir / "redis").exists()

        assert runner.stop(signal.SIGTERM) == 0, runner.output()
        assert wait_for(lambda: all_gone(started), 10), runner.output()
    finally:
        runner.kill_leftovers(started)


def test_env_example_lists_every_variable_the_settings_read():
    tree = ast.parse((REPO / "wartiket" / "settings.py").read_text())
    read = {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"env", "envbool", "envint", "envlist"}
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }
    listed = set(re.findall(r"^# ([A-Z][A-Z0-9_]*)=", (REPO / ".env.example").read_text(), flags=re.MULTILINE))
    assert read, "found no env() calls in settings.py"
    assert read <= listed, f"missing from .env.example: {sorted(read - listed)}"


def read_env_file(data_dir: Path) -> dict[str, str]:
    path = data_dir / "env"
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and line[0] != "#")


def test_make_run_ends_on_its_banner_tells_other_terminals_where_it_is_and_restarts_what_dies(
    tmp_path, scratch_database_url
):
    data_dir = tmp_path / "data"
    env = runner_env(
        HOST="127.0.0.1",
        PORT=str(free_port()),
        WAR_DATA_DIR=str(data_dir),
        DATABASE_URL=scratch_database_url,
        REDIS_URL=settings.REDIS_URL,  # the suite's own Redis database: flushed before every test anyway
    )
    runner = Runner(tmp_path, env)
    started: list[psutil.Process] = []
    try:
        runner.wait_until_serving()
        assert wait_for(lambda: "Next:" in runner.output(), 60), runner.output()
        time.sleep(2)
        output = runner.output()
        banner = output[output.rindex("War Tiket Engine is up at") :]
        # The banner is the last thing printed: the logins and the demo war's link are not scrolled away.
        assert "pembeli@example.com / antre-dulu-2026" in banner
        assert re.search(rf"http://127\.0\.0\.1:{runner.port}/war/\d+/", banner)
        assert banner.rstrip().endswith("-" * 72)
        # The other processes' start-up chatter is in their logs, not on the terminal.
        assert "updated" not in output and "celery@" not in output, output
        assert "celery@" in (data_dir / "logs" / "worker.log").read_text()
        assert "updated" in (data_dir / "logs" / "quota.log").read_text()

        # A second terminal with none of the runner's variables finds its servers through $WAR_DATA_DIR/env.
        published = read_env_file(data_dir)
        assert published["DATABASE_URL"] == scratch_database_url
        assert published["PORT"] == str(runner.port)
        second = subprocess.run(
            [sys.executable, "manage.py", "war_status"],
            cwd=REPO,
            env=runner_env(WAR_DATA_DIR=str(data_dir)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 0, second.stderr
        assert "Graha Dipta" in second.stdout

        # An optional process that dies is restarted; the site keeps serving meanwhile.
        started = runner.descendants()
        [live] = [p for p in started if "live_quota" in " ".join(p.cmdline())]
        live.kill()
        assert wait_for(lambda: "live was killed by SIGKILL; restarting in 5 s" in runner.output(), 20)
        assert http_status(runner.port) == 200
        assert runner.proc.poll() is None

        def restarted() -> bool:
            return any("live_quota" in " ".join(p.cmdline()) and p.pid != live.pid for p in runner.descendants())

        assert wait_for(restarted, 20), runner.output()
        started = runner.descendants()

        assert runner.stop(signal.SIGTERM) == 0, runner.output()
        assert wait_for(lambda: all_gone(started), 10), runner.output()
        # Removed with the runner: a stale file would send the next command to a dead port.
        assert not (data_dir / "env").exists()
    finally:
        runner.kill_leftovers(started)


def test_stopping_does_not_need_a_readable_stdout(tmp_path):
    # `make run | tee log` and Ctrl-C: tee dies first and every later write fails with EPIPE. The runner
    # used to die of it mid-shutdown, leaving PostgreSQL running.
    data_dir = tmp_path / "data"
    env = runner_env(HOST="127.0.0.1", PORT=str(free_port()), WAR_DATA_DIR=str(data_dir), WAR_SKIP_SEED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "wartiket.devrun", "run"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    runner_log = data_dir / "logs" / "devrun.log"
    processes: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        for raw in proc.stdout:
            if b"War Tiket Engine is up" in raw or time.monotonic() > deadline:
                break
        assert proc.poll() is None, runner_log.read_text()
        postmaster = psutil.Process(int((data_dir / "postgres" / "postmaster.pid").read_text().split()[0]))
        processes = [*psutil.Process(proc.pid).children(recursive=True), postmaster, *postmaster.children()]

        proc.stdout.close()  # the reader is gone
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, runner_log.read_text()

        assert wait_for(lambda: all_gone(processes), 10), [p for p in processes if is_alive(p)]
        assert "everything stopped (exit code 0)" in runner_log.read_text()
    finally:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)
        for process in processes:
            if is_alive(process):
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.send_signal(signal.SIGQUIT)


def test_manage_py_says_in_one_line_which_server_it_cannot_reach(tmp_path):
    closed = free_port()
    for variable, url, server in (
        ("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{closed}/wartiket", "PostgreSQL"),
        ("REDIS_URL", f"redis://127.0.0.1:{closed}/0", "Redis"),
    ):
        env = runner_env(WAR_DATA_DIR=str(tmp_path), DATABASE_URL=settings.DATABASE_URL, REDIS_URL=settings.REDIS_URL)
        env[variable] = url
        result = subprocess.run(
            [sys.executable, "manage.py", "war_status"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"manage.py war_status: cannot reach {server} at 127.0.0.1:{closed}"), line
        assert line.endswith(f"start `make run` (in this folder), or set {variable}"), line


def test_the_instance_file_never_overrides_the_environment_and_is_ignored_once_its_runner_is_gone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    with instance.published(
        tmp_path, {"DATABASE_URL": "postgresql://postgres@/x?host=/s", "REDIS_URL": "redis://h:1/0"}
    ):
        environ = {"WAR_DATA_DIR": str(tmp_path)}
        assert instance.load(environ) == tmp_path / "env"
        assert environ["DATABASE_URL"] == "postgresql://postgres@/x?host=/s"

        mine = {"WAR_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://mine:6379/0"}
        assert instance.load(mine) is None  # any server named: the file is not mixed in
        assert "DATABASE_URL" not in mine

        text = (tmp_path / "env").read_text()
        (tmp_path / "env").write_text(re.sub(r"DEVRUN_PID=\d+", f"DEVRUN_PID={dead.stdout.strip()}", text))
        stale = {"WAR_DATA_DIR": str(tmp_path)}
        assert instance.load(stale) is None
        assert "DATABASE_URL" not in stale
    assert not (tmp_path / "env").exists()


def test_the_start_up_summary_links_the_demo_war_and_the_demo_draw_war(capsys, tmp_path):
    seed_output = [
        "Demo war: Graha Dipta 2026-12-03 10:00 (slot 2) opens at 2026-12-02 00:48:19 WIB, quota 100.",
        "Demo draw: Setiabudi One 2026-12-04 13:00 (slot 15) takes entries now, drawn at 00:49:29 WIB.",
        "  buyer  pembeli@example.com / antre-dulu-2026",
    ]
    devrun.announce("http://127.0.0.1:8000", tmp_path, None, seed_output, [])
    out = capsys.readouterr().out + capsys.readouterr().err
    assert "open it: http://127.0.0.1:8000/war/2/" in out
    assert "open it: http://127.0.0.1:8000/war/15/" in out and "http://127.0.0.1:8000/draw/15/" in out
    assert "pembeli@example.com / antre-dulu-2026" in out
