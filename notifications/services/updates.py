"""Each Telegram update is handled once, though Telegram may deliver it again.

Telegram re-sends a webhook update it got no 200 for (and a polling bot restarted before confirming its
offset sees updates again). The first handler to ``SET NX`` the update id wins; if handling fails it lets
go, so Telegram's retry is handled rather than dropped.
"""

from __future__ import annotations

from wartiket.redis_client import get_redis

# Telegram stops re-sending an update long before a day has passed.
REMEMBER_SECONDS = 24 * 3600


def _key(bot_id: int, update_id: int) -> str:
    return f"tg:update:{bot_id}:{update_id}"


def first_time(bot_id: int, update_id: int) -> bool:
    return bool(get_redis().set(_key(bot_id, update_id), 1, nx=True, ex=REMEMBER_SECONDS))


def forget(bot_id: int, update_id: int) -> None:
    get_redis().delete(_key(bot_id, update_id))
