"""Redis key names and the Lua scripts, in one place.

Every key of one war day carries the hash tag ``{w:YYYY-MM-DD}``: the reservation script touches a
slot's keys and the day's one-ticket-per-person keys together, so on Redis Cluster they must share a
slot. Keys outside the scripts (the catalog, identity cache) need no tag.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from wartiket.redis_client import lua

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
SCRIPT_NAMES = ("reserve", "release", "confirm", "set_quota", "build_day", "merge", "enter", "draw_apply", "promote")


@dataclass(frozen=True)
class SlotKeys:
    slot: str
    free: str
    holders: str
    day: str
    journal: str
    stats: str
    waitlist: str  # draw slots: person -> waiting-list position, once drawn
    entrants: str  # draw slots: persons who entered (war-room count; PostgreSQL holds the entries)

    @property
    def state(self) -> list[str]:
        """The keys release.lua takes, in its order."""
        return [self.slot, self.free, self.holders, self.day, self.journal]

    @property
    def merge(self) -> list[str]:
        """The keys merge.lua takes, in its order."""
        return [self.slot, self.free, self.holders, self.day]


def day_tag(day: str) -> str:
    return "{w:" + day + "}"


def slot_keys(slot_id: int, day: str) -> SlotKeys:
    tag = day_tag(day)
    base = f"{tag}:slot:{slot_id}"
    return SlotKeys(
        slot=base,
        free=f"{base}:free",
        holders=f"{base}:holders",
        day=f"{tag}:holders",
        journal=f"{tag}:journal",
        stats=f"{base}:stats",
        waitlist=f"{base}:waitlist",
        entrants=f"{base}:entrants",
    )


def day_keys(day: str) -> tuple[str, str]:
    """The war day's person hash and journal (shared by all its slots)."""
    tag = day_tag(day)
    return f"{tag}:holders", f"{tag}:journal"


def rate_keys(day: str, user_id: int, client_ip: str) -> list[str]:
    tag = day_tag(day)
    return [f"{tag}:rl:u:{user_id}", f"{tag}:rl:ip:{client_ip}"]


def pow_key(day: str, signature: str) -> str:
    """A war attempt's proof of work, once accepted (reserve.lua ``SET NX``): in the war day's hash tag."""
    return f"{day_tag(day)}:pow:{signature}"


def rate_limit_args() -> list[int]:
    """The per-account and per-address attempt limits and their window, as reserve.lua and enter.lua take them."""
    return [settings.WAR_RATE_LIMIT_USER, settings.WAR_RATE_LIMIT_IP, settings.WAR_RATE_LIMIT_WINDOW_MS]


def reserve_keys(slot_id: int, day: str, user_id: int, client_ip: str, proof_key: str | None = None) -> list[str]:
    """KEYS of reserve.lua, in its order: everything one attempt may read or write.

    ``proof_key`` is ``pow_key`` of the attempt's proof of work; without one the script is told no proof is
    needed (ARGV 11 empty) and KEYS[9] is a placeholder it never touches, so the key list keeps its shape.
    KEYS[10] is the slot's waiting list (only draw slots ever fill it).
    """
    keys = slot_keys(slot_id, day)
    return [
        keys.slot,
        keys.free,
        keys.holders,
        keys.day,
        keys.journal,
        keys.stats,
        *rate_keys(day, user_id, client_ip),
        proof_key or pow_key(day, "-"),
        keys.waitlist,
    ]


# Paths made once: building a Path on every attempt showed in the war path's profile.
_SCRIPT_PATHS = {name: LUA_DIR / f"{name}.lua" for name in SCRIPT_NAMES}


def script(name: str):
    """One of the war engine's Lua scripts (``SCRIPT_NAMES``), loaded once per process (see ``lua``)."""
    if name not in _SCRIPT_PATHS:
        raise KeyError(f"unknown script {name!r}")
    return lua(_SCRIPT_PATHS[name])


def release(
    slot_id: int, day: str, user_id: int | str, code: str, person: str, reason: str, *, give_back: bool = True
) -> list:
    """Run release.lua for one holder (cancel, an undone attempt, reconcile). Redis outages propagate.

    ``give_back=False`` keeps the number out of the free set: PostgreSQL says another ticket holds it.
    """
    args = [user_id, code, slot_id, reason, person, settings.WAR_JOURNAL_MAXLEN, 1 if give_back else 0]
    return script("release")(keys=slot_keys(slot_id, day).state, args=args)


def ms_to_datetime(ms: int | str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(ms) / 1000, tz=datetime.UTC).astimezone(timezone.get_default_timezone())


def datetime_to_ms(moment: datetime.datetime) -> int:
    return int(moment.timestamp() * 1000)
