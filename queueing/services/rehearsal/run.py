"""The whole rehearsal, end to end: ``rehearse(Plan(...))`` sets up, fires the storm, and reports."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from queueing.models import Allocation, Draw, Slot, Ticket
from queueing.services.store import datetime_to_ms

from .load import (
    Attempt,
    EarlyAttempt,
    StormJob,
    Target,
    ViewerJob,
    ViewerRow,
    Workers,
    check_server,
    run_storm_job,
    run_viewer_job,
    share,
    split,
)
from .report import RunInfo, build_report, clock_offset_ms
from .setup import create_slot, open_in, prepare_buyers


@dataclass
class Plan:
    """One rehearsal, as ``simulate_war``'s options describe it."""

    url: str = "http://127.0.0.1:8000"
    users: int = 200
    attempts_per_user: int = 1
    quota: int = 50
    opens_in: float = 5.0
    slot_id: int | None = None
    concurrency: int = 50
    processes: int = 2
    early: int = 0
    viewers: int = 0
    ws_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    warm: bool = True
    timeout: float = 30.0
    seed: int = 7
    # After the storm, how long viewers may take to show the final 0 before the run stops waiting.
    viewer_grace: float = 10.0
    # Draw mode (``--allocation draw``): the storm at the opening enters the draw; after the draw every
    # buyer asks once for the result (as the war page does), retrying while the draw is not in Redis.
    allocation: str = Allocation.FCFS
    draw_grace_seconds: int = 10
    # How long after the draw time the run waits for the draw before asking anyway (then it finds out).
    draw_wait: float = 30.0


class Progress:
    """Hooks a caller (``simulate_war``'s progress bar) overrides; the rehearsal calls them as it goes."""

    def stage(self, text: str) -> None: ...

    def viewers(self, connected: int, total: int) -> None: ...

    def requests(self, done: int, total: int) -> None: ...

    def zeros(self, seen: int, total: int) -> None: ...


def _wait(condition: Callable[[], bool], timeout: float, tick: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        tick()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    tick()
    return True


def _ask_results(plan: Plan, slot: Slot, buyers, target: Target, body: bytes, offset_ms: float, progress: Progress):
    """Draw mode: wait for the draw, then every buyer asks the war endpoint once for their result.

    The server draws by itself at the draw time (``live_quota``, Celery beat, or the first request after
    it); a buyer told 503 ``not_ready`` (the draw not in Redis yet) asks again, as the page does.
    """
    slot.refresh_from_db()
    draw_at = datetime_to_ms(slot.draw_at)
    progress.stage("waiting for the draw")
    _wait(
        lambda: Draw.objects.filter(slot=slot, drawn_at__isnull=False).exists(),
        max(0.0, (draw_at - offset_ms) / 1000 - time.time()) + plan.draw_wait,
        lambda: None,
    )
    ask_at = max((draw_at - offset_ms) / 1000, time.time() + 0.1)
    attempts = [Attempt(i, b.token) for i, b in enumerate(buyers)]
    workers, counter = Workers(), None
    try:
        processes = max(1, plan.processes)
        for part, conns in zip(split(attempts, processes), share(plan.concurrency, processes), strict=True):
            job = StormJob(target, body, plan.headers, part, [], ask_at, max(1, conns), plan.timeout, persist=30.0)
            workers.start(run_storm_job, (job, counter))
        progress.stage("buyers asking for their result")
        return [shot for part in workers.results(timeout=plan.timeout + 120) for shot in part]
    finally:
        workers.stop()


def rehearse(plan: Plan, progress: Progress | None = None) -> dict:
    """Run one rehearsal end to end and return its report (see ``build_report``)."""
    progress = progress or Progress()
    target = Target.parse(plan.url)
    ws_base = Target.parse(plan.ws_url) if plan.ws_url else target
    processes = max(1, plan.processes)

    progress.stage(f"checking {plan.url}")
    check_server(target, plan.headers)
    progress.stage("preparing the slot and buyers")
    if plan.slot_id is not None:
        slot = Slot.objects.select_related("location").get(pk=plan.slot_id)
        created = False
    else:
        slot = create_slot(plan.quota, allocation=plan.allocation, draw_grace_seconds=plan.draw_grace_seconds)
        created = True
    buyers = prepare_buyers(plan.users, warm=plan.warm)
    offset_ms = clock_offset_ms()
    tickets_before = Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING).count()

    workers = Workers()
    viewer_rows: list[ViewerRow] = []
    connected, zeroed, settled, stop = workers.counter(), workers.counter(), workers.counter(), workers.event()
    # Viewers connect before the opening is final; they learn it through shared memory.
    viewers_open_at = workers.ctx.Value("d", float("inf"))
    viewer_procs = Workers()
    try:
        if plan.viewers:
            progress.stage(f"connecting {plan.viewers} viewers")
            for count in share(plan.viewers, processes):
                if count:
                    job = ViewerJob(
                        ws_base.url(f"/ws/slots/{slot.pk}/", websocket=True),
                        origin=f"{target.scheme}://{target.host_header}",
                        count=count,
                    )
                    viewer_procs.start(run_viewer_job, (job, connected, zeroed, stop, viewers_open_at, settled))
            # Until every viewer is connected or has failed to (a failure is in the report, not waited for).
            _wait(
                lambda: settled.value >= plan.viewers or not any(p.is_alive() for p in viewer_procs.procs),
                60,
                lambda: progress.viewers(connected.value, plan.viewers),
            )

        if created:
            open_in(slot, plan.opens_in)
        slot.refresh_from_db()
        opens_ms = datetime_to_ms(slot.war_opens_at)
        open_at = max((opens_ms - offset_ms) / 1000, time.time() + 0.2)
        viewers_open_at.value = open_at

        rng = random.Random(plan.seed)
        attempts = [Attempt(i, b.token) for i, b in enumerate(buyers) for _ in range(plan.attempts_per_user)]
        rng.shuffle(attempts)
        now = time.time()
        window = max(0.0, open_at - now - 0.4)
        early = [
            EarlyAttempt(now + 0.2 + rng.random() * window, i, buyers[i].token)
            for i in (rng.randrange(len(buyers)) for _ in range(plan.early if buyers else 0))
        ]
        body = json.dumps(
            {"location_id": slot.location.slug, "time_slot": slot.time_label, "date": slot.date.isoformat()}
        ).encode()
        counter = workers.counter()
        total = len(attempts) + len(early)
        progress.stage(f"war opens in {max(0.0, open_at - time.time()):.1f} s")
        for part_attempts, part_early, conns in zip(
            split(attempts, processes), split(early, processes), share(plan.concurrency, processes), strict=True
        ):
            job = StormJob(target, body, plan.headers, part_attempts, part_early, open_at, max(1, conns), plan.timeout)
            workers.start(run_storm_job, (job, counter))
        parts = workers.results(lambda: progress.requests(counter.value, total), timeout=plan.timeout + 600)
        progress.requests(counter.value, total)
        shots = [shot for part in parts for shot in part]
        if slot.is_draw:
            shots += _ask_results(plan, slot, buyers, target, body, offset_ms, progress)

        if plan.viewers:
            progress.stage("waiting for viewers to show the final count")
            sold_out = Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING).count() >= slot.quota
            if sold_out:
                _wait(
                    lambda: zeroed.value >= connected.value,
                    plan.viewer_grace,
                    lambda: progress.zeros(zeroed.value, connected.value),
                )
            else:
                time.sleep(1.0)  # let the last updates arrive so messages per second covers the storm
            stop.set()
            stopped_at = time.time()
            viewer_rows = [row for part in viewer_procs.results(timeout=60) for row in part]
        else:
            stopped_at = None
    finally:
        stop.set()
        workers.stop()
        viewer_procs.stop()

    info = RunInfo(
        url=plan.url,
        users=plan.users,
        attempts_per_user=plan.attempts_per_user,
        concurrency=plan.concurrency,
        processes=processes,
        early=plan.early,
        viewers=plan.viewers,
        offset_ms=offset_ms,
        viewers_stopped_at=stopped_at,
        tickets_before=tickets_before,
        extra={"warm_identities": plan.warm},
    )
    return build_report(slot, shots, viewer_rows, info)
