"""A change made without ``save()`` still reaches the Redis identity cache (accounts/services/identity.py).

The real web server, PostgreSQL and Redis: the change is committed by this process, the refusal comes from
another process whose cache held the old facts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from accounts.models import ApiToken, User
from accounts.services import identity
from tests.factory import make_slot, make_user
from tests.live import ROOT, poll, server_env, web_server
from wartiket.redis_client import get_redis

pytestmark = pytest.mark.django_db(transaction=True)


def attempt(base: str, token: str, slot) -> int:
    body = json.dumps({"location_id": slot.location.slug, "time_slot": slot.time_label}).encode()
    request = urllib.request.Request(  # noqa: S310 (loopback only)
        f"{base}/api/war",
        data=body,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback only)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_account_deactivated_by_queryset_update_is_refused_within_two_seconds():
    slot = make_slot(opens_in=3600)  # too_early: the attempt is decided by Redis alone
    buyer = make_user()
    raw = ApiToken.issue(buyer)
    with web_server(workers=1, threads=2) as base:
        assert attempt(base, raw, slot) == 403  # too_early, and the server's cache now holds the facts
        assert get_redis().exists(identity._token_key(identity.hash_secret(raw)))

        User.objects.filter(pk=buyer.pk).update(is_active=False)  # no signal; committed (autocommit)
        changed = time.monotonic()
        poll(lambda: attempt(base, raw, slot) == 401, timeout=2.0, interval=0.05, message="a 401")
        assert time.monotonic() - changed < 2.0


def test_a_change_made_while_no_listener_ran_is_caught_up_when_one_connects():
    buyer = make_user()
    raw = ApiToken.issue(buyer)
    identity.listener.stop()
    assert identity.principal_for_token(raw) is not None  # starts a listener and caches the facts
    identity.listener.stop()
    User.objects.filter(pk=buyer.pk).update(is_active=False)  # nobody listens: the NOTIFY is lost
    time.sleep(0.3)
    key = identity._token_key(identity.hash_secret(raw))
    assert get_redis().exists(key)  # stale, as the cache would stay for its hour without the catch-up

    identity.principal_for_token(raw)  # the next lookup starts a listener again, which catches up
    assert identity.listener.ready.wait(5)
    assert identity.principal_for_token(raw) is None


def test_a_lookup_with_the_cache_warm_makes_no_query_and_the_trigger_ignores_unrelated_changes(
    django_assert_num_queries,
):
    buyer = make_user()
    raw = ApiToken.issue(buyer)
    identity.principal_for_token(raw)
    assert identity.listener.ready.wait(5)
    with django_assert_num_queries(0):
        assert identity.principal_for_token(raw).id == buyer.pk
    User.objects.filter(pk=buyer.pk).update(full_name="Nama Baru")  # not a cached fact
    assert User.objects.get(pk=buyer.pk).identity_changed_at is None
    User.objects.filter(pk=buyer.pk).update(nik=None)
    stamped = User.objects.get(pk=buyer.pk)
    assert stamped.identity_changed_at is not None
    stamped.full_name = "Lagi"
    stamped.identity_changed_at = None
    stamped.save()  # save() sends the column too: the trigger keeps the stamp
    assert User.objects.get(pk=buyer.pk).identity_changed_at is not None


# --- The in-process copy in front of Redis (identity.local) ---------------------------------------------


def warm_local(raw: str) -> str:
    """Fill Redis and then this process's copy for ``raw``; the Redis key."""
    identity.principal_for_token(raw)  # starts the listener if needed; the entry comes from PostgreSQL
    assert identity.listener.ready.wait(5)
    assert identity.principal_for_token(raw) is not None  # from Redis, copied here
    return identity._token_key(identity.hash_secret(raw))


def test_a_warm_lookup_asks_neither_redis_nor_postgresql_while_the_listener_is_ready(django_assert_num_queries):
    raw = ApiToken.issue(make_user())
    key = warm_local(raw)
    get_redis().delete(key)  # behind its back: a Redis lookup would miss and refill it from PostgreSQL
    with django_assert_num_queries(0):
        assert identity.principal_for_token(raw) is not None
    assert not get_redis().exists(key)
    # Negative control: without a ready listener (here: a fresh one still connecting) the copy is not used.
    identity.listener.stop()
    assert identity.principal_for_token(raw) is not None
    assert get_redis().exists(key)  # read from PostgreSQL and written back


def test_an_account_deactivated_without_save_is_refused_from_the_copy_within_a_second():
    buyer = make_user()
    raw = ApiToken.issue(buyer)
    warm_local(raw)
    User.objects.filter(pk=buyer.pk).update(is_active=False)  # no signal; the trigger NOTIFYs at commit
    poll(lambda: identity.principal_for_token(raw) is None, timeout=1.0, interval=0.02, message="refusal")


def test_a_token_deleted_by_another_process_is_dropped_from_this_ones_copy_within_a_second():
    raw = ApiToken.issue(make_user())
    key_hash = identity.hash_secret(raw)
    warm_local(raw)
    # Another process deletes it through the ORM (its signal drops Redis and NOTIFYs at commit).
    code = f"from accounts.models import ApiToken; ApiToken.objects.filter(key_hash='{key_hash}').delete()"
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=server_env(), check=True)
    poll(lambda: identity.principal_for_token(raw) is None, timeout=1.0, interval=0.02, message="the drop")
