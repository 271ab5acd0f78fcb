from __future__ import annotations

import asyncio
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from queueing.services import draws, heal
from queueing.services.live import Broadcaster, Chore


def chores() -> list[Chore]:
    """Periodic work run in live_quota's loop between broadcasts, one line each.

    A failing chore is logged and never stops the broadcasts."""
    return [
        # Self-heal: a Redis that restarted empty or stale is rebuilt from PostgreSQL within about a second.
        Chore(1.0, heal.periodic),
        # Edits that never reached Redis (stuck pending, bypassed the service) are applied from PostgreSQL.
        Chore(5.0, heal.periodic_sweep),
    ]


# Draw mode: a draw slot whose draw_at has come is drawn within about this long (Redis only, no PostgreSQL,
# until one is due). Its own loop: the broadcast loop ticks every 250 ms and a heal can hold it longer.
DRAW_CHECK_SECONDS = 0.1


async def draw_loop(stop: asyncio.Event) -> None:
    chore = Chore(DRAW_CHECK_SECONDS, draws.periodic)
    while not stop.is_set():
        await chore.run_if_due()
        try:
            await asyncio.wait_for(stop.wait(), timeout=DRAW_CHECK_SECONDS)
        except TimeoutError:
            pass


class Command(BaseCommand):
    help = (
        "Push live remaining quota to open war pages: every --interval-ms, read every slot's counters from "
        "Redis in one round trip and send the slots whose version changed, as one message, to the web "
        "processes' fan-out hubs (channel-layer group live-quota). Run exactly one alongside the web servers "
        "for as long as they serve (`make run` starts it); without it viewers only see changes from each "
        "hub's re-read every 2 s. Survives Redis outages (down, restarted, read-only): logs one line when an "
        "outage starts and one when it ends, retries at growing intervals of up to 5 s, and then sends what "
        "changed meanwhile. Also self-heals Redis: every second it checks that Redis' state was built on this "
        "Redis server (else rebuilds it from PostgreSQL) and every 5 s applies slot edits that never reached "
        "Redis. Draws draw slots whose draw time has come (checked every 100 ms). Stops cleanly on SIGTERM/Ctrl-C."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval-ms",
            type=int,
            default=getattr(settings, "WAR_LIVE_INTERVAL_MS", 250),
            help="Time between reads: the most a viewer waits for a change, and 1000/interval is the most "
            "messages per second a viewer gets (default WAR_LIVE_INTERVAL_MS, 250)",
        )
        parser.add_argument("--once", action="store_true", help="Do one round, print what was sent, and exit")

    def handle(self, *args, interval_ms=250, once=False, **options):
        if interval_ms < 50:
            self.stderr.write("--interval-ms must be at least 50")
            raise SystemExit(2)
        if once:
            sent = asyncio.run(Broadcaster().tick())
            for message in sent:
                self.stdout.write(
                    f"slot {message['slot']}: remaining {message['remaining']} ({message['state']}), "
                    f"version {message['version']}"
                )
            self.stdout.write(f"live_quota: {len(sent)} message(s) sent")
            return
        started = time.monotonic()
        total = asyncio.run(self._serve(interval_ms / 1000))
        self.stdout.write(f"live_quota stopped: {total} message(s) sent in {time.monotonic() - started:.0f}s")

    async def _serve(self, interval: float) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        self.stdout.write(f"live_quota: pushing changed slots every {interval * 1000:.0f} ms (Ctrl-C stops)")
        self.stdout.flush()
        drawer = asyncio.create_task(draw_loop(stop))
        try:
            return await Broadcaster().run(stop, interval=interval, chores=chores())
        finally:
            stop.set()
            await drawer
