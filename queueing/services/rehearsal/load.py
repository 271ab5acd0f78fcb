"""The load generator: a small raw HTTP/1.1 client, the jobs it runs, and the processes that run them.

It runs in forked OS processes, each an asyncio loop with its own keep-alive HTTP/1.1 connections, and
never touches Django or the database (nothing here imports Django; keep it so). The HTTP client is a
small raw one rather than aiohttp's, because on a 2-core machine every cycle the client burns is taken
from the server it is measuring (the measurement: docs/benchmarks.md, "Why a raw HTTP/1.1 client").
WebSocket viewers use aiohttp (they receive far more than they send).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit


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


class Head(NamedTuple):
    """What the raw client needs from a response head."""

    status: int
    length: int  # Content-Length; 0 when absent (a chunked body ignores it)
    chunked: bool  # Transfer-Encoding: chunked
    close: bool  # the server closes after this answer (Connection: close, or HTTP/1.0)


class Answer(NamedTuple):
    """A war answer's outcome code, and the ticket it told about (201, or 200 on a retry)."""

    code: str
    ticket: str | None = None
    queue_number: int | None = None


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
            parsed = _parse_head(head)
            body = await self._read_chunked() if parsed.chunked else await self.reader.readexactly(parsed.length)
            if parsed.close:
                self.close()
            return parsed.status, body
        raise ConnectionError("unreachable")  # pragma: no cover (the loop returns or raises)

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append(await self.reader.readexactly(size + 2))
            if size == 0:
                return b"".join(part[:-2] for part in parts)


def _parse_head(head: bytes) -> Head:
    """The status line and headers up to and including the blank line (``readuntil(b"\\r\\n\\r\\n")``)."""
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
    return Head(status, length, chunked, close)


def _answer(status: int, body: bytes) -> Answer:
    """The outcome of a war answer; never raises on a strange body."""
    try:
        data = json.loads(body)
    except ValueError:
        return Answer(f"http_{status}")
    if not isinstance(data, dict):
        return Answer(f"http_{status}")
    ticket = data.get("ticket") if status in (200, 201) else None
    if isinstance(ticket, dict):
        return Answer(str(data.get("code")), ticket.get("code"), ticket.get("queue_number"))
    return Answer(str(data.get("code", f"http_{status}")))


async def _sleep_until(moment: float) -> None:
    delay = moment - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _bump(counter) -> None:
    if counter is not None:
        with counter.get_lock():
            counter.value += 1


class Shot(NamedTuple):
    """One war attempt as the load generator saw it (a NamedTuple: it crosses process boundaries)."""

    buyer: int  # index into the rehearsal's buyers
    sent_at: float  # client epoch seconds
    latency: float  # seconds until the whole answer arrived (or the attempt failed)
    status: int  # HTTP status; 0 when no answer came (refused, reset, timed out)
    code: str  # the answer's "code" (reserved, sold_out, ...), http_NNN, or client_error:<exception>
    ticket: str | None  # the ticket code told to the buyer
    queue_number: int | None
    early: bool  # sent before the opening (--early)


class Attempt(NamedTuple):
    buyer: int
    token: str


class EarlyAttempt(NamedTuple):
    at: float  # client epoch seconds
    buyer: int
    token: str


# How long before the opening each connection is made and used once, so it is open (and kept alive) at
# the opening second as a bot's would be. Servers close idle keep-alive connections after a few seconds.
WARM_LEAD_SECONDS = 0.8


@dataclass
class StormJob:
    target: Target
    body: bytes
    headers: dict[str, str]
    attempts: list[Attempt]  # in sending order, all from the opening on
    early: list[EarlyAttempt]  # before the opening
    open_at: float  # client epoch seconds of the opening
    connections: int
    timeout: float = 30.0
    # A buyer told 503 (+ Retry-After) asks again, as the war page does, until a real answer or this many
    # seconds after the opening; each 503 is kept as a Shot of its own (outage tests measure recovery).
    persist: float = 0.0
    persist_every: float = 0.25


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
        while True:
            sent = time.time()
            try:
                status, body = await asyncio.wait_for(conn.send(raw), job.timeout)
                answer = _answer(status, body)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                conn.close()
                status, answer = 0, Answer(f"client_error:{type(exc).__name__}")
            results.append(
                Shot(index, sent, time.time() - sent, status, answer.code, answer.ticket, answer.queue_number, early)
            )
            _bump(counter)
            if status != 503 or time.time() > job.open_at + job.persist:
                return
            await asyncio.sleep(job.persist_every)

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


@dataclass
class SteadyResult:
    """What one steady-load process counted."""

    statuses: Counter = field(default_factory=Counter)  # HTTP status (0: no answer) -> answers
    codes: Counter = field(default_factory=Counter)  # outcome code -> answers
    latencies: list[float] = field(default_factory=list)  # seconds, one per request


async def _steady(job: SteadyJob, counter) -> SteadyResult:
    result = SteadyResult()
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
                code = _answer(status, body).code
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                conn.close()
                status, code = 0, f"client_error:{type(exc).__name__}"
            result.latencies.append(time.time() - sent)
            result.statuses[status] += 1
            result.codes[code] += 1
            _bump(counter)
        conn.close()

    step = max(1, len(job.requests) // max(1, job.connections))
    await asyncio.gather(*(loop(n * step) for n in range(max(1, job.connections))))
    return result


@dataclass
class ViewerJob:
    """``count`` WebSocket viewers of one slot; each notes when it first sees ``remaining == 0``."""

    url: str
    origin: str
    count: int
    connect_parallel: int = 10
    timeout: float = 30.0


class ViewerRow(NamedTuple):
    """One WebSocket viewer, as it ends (a NamedTuple: it crosses process boundaries)."""

    connected: bool
    saw_zero_at: float | None  # client epoch seconds it first saw remaining == 0
    messages: int  # received from the opening on
    error: str | None


@dataclass
class _Viewer:
    """A viewer while it watches (mutable); ``row()`` freezes it."""

    connected: bool = False
    saw_zero_at: float | None = None
    messages: int = 0
    error: str | None = None

    def row(self) -> ViewerRow:
        return ViewerRow(self.connected, self.saw_zero_at, self.messages, self.error)


async def _viewers(job: ViewerJob, connected, zeroed, stop, open_at, settled) -> list[ViewerRow]:
    import aiohttp

    viewers = [_Viewer() for _ in range(job.count)]
    gate = asyncio.Semaphore(job.connect_parallel)
    timeout = aiohttp.ClientTimeout(total=None, connect=job.timeout, sock_connect=job.timeout)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def watch(row: _Viewer) -> None:
            try:
                # Viewers of a real war arrive over minutes, not all in one instant: connecting them a few at
                # a time keeps the handshake burst out of what this measures (the storm and the fan-out).
                async with gate:
                    ws = await session.ws_connect(job.url, origin=job.origin, autoping=True)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                row.error = f"connect: {type(exc).__name__}"
                _bump(settled)
                return
            row.connected = True
            _bump(connected)
            _bump(settled)
            try:
                async for message in ws:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        break
                    now = time.time()
                    if now >= open_at.value:
                        row.messages += 1
                    if row.saw_zero_at is None and json.loads(message.data).get("remaining") == 0:
                        row.saw_zero_at = now
                        _bump(zeroed)
                if row.saw_zero_at is None and ws.close_code not in (None, 1000):
                    row.error = f"closed: {ws.close_code}"
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                row.error = f"receive: {type(exc).__name__}"
            finally:
                await ws.close()

        tasks = [asyncio.create_task(watch(viewer)) for viewer in viewers]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [viewer.row() for viewer in viewers]


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


def run_steady_job(job: SteadyJob, counter) -> SteadyResult:
    return asyncio.run(_steady(job, counter))


def run_viewer_job(job: ViewerJob, connected, zeroed, stop, open_at, settled) -> list[ViewerRow]:
    return asyncio.run(_viewers(job, connected, zeroed, stop, open_at, settled))


def split(items: list, parts: int) -> list[list]:
    return [items[i::parts] for i in range(parts)]


def share(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]
