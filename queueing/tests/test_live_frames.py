"""Live quota under daphne: a pushed state goes straight to the viewer's socket as a frame prepared once.

Built on daphne's and autobahn's real objects (daphne's ``Server.create_application`` hands the consumer its
``send``; an autobahn protocol writes into Twisted's ``StringTransport``), so a daphne upgrade that changes
either shape fails here instead of silently sending every frame the slow way. End to end through a real
daphne, viewers seeing the final 0 is covered by test_simulate_war and the browser tests.
"""

from __future__ import annotations

import asyncio

import pytest
from daphne.server import Server
from daphne.ws_protocol import WebSocketFactory
from twisted.internet.testing import StringTransport

from queueing.consumers import SlotConsumer, _daphne_socket
from queueing.services.fanout import Frame

STATE = '{"slot":7,"state":"sold_out","remaining":0,"note":"habis — é"}'


def daphne_socket():
    """An open daphne WebSocket writing into a StringTransport, and the ASGI ``send`` daphne gives its app."""
    given = {}

    async def app(scope, receive, send):
        given["send"] = send

    server = Server(application=app, endpoints=["tcp:port=0"])  # nothing listens until run()
    protocol = WebSocketFactory(server).buildProtocol(("127.0.0.1", 1))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.state = protocol.STATE_OPEN  # as after the handshake

    async def start():
        server.connections = {protocol: {}}
        server.create_application(protocol, {"type": "websocket"})
        await asyncio.sleep(0)

    asyncio.run(start())
    return protocol, transport, given["send"]


def test_daphnes_send_leads_to_its_socket_and_nothing_else_does():
    protocol, _transport, send = daphne_socket()
    assert _daphne_socket(send) is protocol

    async def other_send(message):  # Channels' test communicator, another ASGI server
        pass

    assert _daphne_socket(other_send) is None


@pytest.mark.parametrize("text", [STATE, '{"pad":"' + "x" * 70_000 + '"}'], ids=["short", "long length field"])
def test_a_prepared_frame_is_byte_for_byte_what_daphne_would_have_written(text):
    protocol, transport, _send = daphne_socket()
    protocol.sendMessage(text.encode())  # daphne's own path for a text message
    expected = transport.value()
    transport.clear()
    protocol.sendPreparedMessage(Frame(text).prepared(protocol))
    assert transport.value() == expected
    assert expected.endswith(text.encode())


def test_a_push_writes_the_frame_once_per_new_version_and_never_to_a_closed_socket():
    protocol, transport, send = daphne_socket()
    consumer = SlotConsumer()
    consumer.version = 4
    consumer.socket = _daphne_socket(send)
    frame = Frame(STATE)
    protocol.sendMessage(STATE.encode())
    one_frame = transport.value()
    transport.clear()

    asyncio.run(consumer.push(5, frame))
    assert transport.value() == one_frame
    asyncio.run(consumer.push(5, frame))  # the same version again (a resync): not sent twice
    asyncio.run(consumer.push(3, frame))  # an older one: never
    assert transport.value() == one_frame

    protocol.state = protocol.STATE_CLOSED
    asyncio.run(consumer.push(6, frame))  # the viewer left meanwhile: nothing written, no error
    assert transport.value() == one_frame
