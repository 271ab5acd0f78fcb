"""``make bench`` / ``make bench-smoke``: the whole system in its production configuration, measured in one run.

Starts PostgreSQL and Redis as ``make test`` does (embedded, unless DATABASE_URL / REDIS_URL are set),
then the production processes with ``python -m wartiket.serve ROLE`` (the recipe docs/deploy.md describes), and
measures with one load generator (``queueing.services.rehearsal``) and one connection count:

1. the ceiling: a bare Django view (``/bench/ceiling``, no PostgreSQL, no Redis) on the same web server;
2. the war endpoint on a sold-out slot, on a not-yet-open slot (real tokens, warm identity cache), and
   rate limited (a few tokens, each far over its per-account limit);
3. the same refusals against the seed's own design (a Go/Gin + Redis peer) when ``WAR_BENCH_PEER`` names
   its binary (built outside this repository); without it that column is skipped with a note;
4. an opening storm: time until the last seat is committed in PostgreSQL, and exactness;
5. WebSocket viewers watching that storm: time from sell-out until the last one shows 0, messages per
   viewer per second; the largest viewer count that works (trying fewer when one fails);
6. a web worker killed with SIGKILL: time until its replacement answers a request.

Prints a table with each ratio to the ceiling and appends a dated entry to docs/benchmarks.md (not in
smoke mode). Traffic goes only to 127.0.0.1. Every request carries ``X-Forwarded-Proto: https`` as the
TLS-terminating proxy would, so production settings (DEBUG off, HTTPS redirect on) apply unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from wartiket import devrun, serve

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS_MD = REPO / "docs" / "benchmarks.md"
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}


@dataclass(frozen=True)
class Sizes:
    connections: int
    processes: int  # load generator processes
    seconds: float  # each steady phase
    warmup_seconds: float
    buyers: int  # tokens cycled by the rejection phases
    storm_buyers: int
    storm_attempts: int
    seats: int
    viewers: tuple[int, ...]  # tried in order until one works
    capacity_viewers: int = 10_000  # idle viewers connected at once: how many work, memory per viewer
    limited_buyers: int = 20  # tokens of the rate-limited phase, each far over WAR_RATE_LIMIT_USER
    workers: int = serve.WEB_WORKERS
    threads: int = serve.WEB_THREADS


FULL = Sizes(
    connections=500,
    processes=2,
    seconds=10,
    warmup_seconds=3,
    buyers=10_000,
    storm_buyers=6_000,
    storm_attempts=2,
    seats=1_000,
    viewers=(5_000, 2_000, 1_000),
)
SMOKE = Sizes(
    connections=8,
    processes=2,
    seconds=0.5,
    warmup_seconds=0.3,
    # Enough tokens that none passes the per-account limit (10 attempts in 10 s) in the refusal phases, as
    # in a full run: with 40, a fast server rate-limited every "not yet open" attempt.
    buyers=1_000,
    storm_buyers=30,
    storm_attempts=2,
    seats=10,
    viewers=(6,),
    capacity_viewers=20,
    limited_buyers=2,
    workers=1,
    threads=2,
)


def say(message: str) -> None:
    print(f"  bench | {message}", flush=True)


# --- The processes ------------------------------------------------------------------------------


def bench_env(base: dict[str, str]) -> dict[str, str]:
    """Production settings (DEBUG off) plus the two things a one-machine benchmark needs."""
    env = dict(base)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        WAR_TESTING="0",
        # Every request comes from 127.0.0.1: a per-address limit would refuse the whole benchmark.
        WAR_RATE_LIMIT_IP="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("TEST_REDIS_URL", None)
    return env


@dataclass
class Stack:
    """The production processes, each logging to its own file under ``logs``."""

    env: dict[str, str]
    logs: Path
    http_port: int
    ws_port: int
    workers: int
    threads: int
    only_http: bool = False
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws(self) -> str:
        return f"http://127.0.0.1:{self.ws_port}"

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        # The recipe's own entry point, one role per process as docker-compose.yml runs it; the benchmark
        # has migrated and set up Redis itself, so the one-shot steps are skipped.
        env = {
            **self.env,
            "HOST": "127.0.0.1",
            "PORT": str(self.http_port),
            "WS_PORT": str(self.ws_port),
            "WEB_WORKERS": str(self.workers),
            "WEB_THREADS": str(self.threads),
            "CELERY_BEAT_SCHEDULE": str(self.logs / "celerybeat-schedule"),
        }
        for role in serve.ROLES[:1] if self.only_http else serve.ROLES:
            log = open(self.logs / f"{role}.log", "wb")
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "wartiket.serve", role, "--no-prepare"],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=devrun._parent_death_signal(),
            )
        self.wait_up(self.http)
        if not self.only_http:
            self.wait_up(self.ws)

    def wait_up(self, base: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            request = urllib.request.Request(f"{base}/api/time", headers=PROXY_HEADERS)  # noqa: S310 (loopback)
            try:
                with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback only)
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"{base} did not answer within {timeout:.0f}s; logs in {self.logs}")

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n" + "\n".join(tail))

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The whole group: the web server's workers, celery's pool.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
        self.procs = {}


@contextmanager
def running(stack: Stack):
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# --- Measurements ---------------------------------------------------------------------------------


@dataclass
class Steady:
    name: str
    requests: int
    seconds: float
    rps: float
    latency: dict
    codes: dict
    statuses: dict

    def row(self, ceiling: float | None) -> dict:
        return {**asdict(self), "ratio": round(self.rps / ceiling, 3) if ceiling else None}


def steady(name: str, base: str, requests: list[bytes], sizes: Sizes, seconds: float) -> Steady:
    from queueing.services import rehearsal

    target = rehearsal.Target.parse(base)
    workers = rehearsal.Workers()
    counter = workers.counter()
    start_at = time.time() + 0.5
    for part, conns in zip(
        rehearsal.split(requests, sizes.processes),
        rehearsal.share(sizes.connections, sizes.processes),
        strict=True,
    ):
        job = rehearsal.SteadyJob(target, part or requests, start_at, seconds, max(1, conns))
        workers.start(rehearsal.run_steady_job, (job, counter))
    parts = workers.results(timeout=seconds + 120)
    ended = time.time()
    statuses, codes, latencies = {}, {}, []
    for part in parts:
        for key, value in part.statuses.items():
            statuses[str(key)] = statuses.get(str(key), 0) + value
        for key, value in part.codes.items():
            codes[key] = codes.get(key, 0) + value
        latencies += part.latencies
    # Requests still in flight at the end finish a little after it: count the time they took too.
    elapsed = max(seconds, min(ended - start_at, seconds + max(latencies, default=0)))
    result = Steady(
        name=name,
        requests=len(latencies),
        seconds=round(elapsed, 2),
        rps=round(len(latencies) / elapsed, 1),
        latency=rehearsal.latency_summary(latencies),
        codes=dict(sorted(codes.items(), key=lambda kv: -kv[1])),
        statuses=statuses,
    )
    say(f"{name}: {result.rps:,.0f} req/s, p99 {result.latency['p99_ms']} ms, {result.codes}")
    return result


def war_requests(base: str, slot, tokens: list[str]) -> list[bytes]:
    from queueing.services import rehearsal

    target = rehearsal.Target.parse(base)
    body = json.dumps(
        {"location_id": slot.location.slug, "time_slot": slot.time_label, "date": slot.date.isoformat()}
    ).encode()
    return [
        rehearsal.http_request(target, "POST", "/api/war", {**PROXY_HEADERS, "Authorization": f"Token {t}"}, body)
        for t in tokens
    ]


def ceiling_requests(base: str, tokens: list[str]) -> list[bytes]:
    """The same request as a war attempt (headers, token, body), sent to the bare view."""
    from queueing.services import rehearsal

    target = rehearsal.Target.parse(base)
    body = json.dumps({"location_id": "graha-dipta", "time_slot": "10:00"}).encode()
    return [
        rehearsal.http_request(target, "POST", "/bench/ceiling", {**PROXY_HEADERS, "Authorization": f"Token {t}"}, body)
        for t in tokens[:1000]
    ]


def pg_transactions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def storm(stack: Stack, sizes: Sizes, viewers: int) -> dict:
    from queueing.services import rehearsal

    plan = rehearsal.Plan(
        url=stack.http,
        ws_url=stack.ws,
        users=sizes.storm_buyers,
        attempts_per_user=sizes.storm_attempts,
        quota=sizes.seats,
        opens_in=3.0,
        concurrency=sizes.connections,
        processes=sizes.processes,
        viewers=viewers,
        headers=PROXY_HEADERS,
        viewer_grace=15.0,
    )
    report = rehearsal.rehearse(plan)
    db, seen = report["database"], report["viewers"]
    say(
        f"storm with {viewers} viewers: {report['outcomes']}; sold out after {db['open_to_sold_out_ms']} ms, "
        f"last commit {db['open_to_last_commit_ms']} ms; viewers {seen.get('connected')}/{viewers} connected, "
        f"{seen.get('saw_zero')} saw 0, last {seen.get('last_saw_zero_after_sell_out_ms')} ms after sell-out; "
        f"exact={report['exact']} {report['violations']}"
    )
    report.pop("timeline", None)
    report.pop("acknowledged", None)
    return report


def viewer_capacity(stack: Stack, count: int, slot_id: int, timeout: float = 180.0) -> dict:
    """``count`` viewers of one slot connected at once to the one daphne (idle: no war): how many connect and
    get the slot's state, and the daphne process' memory per connected viewer (RSS after / before)."""
    import psutil

    from queueing.services import rehearsal
    from queueing.services.rehearsal.load import ViewerJob, Workers, run_viewer_job, split

    daphne = psutil.Process(stack.procs["ws"].pid)  # serve exec'd daphne: this pid is daphne
    rss_before = daphne.memory_info().rss
    target = rehearsal.Target.parse(stack.ws)
    workers = Workers()
    connected, zeroed, settled, stop = workers.counter(), workers.counter(), workers.counter(), workers.event()
    never = workers.ctx.Value("d", float("inf"))  # no opening: messages are not counted
    started = time.monotonic()
    for part in split(list(range(count)), 2):
        job = ViewerJob(
            target.url(f"/ws/slots/{slot_id}/", websocket=True),
            origin=f"https://{target.host_header}",
            count=len(part),
            connect_parallel=50,
        )
        workers.start(run_viewer_job, (job, connected, zeroed, stop, never, settled))
    while settled.value < count and time.monotonic() - started < timeout:
        time.sleep(0.2)
    connect_s = time.monotonic() - started
    time.sleep(2)  # the initial states delivered and the buffers settled
    rss_after = daphne.memory_info().rss
    stop.set()
    rows = [row for part in workers.results(timeout=120) for row in part]
    ok = sum(1 for row in rows if row.connected)
    errors = Counter(row.error.split(":")[0] for row in rows if row.error)
    result = {
        "viewers": count,
        "connected": ok,
        "connect_s": round(connect_s, 1),
        "daphne_rss_mb_before": round(rss_before / 2**20, 1),
        "daphne_rss_mb_after": round(rss_after / 2**20, 1),
        "kb_per_viewer": round((rss_after - rss_before) / 1024 / ok, 1) if ok else None,
        "errors": dict(errors),
    }
    say(f"viewer capacity: {result}")
    return result


def viewers_worked(report: dict, viewers: int) -> bool:
    seen = report["viewers"]
    return seen.get("connected") == viewers and seen.get("saw_zero") == viewers


# --- The seed's design as a yardstick (WAR_BENCH_PEER) -------------------------------------------------

PEER_ENV = "WAR_BENCH_PEER"
PEER_TABLE = (
    "CREATE TABLE IF NOT EXISTS peer_ticket (id bigserial PRIMARY KEY, slot text, user_id text, queue_number int, "
    "created_at timestamptz DEFAULT clock_timestamp(), UNIQUE (slot, user_id), UNIQUE (slot, queue_number))"
)


def peer_database_url(url: str) -> str:
    """The bench's DATABASE_URL as lib/pq wants it (no TLS on loopback)."""
    return url + ("&" if "?" in url else "?") + "sslmode=disable"


@contextmanager
def peer_running(binary: str, env: dict[str, str], logs: Path, buyers, slots: list[tuple]):
    """The peer on a free port with the state its README asks for: the same tokens and slots as ours."""
    from django.db import connection

    from wartiket.redis_client import get_redis

    r = get_redis()
    pipe = r.pipeline(transaction=False)
    for buyer in buyers:
        pipe.set(f"peer:tok:{buyer.token}", buyer.user_id)
    for slot, opens_ms, left in slots:
        key = f"{slot.location.slug}|{slot.time_label}"
        pipe.hset(f"peer:slot:{key}", mapping={"opens": opens_ms, "quota": slot.quota})
        pipe.set(f"peer:left:{key}", left)
    pipe.execute()
    with connection.cursor() as cursor:
        cursor.execute(PEER_TABLE)
    port = devrun.free_port()
    log = open(logs / "peer.log", "wb")
    proc = subprocess.Popen(
        [binary],
        env={
            **env,
            "PEER_REDIS_URL": env["REDIS_URL"],
            "PEER_DATABASE_URL": peer_database_url(env["DATABASE_URL"]),
            "PEER_ADDR": f"127.0.0.1:{port}",
        },
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=devrun._parent_death_signal(),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the peer exited with {proc.returncode}; log in {logs / 'peer.log'}")
            try:
                with urllib.request.urlopen(f"{base}/ceiling", timeout=2):  # noqa: S310 (loopback only)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        for key in r.scan_iter("peer:*", count=1000):
            r.delete(key)
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS peer_ticket")


def peer_war_requests(base: str, slot, tokens: list[str], path: str = "/api/war") -> list[bytes]:
    from queueing.services import rehearsal

    target = rehearsal.Target.parse(base)
    body = json.dumps({"location_id": slot.location.slug, "time_slot": slot.time_label}).encode()
    return [rehearsal.http_request(target, "POST", path, {"Authorization": f"Token {t}"}, body) for t in tokens]


# --- A killed web worker ---------------------------------------------------------------------------------


def worker_pids_answering(base: str, count: int) -> set[int]:
    """Which workers answer ``count`` simultaneous requests on fresh connections."""
    from concurrent.futures import ThreadPoolExecutor

    def one(_):
        request = urllib.request.Request(f"{base}/bench/ceiling", headers=PROXY_HEADERS)  # noqa: S310 (loopback)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (loopback only)
                return int(response.headers["X-Worker-Pid"])
        except (OSError, TypeError, ValueError):
            return None

    with ThreadPoolExecutor(count) as pool:
        return {pid for pid in pool.map(one, range(count)) if pid}


def worker_restart(stack: Stack, timeout: float = 30) -> dict:
    """SIGKILL one web worker (idle server); ms until the main process forked a replacement, and until that
    replacement answered a request (an upper bound: requests go to whichever worker accepts first)."""
    import psutil

    master = psutil.Process(stack.procs["web"].pid)  # serve exec'd the web server: this pid is its main process
    before = {child.pid for child in master.children()}
    victim = min(before)
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replacement = forked_ms = answered_ms = None
    while time.monotonic() - started < timeout:
        if replacement is None:
            new = {child.pid for child in master.children()} - before
            if new:
                replacement = new.pop()
                forked_ms = round((time.monotonic() - started) * 1000)
            else:
                time.sleep(0.002)
                continue
        if replacement in worker_pids_answering(stack.http, 4 * len(before)):
            answered_ms = round((time.monotonic() - started) * 1000)
            break
    result = {"killed": victim, "replacement": replacement, "forked_ms": forked_ms, "first_answer_ms": answered_ms}
    say(f"worker restart: {result}")
    return result


# --- The run ------------------------------------------------------------------------------------------


def peer_comparison(ours: list[Steady], peer: list[Steady]) -> dict:
    """Ours against the peer, path by path (the same requests, load generator and connections)."""
    by_name = {p.name: p for p in ours}
    rows = []
    for theirs in peer:
        path = theirs.name.removeprefix("peer: ")
        mine = by_name.get(path if path == "ceiling" else f"war: {path}")
        rows.append(
            {
                "path": path,
                "ours_rps": mine.rps if mine else None,
                "peer_rps": theirs.rps,
                "ratio": round(mine.rps / theirs.rps, 3) if mine and theirs.rps else None,
                "peer_p99_ms": theirs.latency["p99_ms"],
                "peer_codes": theirs.codes,
            }
        )
    return {"binary": os.environ.get(PEER_ENV), "rows": rows}


def measure(sizes: Sizes, env: dict[str, str], data_dir: Path) -> dict:
    from django.core.management import call_command

    from accounts.services.identity import Principal
    from queueing.services import rehearsal, reservations

    say("migrate")
    call_command("migrate", verbosity=0)
    say(f"{sizes.buyers:,} buyers with API tokens (identity cache warm, as after their earlier visits)")
    started = time.monotonic()
    buyers = rehearsal.prepare_buyers(sizes.buyers)
    say(f"  ready in {time.monotonic() - started:.1f}s")
    sold_out = rehearsal.open_in(rehearsal.create_slot(1, time_label="08:00"), -5)
    reservations.reserve(Principal(id=buyers[0].user_id, has_nik=True), "latihan", "08:00", sold_out.date)
    not_open = rehearsal.create_slot(100, time_label="13:00")  # parked an hour away
    tokens = [b.token for b in buyers[1:]]

    stack = Stack(env, data_dir / "logs", devrun.free_port(), devrun.free_port(), sizes.workers, sizes.threads)
    result: dict = {"sizes": asdict(sizes)}
    peer_binary = os.environ.get(PEER_ENV)
    with running(stack):
        say(f"production stack up: granian {sizes.workers}x{sizes.threads} at {stack.http}, daphne at {stack.ws}")
        ceiling = ceiling_requests(stack.http, tokens)
        too_early = war_requests(stack.http, not_open, tokens)
        sold = war_requests(stack.http, sold_out, tokens)
        limited = war_requests(stack.http, sold_out, tokens[: sizes.limited_buyers])
        steady("warm-up (ceiling)", stack.http, ceiling, sizes, sizes.warmup_seconds)
        steady("warm-up (war)", stack.http, too_early, sizes, sizes.warmup_seconds)

        before = pg_transactions()
        phases = [
            steady("ceiling", stack.http, ceiling, sizes, sizes.seconds),
            steady("war: sold out", stack.http, sold, sizes, sizes.seconds),
            steady("war: not yet open", stack.http, too_early, sizes, sizes.seconds),
            steady("war: rate limited", stack.http, limited, sizes, sizes.seconds),
        ]
        rejection_transactions = pg_transactions() - before
        phases.append(steady("ceiling (again)", stack.http, ceiling, sizes, sizes.seconds))
        stack.check()

        peer_phases = []
        if peer_binary:
            from queueing.services.clock import redis_now_ms

            now_ms = redis_now_ms()
            peer_slots = [(sold_out, now_ms - 5_000, 0), (not_open, now_ms + 3_600_000, not_open.quota)]
            with peer_running(peer_binary, env, stack.logs, buyers, peer_slots) as peer:
                say(f"peer ({PEER_ENV}={peer_binary}) at {peer}")
                steady("peer: warm-up", peer, peer_war_requests(peer, not_open, tokens), sizes, sizes.warmup_seconds)
                peer_phases = [
                    steady("peer: ceiling", peer, peer_war_requests(peer, sold_out, tokens, "/ceiling"), sizes,
                           sizes.seconds),
                    steady("peer: sold out", peer, peer_war_requests(peer, sold_out, tokens), sizes, sizes.seconds),
                    steady("peer: not yet open", peer, peer_war_requests(peer, not_open, tokens), sizes,
                           sizes.seconds),
                ]  # fmt: skip
        else:
            say(f"no peer: set {PEER_ENV}=/path/to/seed-go-peer to measure the seed's design alongside")

        # First without viewers (the war path's own storm: the commit target), then watched by viewers
        # on the same two cores (the viewers' target), trying fewer viewers if a size fails.
        storms = [storm(stack, sizes, 0)]
        for viewers in sizes.viewers:
            report = storm(stack, sizes, viewers)
            storms.append(report)
            if viewers_worked(report, viewers) or not report["exact"]:
                break
        stack.check()
        capacity = viewer_capacity(stack, sizes.capacity_viewers, not_open.pk)
        stack.check()
        restart = worker_restart(stack)
        stack.check()

    ceiling_rps = (phases[0].rps + phases[-1].rps) / 2
    main_storm = storms[0]
    worked = next((s for s in storms if viewers_worked(s, s["run"]["viewers"])), None)
    result.update(
        ceiling_rps=round(ceiling_rps, 1),
        phases=[p.row(ceiling_rps) for p in phases],
        peer=peer_comparison(phases, peer_phases) if peer_phases else None,
        rejection_pg_transactions=rejection_transactions,
        rejection_requests=sum(p.requests for p in phases[1:4]),
        storms=storms,
        storm_ratio=round(main_storm["throughput_rps"] / ceiling_rps, 3) if main_storm["throughput_rps"] else None,
        largest_viewers_that_worked=worked["run"]["viewers"] if worked else None,
        viewer_capacity=capacity,
        worker_restart=restart,
        exact=all(s["exact"] for s in storms),
    )
    rehearsal.cleanup()
    return result


def machine() -> dict:
    import django
    import redis as redis_py
    from django.db import connection

    from wartiket.redis_client import get_redis

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        memory_gb = None
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    versions = {"python": platform.python_version(), "django": django.get_version(), "redis-py": redis_py.__version__}
    for package in ("granian", "daphne", "channels", "channels_redis", "celery", "aiohttp"):
        try:
            versions[package] = __import__(package).__version__
        except (ImportError, AttributeError):
            versions[package] = "?"
    versions["postgresql"] = postgres.split()[0]
    versions["redis"] = get_redis().info("server")["redis_version"]
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": memory_gb,
        "os": platform.platform(),
        "versions": versions,
    }


def _ms(value) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


def table(result: dict) -> str:
    lines = [
        "| measurement | requests | req/s | ratio to ceiling | p50 ms | p99 ms | answers |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for phase in result["phases"]:
        answers = ", ".join(f"{code} {count:,}" for code, count in phase["codes"].items())
        lines.append(
            f"| {phase['name']} | {phase['requests']:,} | {phase['rps']:,.0f} | {phase['ratio']:.0%} | "
            f"{phase['latency']['p50_ms']} | {phase['latency']['p99_ms']} | {answers} |"
        )
    for report in result["storms"]:
        answers = ", ".join(f"{code} {count:,}" for code, count in report["outcomes"].items())
        lat = report["latency"]
        ratio = report["throughput_rps"] / result["ceiling_rps"] if report["throughput_rps"] else 0
        lines.append(
            f"| opening storm ({report['run']['users']:,} buyers x {report['run']['attempts_per_user']}, "
            f"{report['run']['viewers']:,} viewers) | {report['requests']:,} | {report['throughput_rps']:,.0f} | "
            f"{ratio:.0%} | {lat['p50_ms']} | {lat['p99_ms']} | {answers} |"
        )
    lines.append("")
    lines.append("| storm | value |")
    lines.append("| --- | ---: |")
    for report in result["storms"]:
        db, seen = report["database"], report["viewers"]
        tag = f"{report['run']['viewers']:,} viewers"
        lines += [
            f"| seats / buyers / connections ({tag}) | {report['slot']['quota']:,} / {report['run']['users']:,} / "
            f"{report['run']['concurrency']} |",
            f"| opening → sold out in Redis ({tag}) | {_ms(db['open_to_sold_out_ms'])} |",
            f"| opening → last seat committed in PostgreSQL ({tag}) | {_ms(db['open_to_last_commit_ms'])} |",
            f"| exact ({tag}) | {'yes' if report['exact'] else 'NO: ' + '; '.join(report['violations'])} |",
        ]
        if report["run"]["viewers"]:
            lines += [
                f"| viewers connected / saw 0 ({tag}) | {seen.get('connected')} / {seen.get('saw_zero')} |",
                f"| sold out → last viewer shows 0 ({tag}) | {_ms(seen.get('last_saw_zero_after_sell_out_ms'))} |",
                f"| messages per viewer per second ({tag}) | {seen.get('messages_per_viewer_per_second')} |",
            ]
    lines.append(
        "| largest viewer count that worked (all connected and showed 0 within 15 s of the storm's end) | "
        f"{result['largest_viewers_that_worked'] or 'none'} |"
    )
    lines.append(
        f"| PostgreSQL transactions during the three rejection phases (all processes) | "
        f"{result['rejection_pg_transactions']:,} for {result['rejection_requests']:,} requests |"
    )
    capacity = result["viewer_capacity"]
    lines.append(
        f"| idle viewers of one slot on one daphne: connected / tried (daphne memory per viewer) | "
        f"{capacity['connected']:,} / {capacity['viewers']:,} ({capacity['kb_per_viewer']} KB) |"
    )
    restart = result["worker_restart"]
    lines.append(
        f"| a web worker killed (SIGKILL) → replacement forked / answering | {_ms(restart['forked_ms'])} / "
        f"{_ms(restart['first_answer_ms'])} |"
    )
    lines.append("")
    if result["peer"]:
        lines += [
            "| against the seed's design (Go/Gin + Redis peer) | ours req/s | peer req/s | ours / peer | peer p99 ms |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for row in result["peer"]["rows"]:
            ratio = "—" if row["ratio"] is None else f"{row['ratio']:.0%}"
            lines.append(
                f"| {row['path']} | {row['ours_rps'] or 0:,.0f} | {row['peer_rps']:,.0f} | {ratio} | "
                f"{row['peer_p99_ms']} |"
            )
    else:
        lines.append(f"(No peer column: {PEER_ENV} was not set.)")
    return "\n".join(lines)


def reading(result: dict) -> list[str]:
    """The run against the targets of the war path (issue 10), in words: what met them and what did not."""

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("met" if ok else "NOT met")

    phases = {p["name"]: p for p in result["phases"]}
    storm = result["storms"][0]  # without viewers
    watched = next((s for s in result["storms"] if s["run"]["viewers"]), storm)
    commit_ms = storm["database"]["open_to_last_commit_ms"]
    seen = watched["viewers"]
    restart = result["worker_restart"]["first_answer_ms"]
    lines = ["### Reading this run", ""]
    if result["peer"]:
        for row in result["peer"]["rows"]:
            if row["path"] != "ceiling" and row["ratio"] is not None:
                lines.append(
                    f"- Refusals, {row['path']}: {row['ours_rps']:,.0f} req/s, {row['ratio']:.0%} of the peer's "
                    f"{row['peer_rps']:,.0f} (target ≥ 50 %): {verdict(row['ratio'] >= 0.5)}."
                )
    else:
        lines.append(f"- Refusals against the peer: not measured ({PEER_ENV} unset).")
    lines.append(
        f"- Refusals against our own ceiling: sold out {phases['war: sold out']['ratio']:.0%}, not yet open "
        f"{phases['war: not yet open']['ratio']:.0%}, rate limited {phases['war: rate limited']['ratio']:.0%}; "
        f"{result['rejection_pg_transactions']:,} PostgreSQL transactions in all processes meanwhile."
    )
    lines.append(
        f"- Opening storm ({storm['run']['users']:,} buyers, {storm['run']['concurrency']} connections, "
        f"{storm['slot']['quota']:,} seats): last seat committed {_ms(commit_ms)} after opening (target ≤ 1,000 ms): "
        f"{verdict(None if commit_ms is None else commit_ms <= 1000)}; exact: {'yes' if storm['exact'] else 'NO'}."
    )
    zero_ms = seen.get("last_saw_zero_after_sell_out_ms")
    lines.append(
        f"- The same storm watched by {watched['run']['viewers']:,} viewers: last seat committed "
        f"{_ms(watched['database']['open_to_last_commit_ms'])} after opening; {seen.get('saw_zero')} saw 0, the "
        f"last {_ms(zero_ms)} after sell-out (target: 5,000 viewers ≤ 1,000 ms): "
        f"{verdict(None if zero_ms is None else (zero_ms <= 1000 and seen.get('saw_zero') >= 5000))}."
    )
    capacity = result["viewer_capacity"]
    lines.append(
        f"- Idle viewers on one daphne: {capacity['connected']:,} of {capacity['viewers']:,} connected "
        f"(target: 10,000 on this machine): {verdict(capacity['connected'] >= 10_000)}; "
        f"{capacity['kb_per_viewer']} KB of daphne memory per viewer."
    )
    lines.append(
        f"- Killed web worker: its replacement answered {_ms(restart)} after the kill (target < 1,000 ms): "
        f"{verdict(None if restart is None else restart < 1000)}."
    )
    return lines


def write_entry(result: dict, command: str) -> None:
    m = result["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    sizes = result["sizes"]
    entry = [
        "",
        f"## {result['date']} — `{command}`",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB memory, {m['os']}.",
        f"- Versions: {versions}.",
        f"- Servers: granian {sizes['workers']} workers x {sizes['threads']} threads (WSGI, preloaded), one daphne, "
        "Celery "
        "worker + beat, live_quota; embedded or given PostgreSQL and Redis; load generator on the same machine "
        f"({sizes['processes']} processes, {sizes['connections']} connections in every measurement).",
        f"- Duration: {result['duration_s']:.0f} s in all.",
        "",
        table(result),
        "",
        *reading(result),
        "",
    ]
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    BENCHMARKS_MD.write_text(text.rstrip("\n") + "\n" + "\n".join(entry))


def sweep(env: dict[str, str], data_dir: Path, configs: list[tuple[int, int]], seconds: float) -> list[dict]:
    """Sizing: ceiling and a sold-out war per web server size (workers, threads), 500 connections each."""
    from django.core.management import call_command

    from accounts.services.identity import Principal
    from queueing.services import rehearsal, reservations

    call_command("migrate", verbosity=0)
    buyers = rehearsal.prepare_buyers(FULL.buyers)
    sold_out = rehearsal.open_in(rehearsal.create_slot(1, time_label="08:00"), -5)
    reservations.reserve(Principal(id=buyers[0].user_id, has_nik=True), "latihan", "08:00", sold_out.date)
    tokens = [b.token for b in buyers[1:]]
    rows = []
    for workers, threads in configs:
        sizes = Sizes(**{**asdict(FULL), "workers": workers, "threads": threads})
        stack = Stack(env, data_dir / "logs", devrun.free_port(), 0, workers, threads, only_http=True)
        with running(stack):
            ceiling = ceiling_requests(stack.http, tokens)
            sold = war_requests(stack.http, sold_out, tokens)
            steady("warm-up", stack.http, sold, sizes, 2)
            a = steady(f"{workers}x{threads} ceiling", stack.http, ceiling, sizes, seconds)
            b = steady(f"{workers}x{threads} sold out", stack.http, sold, sizes, seconds)
        rows.append({"workers": workers, "threads": threads, "ceiling": a.row(None), "sold_out": b.row(a.rps)})
    rehearsal.cleanup()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks the benchmark works (make test)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--no-docs", action="store_true", help="do not append the entry to docs/benchmarks.md")
    parser.add_argument(
        "--sweep",
        metavar="WxT",
        nargs="+",
        help="size the web server instead: measure each workersxthreads (e.g. 2x2 2x4)",
    )
    parser.add_argument("--sweep-seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    command = "make bench-smoke" if args.smoke else "make bench"

    sup = devrun.Supervisor(env=devrun.child_env())
    data_dir = Path(tempfile.mkdtemp(prefix="wartiket-bench-"))
    started = time.monotonic()
    try:
        with devrun.servers(sup, data_dir, durable=True):
            env = bench_env(sup.env)
            os.environ.update(env)
            import django

            django.setup()
            if args.sweep:
                configs = [tuple(int(n) for n in spec.lower().split("x")) for spec in args.sweep]
                rows = sweep(env, data_dir, configs, args.sweep_seconds)
                for row in rows:
                    say(
                        f"{row['workers']}x{row['threads']}: ceiling {row['ceiling']['rps']:,.0f} req/s "
                        f"(p99 {row['ceiling']['latency']['p99_ms']} ms), sold out {row['sold_out']['rps']:,.0f} "
                        f"req/s (p99 {row['sold_out']['latency']['p99_ms']} ms, {row['sold_out']['ratio']:.0%})"
                    )
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
                return 0
            result = measure(sizes, env, data_dir)
            result["machine"] = machine()
    except devrun.RunnerError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    result["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    result["duration_s"] = round(time.monotonic() - started, 1)
    result["command"] = command
    print()
    print(table(result))
    print()
    print("\n".join(reading(result)))
    print()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))
    if not args.smoke and not args.no_docs:
        write_entry(result, command)
        say(f"entry appended to {BENCHMARKS_MD.relative_to(REPO)}")
    if not result["exact"]:
        say("NOT EXACT: see the storm rows above")
        return 1
    return 0
