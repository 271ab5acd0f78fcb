"""The storm tests' load: the rehearsal's load generator (``queueing.services.rehearsal.load``), one call.

One load generator in the project: the tests fire through the same raw HTTP/1.1 client, forked
processes and ``Shot`` records that ``simulate_war`` and ``make bench`` use, so a fix or a measurement
of the client holds for all three.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from queueing.services.rehearsal.load import Attempt, Shot, StormJob, Target, Workers, run_storm_job, split


def storm(
    base_url: str,
    attempts: list[tuple[int, str]],
    body: dict,
    *,
    start_at: float,
    processes: int = 4,
    connections: int = 64,
    persist: float = 0.0,
    during: Callable[[], None] | None = None,
) -> list[Shot]:
    """Send every (buyer index, token) attempt from ``start_at`` (epoch seconds); one ``Shot`` per answer.

    ``during()`` runs in a thread of this process while the storm rages. It starts after the load
    processes are forked: forking while another thread holds a lock could hang a child.
    """
    workers = Workers()
    job_body = json.dumps(body).encode()
    for part in split([Attempt(index, token) for index, token in attempts], processes):
        job = StormJob(Target.parse(base_url), job_body, {}, part, [], start_at, connections, persist=persist)
        workers.start(run_storm_job, (job, None))
    side_error: list[BaseException] = []

    def side() -> None:
        try:
            during()
        except BaseException as exc:  # re-raised in the test's thread below
            side_error.append(exc)

    thread = threading.Thread(target=side, daemon=True) if during else None
    try:
        if thread:
            thread.start()
        shots = [shot for part in workers.results(timeout=600) for shot in part]
    finally:
        workers.stop()
        if thread:
            thread.join(max(1.0, start_at + persist + 60 - time.time()))
    if side_error:
        raise side_error[0]
    return shots
