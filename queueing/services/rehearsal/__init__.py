"""Rehearsing a war against a running server: what ``simulate_war`` and ``make bench`` are made of.

One idea per module, in the order a rehearsal uses them:

- ``setup``: rehearsal buyers with fresh tokens, rehearsal slots, moving an opening, clean-up.
- ``load``: the load generator, a raw HTTP/1.1 client in forked processes (no Django there).
- ``report``: the server's clock, percentiles, the report, its verdicts and the exactness audit.
- ``run``: ``rehearse(Plan(...))``, the whole rehearsal end to end.
- ``plot``: the figure (matplotlib, a dev-only dependency, imported only when drawing).

The names below are the public ones; ``from queueing.services import rehearsal`` then ``rehearsal.X``
keeps working for every caller.
"""

from .load import (
    Answer,
    Attempt,
    Connection,
    EarlyAttempt,
    Head,
    ServerUnreachable,
    Shot,
    SteadyJob,
    SteadyResult,
    StormJob,
    Target,
    ViewerJob,
    ViewerRow,
    Workers,
    check_server,
    http_request,
    run_steady_job,
    run_storm_job,
    run_viewer_job,
    share,
    split,
)
from .plot import plot
from .report import Bucket, RunInfo, build_report, clock_offset_ms, latency_summary, percentile, reaudit
from .run import Plan, Progress, rehearse
from .setup import (
    REHEARSAL_LOCATION,
    Buyer,
    CleanupSummary,
    cleanup,
    create_slot,
    open_in,
    prepare_buyers,
    rehearsal_location,
)

__all__ = [
    "REHEARSAL_LOCATION",
    "Answer",
    "Attempt",
    "Bucket",
    "Buyer",
    "CleanupSummary",
    "Connection",
    "EarlyAttempt",
    "Head",
    "Plan",
    "Progress",
    "RunInfo",
    "ServerUnreachable",
    "Shot",
    "SteadyJob",
    "SteadyResult",
    "StormJob",
    "Target",
    "ViewerJob",
    "ViewerRow",
    "Workers",
    "build_report",
    "check_server",
    "cleanup",
    "clock_offset_ms",
    "create_slot",
    "http_request",
    "latency_summary",
    "open_in",
    "percentile",
    "plot",
    "prepare_buyers",
    "reaudit",
    "rehearsal_location",
    "rehearse",
    "run_steady_job",
    "run_storm_job",
    "run_viewer_job",
    "share",
    "split",
]
