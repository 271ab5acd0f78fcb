"""`make bench-smoke`: the benchmark with tiny numbers, so it cannot rot; and its recipe is the documented one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.live import ROOT, database_url
from wartiket import serve

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_benchmark_smoke_run_reports_every_figure_and_an_exact_storm(tmp_path):
    out = tmp_path / "bench.json"
    docs = ROOT / "docs" / "benchmarks.md"
    docs_before = docs.read_text() if docs.exists() else None
    env = {**os.environ, "DATABASE_URL": database_url(), "REDIS_URL": settings.REDIS_URL}
    env.pop("WAR_BENCH_PEER", None)
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())

    phases = {phase["name"]: phase for phase in report["phases"]}
    assert list(phases) == ["ceiling", "war: sold out", "war: not yet open", "war: rate limited", "ceiling (again)"]
    for phase in phases.values():
        assert phase["requests"] > 0 and phase["rps"] > 0 and phase["ratio"] > 0
        assert phase["latency"]["p99_ms"] is not None
        assert not any(code.startswith("client_error") for code in phase["codes"])
    assert set(phases["ceiling"]["codes"]) == {"ceiling"}
    assert "sold_out" in phases["war: sold out"]["codes"]
    assert set(phases["war: sold out"]["codes"]) <= {"sold_out", "rate_limited"}
    assert "too_early" in phases["war: not yet open"]["codes"]
    assert set(phases["war: not yet open"]["codes"]) <= {"too_early", "rate_limited"}
    # A few tokens, each far over its per-account limit: mostly refused by the limit.
    limited = phases["war: rate limited"]["codes"]
    assert set(limited) <= {"sold_out", "rate_limited"} and limited["rate_limited"] > limited.get("sold_out", 0)
    assert report["ceiling_rps"] > 0 and report["storm_ratio"] > 0

    # The storm alone first (the commit target), then the same storm watched by viewers.
    alone, storm = report["storms"][:2]
    seats = report["sizes"]["seats"]
    assert alone["run"]["viewers"] == 0 and alone["viewers"] == {"watching": 0}
    for each in (alone, storm):
        assert each["exact"] is True, each["violations"]
        assert each["database"]["tickets"] == each["outcomes"]["reserved"] == seats
        assert each["database"]["open_to_last_commit_ms"] is not None
    viewers = report["sizes"]["viewers"][0]
    assert storm["viewers"]["connected"] == storm["viewers"]["saw_zero"] == viewers
    assert storm["viewers"]["last_saw_zero_after_sell_out_ms"] is not None
    assert storm["viewers"]["messages_per_viewer_per_second"] > 0
    assert report["largest_viewers_that_worked"] == viewers
    assert isinstance(report["rejection_pg_transactions"], int)
    assert report["machine"]["cores"] >= 1 and report["machine"]["versions"]["django"]
    # A SIGKILLed web worker: the web server forked a replacement and that replacement answered.
    restart = report["worker_restart"]
    assert restart["replacement"] not in (None, restart["killed"])
    assert restart["forked_ms"] is not None and restart["first_answer_ms"] is not None
    # Without WAR_BENCH_PEER the peer's column is skipped, and the output says so.
    assert report["peer"] is None and "WAR_BENCH_PEER was not set" in result.stdout
    assert "### Reading this run" in result.stdout
    # The table the full run writes to docs/benchmarks.md, with each ratio to the ceiling.
    assert "| war: sold out |" in result.stdout and "ratio to ceiling" in result.stdout
    # Smoke runs never write the benchmark record.
    assert (docs.read_text() if docs.exists() else None) == docs_before


def test_the_deploy_docs_run_what_the_benchmark_runs():
    """docs/deploy.md and `make bench` (which runs `wartiket.serve`) describe one configuration: every recipe
    line appears verbatim."""
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    for name, argv in serve.recipe():
        line = " ".join(argv)
        assert line in deploy, f"docs/deploy.md lacks the {name} command: {line}"
