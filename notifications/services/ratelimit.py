"""Telegram's send limits, shared by every worker through Redis (``lua/send_slot.lua``).

~30 messages/s per bot and ~1/s per chat; a 429's ``retry_after`` blocks that chat for as long as
Telegram asked. One atomic script decides both limits, so concurrent workers can never both take the
last slot of a second. Keys share the hash tag ``{tg}`` so the script also runs on Redis Cluster.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from queueing.services import clock
from wartiket.redis_client import get_redis, lua

GLOBAL_KEY = "{tg}:rl:global"
LUA = Path(__file__).resolve().parent.parent / "lua" / "send_slot.lua"


def chat_key(chat_id: int) -> str:
    return f"{{tg}}:rl:chat:{chat_id}"


def acquire(chat_id: int, *, now_ms: int | None = None) -> int:
    """Take one send slot for ``chat_id``: 0 if the message may go now, else milliseconds to wait."""
    rate = max(1, settings.TELEGRAM_RATE_PER_SECOND)
    interval = 1000 / rate
    wait = lua(LUA)(
        keys=[GLOBAL_KEY, chat_key(chat_id)],
        args=[interval, interval * (rate - 1), settings.TELEGRAM_CHAT_INTERVAL_MS, "" if now_ms is None else now_ms],
    )
    return int(wait)


def block_chat(chat_id: int, seconds: float) -> None:
    """Telegram said 429 for this chat: nobody sends to it before ``retry_after`` has passed."""
    ms = max(1, int(seconds * 1000))
    get_redis().set(chat_key(chat_id), clock.redis_now_ms() + ms, px=ms + 1000)
