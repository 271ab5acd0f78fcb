"""The war's Redis line (wartiket/redis_client.py): one connection per thread for the Lua scripts, which
survives Redis closing it while idle and reloads a script Redis forgot, running each call once."""

from __future__ import annotations

import pytest

from wartiket import redis_client
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db

PROBE = "return redis.call('INCR', KEYS[1])"
KEY = "test:line:count"


def line_id() -> int:
    """Redis' id for this thread's war connection (the one CLIENT LIST shows with our last command)."""
    return int(redis_client.command("CLIENT", "ID"))


@pytest.fixture
def probe(tmp_path):
    """A script that counts its runs, loaded the war's way, run once already (its count is 1)."""
    path = tmp_path / "probe.lua"
    path.write_text(PROBE)
    script = redis_client.lua(path)
    assert script(keys=[KEY]) == 1
    return script


def test_a_connection_redis_closed_while_idle_is_replaced_before_the_next_call(probe):
    killed = line_id()
    get_redis().execute_command("CLIENT", "KILL", "ID", killed)  # as a Redis restart or timeout would
    assert probe(keys=[KEY]) == 2  # no ConnectionError reached the caller, and the script ran once
    assert line_id() != killed


def test_a_script_redis_forgot_is_loaded_again_and_runs_once(probe):
    get_redis().script_flush()  # what a restarted Redis has forgotten
    assert probe(keys=[KEY]) == 2
    assert int(get_redis().get(KEY)) == 2
