"""The load generator's raw HTTP/1.1 client, on real response bytes: no server, no database.

``Connection.send`` reads from an ``asyncio.StreamReader`` fed with the bytes a server would send;
the writer is a stand-in that records what the client wrote and whether it closed.
"""

from __future__ import annotations

import ast
import asyncio
import json
import pickle
from pathlib import Path

import pytest

from queueing.services.rehearsal import load
from queueing.services.rehearsal.load import Answer, Connection, Head, Shot, Target, ViewerRow, _answer, _parse_head
from queueing.services.rehearsal.report import Bucket, _latency_timeline


def test_a_content_length_head_is_kept_alive():
    head = b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 57\r\n\r\n"
    assert _parse_head(head) == Head(status=201, length=57, chunked=False, close=False)


def test_header_names_and_values_are_read_case_insensitively_with_spaces():
    head = b"HTTP/1.1 409 Conflict\r\ncontent-length:  12 \r\nCONNECTION:  Close\r\n\r\n"
    assert _parse_head(head) == Head(409, 12, chunked=False, close=True)


def test_a_chunked_head_and_a_connection_close():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nConnection: close\r\n\r\n"
    assert _parse_head(head) == Head(200, 0, chunked=True, close=True)


def test_http_1_0_closes_unless_told_otherwise_and_a_reason_phrase_may_be_missing():
    assert _parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n").close is True
    assert _parse_head(b"HTTP/1.1 204\r\n\r\n") == Head(204, 0, chunked=False, close=False)
    assert _parse_head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\n").close is False


def test_a_war_answer_names_its_outcome_and_the_ticket_it_told():
    body = json.dumps({"code": "reserved", "ticket": {"code": "ABCD-EFGH-JKLM", "queue_number": 7}}).encode()
    assert _answer(201, body) == Answer("reserved", "ABCD-EFGH-JKLM", 7)
    assert _answer(200, body).ticket == "ABCD-EFGH-JKLM"  # "already yours" on a retry
    # A ticket in anything but 200/201 is not a ticket the buyer was told about.
    assert _answer(409, body) == Answer("reserved", None, None)
    assert _answer(409, b'{"code": "sold_out"}') == Answer("sold_out")


def test_a_strange_body_becomes_an_http_code_and_never_raises():
    assert _answer(502, b"<html>Bad Gateway</html>") == Answer("http_502")
    assert _answer(200, b"[1, 2]") == Answer("http_200")
    assert _answer(500, b"") == Answer("http_500")
    assert _answer(429, b"{}") == Answer("http_429")
    assert _answer(200, b'{"code": "reserved", "ticket": "not a dict"}') == Answer("reserved")


class FakeWriter:
    def __init__(self):
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def connection_reading(*responses: bytes, eof: bool = False) -> tuple[Connection, FakeWriter]:
    """A connection as if open, its server's bytes already arrived (call inside the running loop)."""
    conn = Connection(Target.parse("http://127.0.0.1:1"))
    conn.reader, conn.writer = reader_of(*responses, eof=eof), FakeWriter()
    return conn, conn.writer


def reader_of(*responses: bytes, eof: bool = False) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(b"".join(responses))
    if eof:
        reader.feed_eof()
    return reader


def reconnects_to(conn: Connection, *responses: bytes, eof: bool = False) -> FakeWriter:
    """Stand in for ``Connection._connect``: the next connection gets these bytes."""
    fresh = FakeWriter()

    async def connect():
        conn.reader, conn.writer = reader_of(*responses, eof=eof), fresh

    conn._connect = connect
    return fresh


def run(scenario) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 5))


def test_content_length_bodies_back_to_back_on_one_kept_alive_connection():
    async def scenario():
        conn, writer = connection_reading(
            b'HTTP/1.1 201 Created\r\nContent-Length: 20\r\n\r\n{"code": "reserved"}',
            b'HTTP/1.1 409 Conflict\r\nContent-Length: 20\r\n\r\n{"code": "sold_out"}',
        )
        assert await conn.send(b"A") == (201, b'{"code": "reserved"}')
        assert await conn.send(b"B") == (409, b'{"code": "sold_out"}')
        assert writer.written == b"AB" and not writer.closed and conn.writer is writer

    run(scenario)


def test_a_chunked_body_is_joined_and_size_line_extensions_are_ignored():
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'7\r\n{"code"\r\n'
        b'd;ext=1\r\n: "too_early"\r\n'
        b"1\r\n}\r\n"
        b"0\r\n\r\n"
    )

    async def scenario():
        conn, writer = connection_reading(chunked, b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        status, body = await conn.send(b"A")
        assert (status, json.loads(body)) == (200, {"code": "too_early"})
        # The chunked body ended exactly at its last CRLF: the next answer on the connection reads cleanly.
        assert await conn.send(b"B") == (204, b"")
        assert not writer.closed

    run(scenario)


def test_connection_close_closes_and_the_next_request_reconnects():
    async def scenario():
        conn, writer = connection_reading(
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno"
        )
        assert await conn.send(b"FIRST") == (503, b"no")
        assert writer.closed and conn.writer is None and conn.reader is None
        fresh = reconnects_to(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
        assert await conn.send(b"AGAIN") == (200, b"{}")
        assert fresh.written == b"AGAIN"

    run(scenario)


def test_a_kept_alive_connection_closed_while_idle_is_retried_once_on_a_new_one():
    async def scenario():
        conn, stale = connection_reading(eof=True)  # the server closed it: EOF before any byte of an answer
        fresh = reconnects_to(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert await conn.send(b"REQ") == (200, b"ok")
        assert stale.closed and stale.written == b"REQ" and fresh.written == b"REQ"

    run(scenario)


def test_a_new_connection_closed_at_once_is_not_retried():
    async def scenario():
        conn = Connection(Target.parse("http://127.0.0.1:1"))
        fresh = reconnects_to(conn, eof=True)  # accepted, then closed before an answer
        with pytest.raises(asyncio.IncompleteReadError):
            await conn.send(b"REQ")
        assert conn.writer is None and fresh.closed and fresh.written == b"REQ"

    run(scenario)


def test_an_answer_cut_off_midway_is_not_retried():
    # Part of an answer arrived: the request reached the application, so sending it again could reserve twice.
    async def scenario():
        conn, _ = connection_reading(b"HTTP/1.1 201 Created\r\nContent-Le", eof=True)
        fresh = reconnects_to(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        with pytest.raises(asyncio.IncompleteReadError):
            await conn.send(b"REQ")
        assert conn.writer is None and fresh.written == b""

    run(scenario)


def test_a_body_shorter_than_its_content_length_raises():
    async def scenario():
        conn, _ = connection_reading(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", eof=True)
        with pytest.raises(asyncio.IncompleteReadError):
            await conn.send(b"REQ")

    run(scenario)


def test_requests_carry_host_prefix_and_a_json_body_length():
    target = Target.parse("https://war.example:8443/api-prefix/")
    raw = load.http_request(target, "POST", "/api/war", {"Authorization": "Token t"}, b'{"a": 1}')
    assert raw == (
        b"POST /api-prefix/api/war HTTP/1.1\r\nHost: war.example:8443\r\nAuthorization: Token t\r\n"
        b'Content-Type: application/json\r\nContent-Length: 8\r\n\r\n{"a": 1}'
    )
    assert load.http_request(Target.parse("http://h"), "GET", "/api/time", {}) == (
        b"GET /api/time HTTP/1.1\r\nHost: h\r\n\r\n"
    )


def test_results_cross_process_boundaries_with_their_names():
    shot = Shot(3, 1.5, 0.02, 201, "reserved", "ABCD-EFGH-JKLM", 9, early=False)
    row = ViewerRow(connected=True, saw_zero_at=2.5, messages=4, error=None)
    shot_back, row_back = (pickle.loads(pickle.dumps(x)) for x in (shot, row))  # noqa: S301 (made just above)
    assert shot_back == shot and shot_back.queue_number == 9
    assert row_back == row and row_back.saw_zero_at == 2.5


def test_timeline_buckets_stay_lists_in_json_and_get_their_names_back():
    shots = [
        Shot(0, 10.05, 0.03, 409, "sold_out", None, None, False),
        Shot(1, 10.25, 0.1, 409, "sold_out", None, None, False),
    ]
    buckets = _latency_timeline(shots, 10_000.0, lambda s: s * 1000)
    assert [b.start_ms for b in buckets] == [0, 100, 200, 300]
    assert buckets[0].sent == 1 and buckets[0].p99_ms == 30.0 and buckets[0].answers == {"sold_out": 1}
    assert buckets[1] == Bucket(100, 0, None, None, None, {})  # a pause is a bucket too
    assert buckets[3].answers == {"sold_out": 1}  # by arrival: sent at 250 ms, answered at 350 ms
    read_back = json.loads(json.dumps(buckets))
    assert read_back[0] == [0, 1, 30.0, 30.0, 30.0, {"sold_out": 1}]
    assert [Bucket(*row) for row in read_back] == buckets


def test_the_load_generator_imports_no_django():
    # It runs in forked children that must never touch Django, the database or Redis of the parent.
    tree = ast.parse(Path(load.__file__).read_text())
    imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [node.module or "" for node in imports if isinstance(node, ast.ImportFrom)]
    names += [alias.name for node in imports if isinstance(node, ast.Import) for alias in node.names]
    assert not [name for name in names if name.split(".")[0] in {"django", "accounts", "queueing", "wartiket"}]
    # Nor its siblings (setup and report import Django models).
    assert not [node.module for node in imports if isinstance(node, ast.ImportFrom) and node.level]
