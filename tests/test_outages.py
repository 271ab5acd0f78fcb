"""Long-running processes outlive Redis outages: they keep running, say so once, and work again after.

Each test runs the real process against a redis-server of its own (tests/private_redis.py) and breaks
that one: stopped and restarted, or turned read-only the way a failover or a full disk does.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from queueing.services.live import LIVE_GROUP
from queueing.services.store import slot_keys
from tests.factory import make_slot
from tests.live import ROOT, logged_process, poll, server_env
from tests.private_redis import PrivateRedis, free_port

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    """A member of the live-quota group, as a daphne process's fan-out hub is, on the private Redis."""

    def __init__(self, url: str) -> None:
        self.layer = RedisChannelLayer(hosts=[{"address": url}], prefix="wt-channels", group_expiry=30)
        self.loop = asyncio.new_event_loop()

    def next_state(self, slot_id: int, *, newer_than: int = -1, timeout: float = 30) -> dict:
        """The first pushed state of ``slot_id`` with a version above ``newer_than``."""

        async def wait() -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    # Joined again each time: membership expires, and a restarted Redis may have lost it.
                    await self.layer.group_add(LIVE_GROUP, "outage-listener")
                    message = await asyncio.wait_for(self.layer.receive("outage-listener"), timeout=10)
                except (TimeoutError, redis.RedisError, OSError):
                    await asyncio.sleep(0.2)
                    continue
                for state in message["states"]:
                    if state["slot"] == slot_id and state["version"] > newer_than:
                        return state
            raise AssertionError(f"no state of slot {slot_id} newer than version {newer_than} within {timeout}s")

        return self.loop.run_until_complete(wait())

    def close(self) -> None:
        self.loop.run_until_complete(self.layer.flush())
        self.loop.close()


def log_count(proc, text: str) -> int:
    return proc.log_path.read_text(errors="replace").count(text)


def test_live_quota_outlives_a_read_only_and_a_restarted_redis_and_then_pushes_what_changed(tmp_path):
    slot = make_slot(quota_size=5)  # in PostgreSQL (committed) and in the suite's Redis
    with PrivateRedis(tmp_path / "redis") as private:
        env = {"TEST_REDIS_URL": private.url(), "REDIS_URL": private.url(), "CELERY_BROKER_URL": private.url()}
        subprocess.run(
            [sys.executable, "manage.py", "sync_quota"], cwd=ROOT, env=server_env(**env), check=True, timeout=60
        )
        key = slot_keys(slot.pk, slot.war_day).slot
        listener = Listener(private.url())
        argv = [sys.executable, "manage.py", "live_quota", "--interval-ms", "100"]
        try:
            with logged_process(argv, tmp_path / "live_quota.log", **env) as proc:
                first = listener.next_state(slot.pk)
                assert first["remaining"] == 5

                # A change and the switch to read-only in one transaction: the broadcaster reads the change
                # (a replica still answers reads) and can't send it (the channel layer writes).
                with private.client().pipeline(transaction=True) as pipe:
                    pipe.hincrby(key, "sold", 1).hincrby(key, "ver", 1)
                    pipe.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))
                    pipe.execute()
                poll(lambda: log_count(proc, "cannot push live quota"), message="the outage's log line")
                time.sleep(3)  # several retries: still one line, still running
                assert proc.poll() is None
                assert log_count(proc, "cannot push live quota") == 1
                assert "ReadOnlyError" in proc.log_path.read_text()

                private.writable()
                after_read_only = listener.next_state(slot.pk, newer_than=first["version"], timeout=15)
                assert after_read_only["remaining"] == 4  # the change made while it could not push
                poll(lambda: log_count(proc, "can push live quota again"), message="the recovery line")

                private.stop()
                poll(lambda: log_count(proc, "cannot push live quota") == 2, message="the second outage's line")
                time.sleep(3)
                assert proc.poll() is None
                private.start()  # same port, same data (append-only file), but a new server
                # live_quota's self-heal sees a Redis it did not build on and rebuilds it from PostgreSQL
                # (no tickets there: the test's direct changes are gone), then pushes again.
                run_id = private.client().info("server")["run_id"]
                poll(lambda: private.client().hget("war:gen", "run_id") == run_id, timeout=15, message="self-heal")
                with private.client().pipeline(transaction=True) as pipe:
                    pipe.hincrby(key, "sold", 1).hincrby(key, "ver", 1).execute()
                # Backoff is capped at 5 s: back well within 15 s of Redis.
                after_restart = listener.next_state(slot.pk, newer_than=after_read_only["version"], timeout=15)
                assert after_restart["remaining"] == 4

                assert proc.poll() is None
                assert log_count(proc, "cannot push live quota") == 2
                assert log_count(proc, "can push live quota again") == 2
        finally:
            listener.close()


def test_the_celery_worker_outlives_a_redis_restart_and_runs_tasks_sent_after_it(tmp_path):
    # Red team: "Unrecoverable error: AttributeError 'NoneType' object has no attribute 'hostname'" after
    # a Redis restart (the Gossip step closing a channel on the lost connection, celery/kombu#582). The
    # worker runs as `make run` and docs/deploy.md start it: no --without-* flags on the command line.
    from kombu import Connection

    from wartiket.celery import app

    with PrivateRedis(tmp_path / "redis") as private:
        env = {"TEST_REDIS_URL": private.url(), "REDIS_URL": private.url(), "CELERY_BROKER_URL": private.url()}
        argv = [sys.executable, "-m", "celery", "-A", "wartiket", "worker", "-l", "info", "--concurrency", "1"]
        with logged_process(argv, tmp_path / "worker.log", **env) as worker:
            poll(lambda: " ready." in worker.log_path.read_text(), timeout=60, message="the worker's ready line")

            private.stop()
            poll(lambda: "Connection to broker lost" in worker.log_path.read_text(), message="the lost connection")
            time.sleep(3)  # it retries meanwhile
            assert worker.poll() is None
            private.start()
            poll(lambda: worker.log_path.read_text().count("Connected to redis") >= 2, timeout=30, message="reconnect")

            with Connection(private.url()) as connection:
                sent = app.send_task("notifications.sweep", connection=connection)
            poll(lambda: f"{sent.id}] succeeded" in worker.log_path.read_text(), timeout=30, message="the task ran")
            assert worker.poll() is None
            log = worker.log_path.read_text()
            assert "Unrecoverable error" not in log
            assert "Error on restarting" not in log, log  # a step that broke on the way (Gossip did)
            assert "CPendingDeprecationWarning" not in log  # decided in wartiket/celery.py, not nagged about
