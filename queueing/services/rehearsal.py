"""Rehearsing a war against a running server: what ``simulate_war`` and ``make bench`` are made of.

Three parts, in this order below:

1. Setup and clean-up in PostgreSQL and Redis: rehearsal buyers (``User.is_rehearsal``) with fresh API
   tokens made in bulk, and rehearsal slots at their own location (``latihan``), so ``cleanup`` can
   remove both with their tickets and Redis keys without touching a real buyer.
2. The load generator. It runs in forked OS processes, each an asyncio loop with its own keep-alive
   HTTP/1.1 connections, and never touches Django or the database. The HTTP client is a small raw
   one: measured here, aiohttp's client burns about twice the CPU per request, and on a 2-core
   machine every cycle the client burns is taken from the server it is measuring. WebSocket viewers
   use aiohttp (they receive far more than they send).
3. The report: outcomes, throughput, latencies, sell-out and viewer times, all on the server's clock
   (Redis TIME), and the exactness audit against PostgreSQL (``audit.exactness_violations``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import math
import multiprocessing
import os
import ssl
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken, User, person_key
from accounts.services import identity
from accounts.validators import make_nik
from queueing.models import Location, Slot, Ticket
from queueing.services import audit, catalog, clock, quota, reservations
from queueing.services.errors import ReservationError
from queueing.services.store import datetime_to_ms, slot_keys
from wartiket.redis_client import get_redis

REHEARSAL_LOCATION = "latihan"
REHEARSAL_LOCATION_NAME = "Latihan war (rehearsal)"
TOKEN_NAME = "rehearsal"  # noqa: S105 (the tokens' label, not a secret)
# Rehearsal NIKs live in one made-up regency code; any real NIK already taken is skipped anyway.
NIK_REGION = "947199"
# The opening of a rehearsal slot stays this far away until the viewers are connected.
PARKED_OPENING = datetime.timedelta(hours=1)


# --- 1. Setup and clean-up --------------------------------------------------------------------------


@dataclass(frozen=True)
class Buyer:
    user_id: int
    token: str


def _rehearsal_nik(index: int) -> str:
    # 9,999 serials per birth date; successive dates give room for as many buyers as anyone rehearses.
    birth = datetime.date(1960, 1, 1) + datetime.timedelta(days=index // 9999)
    return make_nik(index % 9999 + 1, region=NIK_REGION, birth=birth)


def _free_niks(count: int) -> list[str]:
    found: list[str] = []
    index = 0
    while len(found) < count:
        batch = [_rehearsal_nik(i) for i in range(index, index + count - len(found) + 100)]
        index += len(batch)
        taken = set(User.objects.filter(nik__in=batch).values_list("nik", flat=True))
        found += [nik for nik in batch if nik not in taken]
    return found[:count]


def prepare_buyers(count: int, *, warm: bool = True) -> list[Buyer]:
    """``count`` rehearsal buyers (reused when they exist), each with one fresh API token.

    Raw token keys are never stored, so every run replaces the buyers' rehearsal tokens. With ``warm``,
    the identity cache is filled as a buyer's own earlier visits would have filled it, so the storm
    measures the war, not first-sight PostgreSQL lookups (``--cold`` in ``simulate_war`` skips this).
    """
    ids = list(User.objects.filter(is_rehearsal=True).order_by("id").values_list("id", flat=True)[:count])
    missing = count - len(ids)
    if missing > 0:
        first = User.objects.filter(is_rehearsal=True).count()
        new = User.objects.bulk_create(
            User(
                email=f"latihan-{first + i:06d}-{os.urandom(3).hex()}@rehearsal.invalid",
                full_name=f"Pembeli Latihan {first + i + 1}",
                password="!",  # noqa: S106 (unusable: rehearsal buyers never log in, they hold tokens)
                nik=nik,
                is_rehearsal=True,
            )
            for i, nik in enumerate(_free_niks(missing))
        )
        ids += [user.pk for user in new]
    users = User.objects.in_bulk(ids)
    # A queryset delete still fires the signal that drops each old token from the identity cache.
    ApiToken.objects.filter(user_id__in=ids, name=TOKEN_NAME).delete()
    built = [ApiToken.build(users[user_id], name=TOKEN_NAME) for user_id in ids]
    ApiToken.objects.bulk_create([token for token, _raw in built])
    buyers = [Buyer(token.user_id, raw) for token, raw in built]
    if warm:
        for buyer in buyers:
            identity.principal_for_token(buyer.token)
    return buyers


def rehearsal_location() -> Location:
    location, _ = Location.objects.get_or_create(
        slug=REHEARSAL_LOCATION, defaults={"name": REHEARSAL_LOCATION_NAME, "address": "—", "is_rehearsal": True}
    )
    if not location.is_rehearsal:
        # Made before the flag existed (or unticked in admin): its slots fall on real war days, so hide it.
        Location.objects.filter(pk=location.pk).update(is_rehearsal=True)
        location.is_rehearsal = True
    return location


def _busy_days() -> set[datetime.date]:
    """War days a new rehearsal slot must avoid: one ticket per person per day would refuse the buyers."""
    days = set(Slot.objects.filter(location__slug=REHEARSAL_LOCATION).values_list("date", flat=True))
    days |= set(
        Ticket.objects.filter(user__is_rehearsal=True, status__in=Ticket.HOLDING).values_list("slot__date", flat=True)
    )
    return days


def create_slot(quota_size: int, *, time_label: str = "10:00") -> Slot:
    """A rehearsal slot on a day no rehearsal has used, its opening parked an hour away (see ``open_in``)."""
    busy = _busy_days()
    day = timezone.localdate() + datetime.timedelta(days=1)
    while day in busy:
        day += datetime.timedelta(days=1)
    slot = Slot.objects.create(
        location=rehearsal_location(),
        date=day,
        time_label=time_label,
        quota=quota_size,
        war_opens_at=clock.redis_now() + PARKED_OPENING,
    )
    quota.sync_all([slot])
    return slot


def open_in(slot: Slot, seconds: float) -> Slot:
    """Move a rehearsal slot's opening to ``seconds`` from now by the server clock (Redis TIME)."""
    slot.war_opens_at = clock.redis_now() + datetime.timedelta(seconds=seconds)
    slot.save(update_fields=["war_opens_at"])
    quota.sync_all([slot])
    return slot


@dataclass
class CleanupSummary:
    buyers: int = 0
    tickets: int = 0
    slots: int = 0
    released: int = 0


def cleanup() -> CleanupSummary:
    """Remove every rehearsal buyer with their tokens and tickets, and every rehearsal slot.

    Tickets rehearsal buyers took on real slots (``simulate_war --slot``) are cancelled through the
    reservation service first, so their seats go back to real buyers in Redis too.
    """
    summary = CleanupSummary()
    own_slots = list(Slot.objects.filter(location__slug=REHEARSAL_LOCATION))
    foreign = Ticket.objects.filter(user__is_rehearsal=True, status=Ticket.Status.ACTIVE).exclude(
        slot__location__slug=REHEARSAL_LOCATION
    )
    for user_id, code in foreign.values_list("user_id", "code"):
        try:
            reservations.cancel(user_id, code)
            summary.released += 1
        except ReservationError:
            pass  # already cancelled or checked in meanwhile: its seat is not ours to give back
    rehearsal_users = list(User.objects.filter(is_rehearsal=True).values_list("id", "nik"))
    user_ids = [user_id for user_id, _nik in rehearsal_users]
    persons = [person_key(user_id, nik) for user_id, nik in rehearsal_users]
    days = set(Ticket.objects.filter(user_id__in=user_ids).values_list("slot__date", flat=True))
    days |= {slot.date for slot in own_slots}

    r = get_redis()
    pipe = r.pipeline(transaction=False)
    for slot in own_slots:
        keys = slot_keys(slot.pk, slot.war_day)
        pipe.delete(keys.slot, keys.free, keys.holders, keys.stats)
    for day in days:
        # The day's person hash is keyed by person, not account (see reserve.lua).
        for start in range(0, len(persons), 1000):
            chunk = persons[start : start + 1000]
            if chunk:
                pipe.hdel(slot_keys(0, day.isoformat()).day, *chunk)
    pipe.execute()

    with transaction.atomic():
        summary.tickets = Ticket.objects.filter(user_id__in=user_ids).delete()[0]
        summary.tickets += Ticket.objects.filter(slot__in=own_slots).delete()[0]
        summary.slots = Slot.objects.filter(pk__in=[s.pk for s in own_slots]).delete()[0]
        Location.objects.filter(slug=REHEARSAL_LOCATION).delete()
        # The per-object delete signals drop every cached identity (identity.forget_*).
        summary.buyers = User.objects.filter(pk__in=user_ids).delete()[1].get(User._meta.label, 0)
    catalog.rebuild()
    return summary


# --- 2. The load generator (forked processes; no Django, no database) ------------------------------


@dataclass(frozen=True)
class Target:
    """Where the server is: ``http(s)://host:port/prefix``."""

    scheme: str
    host: str
    port: int
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return cls(
            parts.scheme,
            parts.hostname,
            parts.port or (443 if parts.scheme == "https" else 80),
            parts.path.rstrip("/"),
        )

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"

    def url(self, path: str, *, websocket: bool = False) -> str:
        scheme = ("wss" if self.scheme == "https" else "ws") if websocket else self.scheme
        return f"{scheme}://{self.host_header}{self.prefix}{path}"


def http_request(target: Target, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {target.prefix}{path} HTTP/1.1", f"Host: {target.host_header}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ServerUnreachable(Exception):
    """No War Tiket Engine answers at the rehearsal's URL: nothing was created, nothing was sent."""


def check_server(target: Target, headers: dict[str, str], *, timeout: float = 5.0) -> None:
    """One ``GET /api/time`` before anything is created: a rehearsal against nothing proves nothing.

    Without it, a closed port gave N refused connections, a "throughput" computed from failures, "EXACT:
    0 tickets", exit 0, and a rehearsal slot left behind.
    """
    import http.client

    cls = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    conn = cls(target.host, target.port, timeout=timeout)
    url = target.url("/api/time")
    try:
        conn.request("GET", f"{target.prefix}/api/time", headers=headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        raise ServerUnreachable(
            f"nothing answers GET {url} ({type(exc).__name__}: {exc}): start the server (`make run`) or pass --url"
        ) from None
    finally:
        conn.close()
    if response.status in (301, 302, 307, 308):
        raise ServerUnreachable(
            f"GET {url} was redirected to {response.getheader('Location')}: with DEBUG off the server wants "
            "https; pass --header 'X-Forwarded-Proto: https' when no proxy is in front, or an https --url"
        )
    try:
        json.loads(body)["epoch_ms"]
    except (ValueError, KeyError, TypeError):
        raise ServerUnreachable(
            f"GET {url} answered HTTP {response.status} without the server clock: is War Tiket Engine served there?"
        ) from None


class Connection:
    """One keep-alive HTTP/1.1 connection, used by one coroutine at a time."""

    def __init__(self, target: Target):
        self.target = target
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        context = ssl.create_default_context() if self.target.scheme == "https" else None
        self.reader, self.writer = await asyncio.open_connection(self.target.host, self.target.port, ssl=context)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, request: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            fresh = self.writer is None
            if fresh:
                await self._connect()
            try:
                self.writer.write(request)
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.close()
                # A kept-alive connection the server closed while idle fails before the first byte of an
                # answer: the request never reached the application, so it goes once more on a new one.
                partial = getattr(exc, "partial", b"")
                if fresh or attempt or partial:
                    raise
                continue
            status, length, chunked, close = _parse_head(head)
            body = await self._read_chunked() if chunked else await self.reader.readexactly(length)
            if close:
                self.close()
            return status, body
        raise ConnectionError("unreachable")  # pragma: no cover (the loop returns or raises)

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(part[:-2] for part in parts)


def _parse_head(head: bytes) -> tuple[int, int, bool, bool]:
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = 0, False, lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    return status, length, chunked, close


def _answer(status: int, body: bytes) -> tuple[str, str | None, int | None]:
    """(code, ticket code, queue number) from a war answer; never raises on a strange body."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"http_{status}", None, None
    if not isinstance(data, dict):
        return f"http_{status}", None, None
    ticket = data.get("ticket") if status in (200, 201) else None
    if isinstance(ticket, dict):
        return str(data.get("code")), ticket.get("code"), ticket.get("queue_number")
    return str(data.get("code", f"http_{status}")), None, None


async def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _bump(counter) -> None:
    if counter is not None:
        with counter.get_lock():
            counter.value += 1


# A result row: (buyer index, sent at (client epoch s), latency s, HTTP status, code, ticket code, number, early)
Shot = tuple[int, float, float, int, str, "str | None", "int | None", bool]
# How long before the opening each connection is made and used once, so it is open (and kept alive) at
# the opening second as a bot's would be. Servers close idle keep-alive connections after a few seconds.
WARM_LEAD_SECONDS = 0.8


@dataclass
class StormJob:
    target: Target
    body: bytes
    headers: dict[str, str]
    attempts: list[tuple[int, str]]  # (buyer index, token) in sending order, all from the opening on
    early: list[tuple[float, int, str]]  # (client epoch, buyer index, token): before the opening
    open_at: float  # client epoch seconds of the opening
    connections: int
    timeout: float = 30.0


async def _storm(job: StormJob, counter) -> list[Shot]:
    def request(token: str) -> bytes:
        return http_request(
            job.target, "POST", "/api/war", {**job.headers, "Authorization": f"Token {token}"}, job.body
        )

    results: list[Shot] = []
    prepared = [(index, request(token)) for index, token in job.attempts]
    pending = iter(prepared)
    warm = http_request(job.target, "GET", "/api/time", job.headers)

    async def shoot(conn: Connection, index: int, raw: bytes, early: bool) -> None:
        sent = time.time()
        try:
            status, body = await asyncio.wait_for(conn.send(raw), job.timeout)
            code, ticket, number = _answer(status, body)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            conn.close()
            status, code, ticket, number = 0, f"client_error:{type(exc).__name__}", None, None
        results.append((index, sent, time.time() - sent, status, code, ticket, number, early))
        _bump(counter)

    async def connection_loop() -> None:
        conn = Connection(job.target)
        await _sleep_until(job.open_at - WARM_LEAD_SECONDS)
        try:
            await asyncio.wait_for(conn.send(warm), job.timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            conn.close()  # reconnects on its first real request
        await _sleep_until(job.open_at)
        # One shared iterator: whichever connection is free takes the next attempt (single thread, no lock).
        for index, raw in pending:
            await shoot(conn, index, raw, False)
        conn.close()

    async def early_shot(at: float, index: int, token: str) -> None:
        await _sleep_until(at)
        conn = Connection(job.target)
        await shoot(conn, index, request(token), True)
        conn.close()

    await asyncio.gather(
        *(connection_loop() for _ in range(max(1, job.connections))),
        *(early_shot(at, index, token) for at, index, token in job.early),
    )
    return results


@dataclass
class SteadyJob:
    """Closed loop for ``duration`` seconds: each connection sends the next request as soon as answered."""

    target: Target
    requests: list[bytes]  # cycled; each connection starts at its own offset
    start_at: float
    duration: float
    connections: int
    timeout: float = 30.0


async def _steady(job: SteadyJob, counter) -> dict:
    statuses: Counter = Counter()
    codes: Counter = Counter()
    latencies: list[float] = []
    end = job.start_at + job.duration

    async def loop(offset: int) -> None:
        conn = Connection(job.target)
        i = offset
        await _sleep_until(job.start_at)
        while time.time() < end:
            raw = job.requests[i % len(job.requests)]
            i += 1
            sent = time.time()
            try:
                status, body = await asyncio.wait_for(conn.send(raw), job.timeout)
                code = _answer(status, body)[0]
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                conn.close()
                status, code = 0, f"client_error:{type(exc).__name__}"
            latencies.append(time.time() - sent)
            statuses[status] += 1
            codes[code] += 1
            _bump(counter)
        conn.close()

    step = max(1, len(job.requests) // max(1, job.connections))
    await asyncio.gather(*(loop(n * step) for n in range(max(1, job.connections))))
    return {"statuses": statuses, "codes": codes, "latencies": latencies}


@dataclass
class ViewerJob:
    """``count`` WebSocket viewers of one slot; each notes when it first sees ``remaining == 0``."""

    url: str
    origin: str
    count: int
    connect_parallel: int = 10
    timeout: float = 30.0


# A viewer row: (connected, first saw 0 at (client epoch s) or None, messages after the opening, error)
ViewerRow = tuple[bool, "float | None", int, "str | None"]


async def _viewers(job: ViewerJob, connected, zeroed, stop, open_at, settled) -> list[ViewerRow]:
    import aiohttp

    rows: list[list] = [[False, None, 0, None] for _ in range(job.count)]
    gate = asyncio.Semaphore(job.connect_parallel)
    timeout = aiohttp.ClientTimeout(total=None, connect=job.timeout, sock_connect=job.timeout)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def watch(row: list) -> None:
            try:
                # Viewers of a real war arrive over minutes, not all in one instant: connecting them a few at
                # a time keeps the handshake burst out of what this measures (the storm and the fan-out).
                async with gate:
                    ws = await session.ws_connect(job.url, origin=job.origin, autoping=True)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                row[3] = f"connect: {type(exc).__name__}"
                _bump(settled)
                return
            row[0] = True
            _bump(connected)
            _bump(settled)
            try:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = time.time()
                    if now >= open_at.value:
                        row[2] += 1
                    if row[1] is None and json.loads(message.data).get("remaining") == 0:
                        row[1] = now
                        _bump(zeroed)
                if row[1] is None and ws.close_code not in (None, 1000):
                    row[3] = f"closed: {ws.close_code}"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                row[3] = f"receive: {type(exc).__name__}"
            finally:
                await ws.close()

        tasks = [asyncio.create_task(watch(row)) for row in rows]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [tuple(row) for row in rows]


def _child(queue, fn, args) -> None:
    queue.put(fn(*args))


class Workers:
    """Forked processes running one asyncio job each; results come back through a queue.

    Forked, not spawned: the parent has Django loaded and the children need none of it, and a fork
    starts in milliseconds. Children never touch the parent's database or Redis connections.
    """

    def __init__(self):
        self.ctx = multiprocessing.get_context("fork")
        self.queue = self.ctx.Queue()
        self.procs: list = []

    def counter(self):
        return self.ctx.Value("i", 0)

    def event(self):
        return self.ctx.Event()

    def start(self, fn: Callable, args: tuple) -> None:
        proc = self.ctx.Process(target=_child, args=(self.queue, fn, args), daemon=True)
        proc.start()
        self.procs.append(proc)

    def results(self, poll: Callable[[], None] | None = None, timeout: float = 600.0) -> list:
        """Every child's result (in completion order); ``poll`` runs between waits (progress bars)."""
        import queue as queue_module

        out = []
        deadline = time.monotonic() + timeout
        while len(out) < len(self.procs):
            try:
                out.append(self.queue.get(timeout=0.1))
            except queue_module.Empty:
                if poll:
                    poll()
                if time.monotonic() > deadline:
                    raise TimeoutError("load generator processes did not finish") from None
                if all(not p.is_alive() for p in self.procs) and self.queue.empty():
                    raise RuntimeError("a load generator process died without a result") from None
        for proc in self.procs:
            proc.join(5)
        self.procs = []
        return out

    def stop(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
        self.procs = []


def run_storm_job(job: StormJob, counter) -> list[Shot]:
    return asyncio.run(_storm(job, counter))


def run_steady_job(job: SteadyJob, counter) -> dict:
    return asyncio.run(_steady(job, counter))


def run_viewer_job(job: ViewerJob, connected, zeroed, stop, open_at, settled) -> list[ViewerRow]:
    return asyncio.run(_viewers(job, connected, zeroed, stop, open_at, settled))


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


def share(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# --- 3. Clock, report and audit ----------------------------------------------------------------------


def clock_offset_ms(samples: int = 5) -> float:
    """Server clock (Redis TIME) minus this machine's clock, from the sample with the shortest round trip."""
    best = None
    for _ in range(samples):
        before = time.time() * 1000
        server = clock.redis_now_ms()
        after = time.time() * 1000
        if best is None or after - before < best[0]:
            best = (after - before, server - (before + after) / 2)
    return best[1]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_summary(latencies_s: Iterable[float]) -> dict:
    ms = [v * 1000 for v in latencies_s]
    return {
        "p50_ms": _round(percentile(ms, 50)),
        "p90_ms": _round(percentile(ms, 90)),
        "p99_ms": _round(percentile(ms, 99)),
        "max_ms": _round(max(ms) if ms else None),
    }


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


@dataclass
class RunInfo:
    """What was asked for, and the clock facts the report needs."""

    url: str
    users: int
    attempts_per_user: int
    concurrency: int
    processes: int
    early: int
    viewers: int
    offset_ms: float  # server clock minus client clock
    viewers_stopped_at: float | None = None  # client epoch
    tickets_before: int = 0  # holding tickets on the slot before the first request (an existing --slot)
    extra: dict = field(default_factory=dict)


def build_report(slot: Slot, shots: list[Shot], viewer_rows: list[ViewerRow], info: RunInfo) -> dict:
    """The rehearsal's report, every figure on the server's clock, with the exactness audit."""
    slot.refresh_from_db()
    opens_ms = datetime_to_ms(slot.war_opens_at)
    storm = [s for s in shots if not s[7]]
    outcomes = Counter(s[4] for s in shots)
    # A buyer is told about a ticket by a 201, and by a 200 ("already yours") on a retry.
    acknowledged = sorted(
        {audit.Acknowledged(s[5], s[6]) for s in shots if s[3] in (200, 201) and s[5]},
        key=lambda a: (a.queue_number, a.code),
    )

    def server_ms(client_epoch_s: float) -> float:
        return client_epoch_s * 1000 + info.offset_ms

    throughput = None
    answered_storm = [s for s in storm if s[3] != 0]  # refused connections and timeouts are not throughput
    if answered_storm:
        first = min(s[1] for s in answered_storm)
        last = max(s[1] + s[2] for s in answered_storm)
        throughput = len(answered_storm) / max(last - first, 1e-6)

    tickets = list(
        Ticket.objects.filter(slot=slot, status__in=Ticket.HOLDING)
        .order_by("reserved_at")
        .values_list("reserved_at", "created_at", "user__is_rehearsal")
    )
    reserved_ms = sorted(datetime_to_ms(t[0]) - opens_ms for t in tickets)
    committed_ms = sorted(datetime_to_ms(t[1]) - opens_ms for t in tickets)
    sold_out = len(tickets) >= slot.quota
    sellout_server_ms = opens_ms + reserved_ms[-1] if sold_out and reserved_ms else None

    viewers = _viewer_summary(viewer_rows, info, opens_ms, sellout_server_ms, server_ms)
    violations = audit.exactness_violations(
        slot,
        acknowledged,
        expect_sold_out=outcomes["sold_out"] > 0,
        all_answers_seen=not any(s[3] == 0 for s in shots),
        rehearsal_only=True,
    )
    shortfall = _shortfall(slot, shots, len(tickets), info)
    violations += _verdicts(shots, shortfall, info)
    latency_rows = _latency_timeline(storm, opens_ms, server_ms)
    return {
        "slot": {
            "id": slot.pk,
            "name": str(slot),
            "quota": slot.quota,
            "opens_at": slot.war_opens_at.isoformat(),
            "location": slot.location.slug,
            "date": slot.date.isoformat(),
            "time_slot": slot.time_label,
        },
        "run": {
            "url": info.url,
            "users": info.users,
            "attempts_per_user": info.attempts_per_user,
            "concurrency": info.concurrency,
            "processes": info.processes,
            "early": info.early,
            "viewers": info.viewers,
            "clock_offset_ms": round(info.offset_ms, 1),
            **info.extra,
        },
        "requests": len(shots),
        "outcomes": dict(outcomes.most_common()),
        "statuses": {str(k): v for k, v in sorted(Counter(s[3] for s in shots).items())},
        "throughput_rps": _round(throughput),
        "latency": latency_summary(s[2] for s in answered_storm),
        "database": {
            "tickets": len(tickets),
            "rehearsal_tickets": sum(1 for t in tickets if t[2]),
            "sold_out": sold_out,
            "open_to_sold_out_ms": reserved_ms[-1] if sold_out and reserved_ms else None,
            "open_to_last_commit_ms": committed_ms[-1] if sold_out and committed_ms else None,
            "first_ticket_after_open_ms": reserved_ms[0] if reserved_ms else None,
        },
        "viewers": viewers,
        "shortfall": shortfall,
        "acknowledged": [{"code": a.code, "queue_number": a.queue_number} for a in acknowledged],
        "exact": not violations,
        "violations": violations,
        "timeline": {"reserved_ms": reserved_ms, "committed_ms": committed_ms, "buckets": latency_rows},
    }


# Refusals that explain why a buyer got no ticket while seats were left: the server decided so, on
# purpose, and the report says which. Anything else (no answer, 5xx, unavailable, not_ready, too_early
# after the opening) leaves the shortfall unexplained and the rehearsal failed.
EXPLAINED_REFUSALS = frozenset({"sold_out", "rate_limited", "one_per_day", "nik_required", "closed"})


def _shortfall(slot: Slot, shots: list[Shot], tickets: int, info: RunInfo) -> dict:
    """How many tickets the rehearsal should have produced, and why the buyers without one got none."""
    expected = min(slot.quota, info.tickets_before + info.users)
    with_ticket = {s[0] for s in shots if s[3] in (200, 201) and s[5]}
    last: dict[int, Shot] = {}
    for shot in sorted(shots, key=lambda s: s[1]):
        last[shot[0]] = shot
    reasons = Counter(
        last[index][4] if index in last else "never_sent" for index in range(info.users) if index not in with_ticket
    )
    missing = max(0, expected - tickets)
    unexplained = {code: n for code, n in reasons.items() if code not in EXPLAINED_REFUSALS}
    return {
        "expected_tickets": expected,
        "missing": missing,
        "buyers_without_ticket": dict(reasons.most_common()),
        "explained": missing == 0 or not unexplained,
    }


def _verdicts(shots: list[Shot], shortfall: dict, info: RunInfo) -> list[str]:
    """Ways the rehearsal itself failed (on top of the exactness audit): it proved nothing."""
    problems = []
    if shots and all(s[3] == 0 for s in shots):
        codes = Counter(s[4] for s in shots)
        problems.append(
            f"no attempt got an answer from {info.url}: "
            + ", ".join(f"{n} x {code}" for code, n in codes.most_common())
        )
    elif not shortfall["explained"]:
        reasons = ", ".join(f"{n} x {code}" for code, n in shortfall["buyers_without_ticket"].items())
        problems.append(
            f"{shortfall['missing']} ticket(s) short of the {shortfall['expected_tickets']} possible "
            f"(the quota or the number of buyers, whichever is smaller), and not explained by refusals; "
            f"the last answers of the buyers without a ticket: {reasons}"
        )
    return problems


def _viewer_summary(rows, info: RunInfo, opens_ms, sellout_server_ms, server_ms) -> dict:
    if not rows:
        return {"watching": 0}
    connected = [r for r in rows if r[0]]
    zeros = [server_ms(r[1]) for r in connected if r[1] is not None]
    window_s = None
    if info.viewers_stopped_at is not None:
        window_s = max((server_ms(info.viewers_stopped_at) - opens_ms) / 1000, 1e-3)
    errors = Counter(r[3] for r in rows if r[3])
    return {
        "watching": len(rows),
        "connected": len(connected),
        "saw_zero": len(zeros),
        "last_saw_zero_after_sell_out_ms": _round(max(zeros) - sellout_server_ms)
        if zeros and sellout_server_ms and len(zeros) == len(connected)
        else None,
        "last_saw_zero_after_open_ms": _round(max(zeros) - opens_ms) if zeros else None,
        "messages_per_viewer_per_second": _round(sum(r[2] for r in connected) / len(connected) / window_s, 2)
        if connected and window_s
        else None,
        "errors": dict(errors.most_common(5)),
    }


def _latency_timeline(storm: list[Shot], opens_ms: float, server_ms, bucket_ms: int = 100) -> list[list]:
    """Per bucket of time since the opening: [start ms, requests sent, p50, p90, p99 of their latencies,
    {outcome: answers that arrived in the bucket}]. Every bucket from the opening to the last answer is
    present, empty ones too, so a plot of them shows pauses as pauses."""
    sent: dict[int, list[float]] = {}
    answered: dict[int, Counter] = {}
    for shot in storm:
        sent_at = server_ms(shot[1]) - opens_ms
        sent.setdefault(int(sent_at // bucket_ms), []).append(shot[2] * 1000)
        answered.setdefault(int((sent_at + shot[2] * 1000) // bucket_ms), Counter())[shot[4]] += 1
    if not sent:
        return []
    rows = []
    for index in range(min([0, *sent]), max([*sent, *answered]) + 1):
        ms = sent.get(index, [])
        rows.append(
            [
                index * bucket_ms,
                len(ms),
                _round(percentile(ms, 50)),
                _round(percentile(ms, 90)),
                _round(percentile(ms, 99)),
                dict(answered.get(index, {})),
            ]
        )
    return rows


def reaudit(report: dict) -> list[str]:
    """Check a saved report (``simulate_war --json``) against PostgreSQL as it is now."""
    slot = Slot.objects.select_related("location").get(pk=report["slot"]["id"])
    acknowledged = [audit.Acknowledged(a["code"], a["queue_number"]) for a in report["acknowledged"]]
    return audit.exactness_violations(
        slot,
        acknowledged,
        expect_sold_out=report["outcomes"].get("sold_out", 0) > 0,
        all_answers_seen=not any(code.startswith("client_error") for code in report["outcomes"]),
        rehearsal_only=True,
        reported_tickets=report["database"]["tickets"],
    )


# --- 4. The whole rehearsal ---------------------------------------------------------------------------


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


def rehearse(plan: Plan, progress: Progress | None = None) -> dict:
    """Run one rehearsal end to end and return its report (see ``build_report``)."""
    import random

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
        slot = create_slot(plan.quota)
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
        attempts = [(i, b.token) for i, b in enumerate(buyers) for _ in range(plan.attempts_per_user)]
        rng.shuffle(attempts)
        now = time.time()
        window = max(0.0, open_at - now - 0.4)
        early = [
            (now + 0.2 + rng.random() * window, i, buyers[i].token)
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


# --- 5. The figure ------------------------------------------------------------------------------------


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

    buckets = timeline["buckets"]
    xs = [row[0] / 1000 for row in buckets]
    outcomes = sorted({code for row in buckets for code in row[5]})
    for code in outcomes:
        middle.step(xs, [row[5].get(code, 0) * 1000 / bucket_ms for row in buckets], where="post", label=code)
    middle.set_ylabel("answers/s")
    middle.set_title(f"Answers per second by outcome (per {bucket_ms} ms, by arrival)", fontsize=10)
    if outcomes:
        middle.legend(loc="upper right", fontsize=8)

    for index, label in ((2, "p50"), (3, "p90"), (4, "p99")):
        points = [(x, row[index]) for x, row in zip(xs, buckets, strict=True) if row[index] is not None]
        bottom.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
    bottom.set_ylabel("latency (ms, by send time)")
    bottom.set_xlabel("seconds since the war opened (server clock)")
    bottom.set_title("Latency percentiles over time", fontsize=10)
    bottom.legend(loc="upper right", fontsize=8)
    for axis in (top, middle, bottom):
        axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
