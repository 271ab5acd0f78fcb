"""The figure of a rehearsal (``simulate_war --plot``). matplotlib is a dev-only dependency: it is
imported when a figure is drawn, never when this module is."""

from __future__ import annotations

from .report import Bucket


def plot(report: dict, path: str, *, bucket_ms: int = 100) -> None:
    """Reservations, answers per second by outcome, and latency percentiles over time since the opening."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = report["timeline"]
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    fig.suptitle(
        f"{report['slot']['name']} — {report['run']['users']} buyers, quota {report['slot']['quota']}, "
        f"{'exact' if report['exact'] else 'NOT EXACT'}"
    )

    for series, label in ((timeline["reserved_ms"], "reserved (Redis)"), (timeline["committed_ms"], "committed")):
        xs = [ms / 1000 for ms in series]
        top.step([0, *xs], range(len(xs) + 1), where="post", label=f"{label}: {len(xs)}")
    top.axhline(report["slot"]["quota"], color="grey", linestyle=":", label="quota")
    seen = report["viewers"].get("last_saw_zero_after_open_ms")
    if seen is not None:
        top.axvline(seen / 1000, color="tab:red", linestyle="--", label="last viewer shows 0")
    top.set_ylabel("tickets")
    top.set_title("Reservations over time", fontsize=10)
    top.legend(loc="lower right", fontsize=8)

    buckets = [Bucket(*row) for row in timeline["buckets"]]  # lists when the report was read back from JSON
    xs = [b.start_ms / 1000 for b in buckets]
    outcomes = sorted({code for b in buckets for code in b.answers})
    for code in outcomes:
        middle.step(xs, [b.answers.get(code, 0) * 1000 / bucket_ms for b in buckets], where="post", label=code)
    middle.set_ylabel("answers/s")
    middle.set_title(f"Answers per second by outcome (per {bucket_ms} ms, by arrival)", fontsize=10)
    if outcomes:
        middle.legend(loc="upper right", fontsize=8)

    for label in ("p50", "p90", "p99"):
        points = [(x, getattr(b, f"{label}_ms")) for x, b in zip(xs, buckets, strict=True)]
        points = [(x, ms) for x, ms in points if ms is not None]
        bottom.plot([x for x, _ in points], [ms for _, ms in points], marker=".", label=label)
    bottom.set_ylabel("latency (ms, by send time)")
    bottom.set_xlabel("seconds since the war opened (server clock)")
    bottom.set_title("Latency percentiles over time", fontsize=10)
    bottom.legend(loc="upper right", fontsize=8)
    for axis in (top, middle, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
