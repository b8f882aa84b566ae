"""The WebSocket protocol of the original, against a real server with real clients."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import assert_silent, recv_json


def msg(**fields: object) -> str:
    return json.dumps(fields)


async def test_subscribe_sends_current_value(client: Connect) -> None:
    """Subscribing to a key that has a value sends that value at once."""
    async with client() as ws:
        await ws.send(msg(action="set", key="k", value={"a": 1}))
        await ws.send(msg(action="subscribe", key="k"))
        assert await recv_json(ws) == {"key": "k", "value": {"a": 1}}


async def test_subscribe_to_missing_key_sends_nothing(client: Connect) -> None:
    """Subscribing to a key without a value sends no message."""
    async with client() as ws:
        await ws.send(msg(action="subscribe", key="nothing-here"))
        await assert_silent(ws)


async def test_set_reaches_every_subscriber_and_the_sender(client: Connect) -> None:
    """A set is published to all subscribers of the key, the sender too if subscribed."""
    async with client() as a, client() as b, client() as c:
        for ws in (a, b):
            await ws.send(msg(action="subscribe", key="pos"))
        await a.send(msg(action="get", key="pos"))  # a round trip: subscriptions are in place
        await recv_json(a)
        await b.send(msg(action="get", key="pos"))
        await recv_json(b)
        await a.send(msg(action="set", key="pos", value={"x": 100, "y": 200}))
        assert await recv_json(a) == {"key": "pos", "value": {"x": 100, "y": 200}}
        assert await recv_json(b) == {"key": "pos", "value": {"x": 100, "y": 200}}
        await assert_silent(c)


async def test_updates_of_other_keys_are_not_sent(client: Connect) -> None:
    """A subscriber hears only of the keys it subscribed to."""
    async with client() as ws:
        await ws.send(msg(action="subscribe", key="a"))
        await ws.send(msg(action="set", key="b", value=1))
        await assert_silent(ws)


async def test_unsubscribe_stops_updates(client: Connect) -> None:
    """After unsubscribe, sets of the key are no longer sent."""
    async with client() as ws:
        await ws.send(msg(action="subscribe", key="k"))
        await ws.send(msg(action="set", key="k", value=1))
        assert await recv_json(ws) == {"key": "k", "value": 1}
        await ws.send(msg(action="unsubscribe", key="k"))
        await ws.send(msg(action="set", key="k", value=2))
        await assert_silent(ws)


async def test_get_missing_key_replies_null(client: Connect) -> None:
    """get of a key never set replies with a null value."""
    async with client() as ws:
        await ws.send(msg(action="get", key="missing"))
        assert await recv_json(ws) == {"key": "missing", "value": None}


@pytest.mark.parametrize(
    "value", [None, 0, -1.5, "text", True, [], {}, [1, "two", {"three": 3}], "é ✓ 🎮"]
)
async def test_any_json_value_round_trips(client: Connect, value: object) -> None:
    """Any JSON value, null included, is stored and returned unchanged."""
    async with client() as ws:
        await ws.send(msg(action="set", key="v", value=value))
        await ws.send(msg(action="get", key="v"))
        assert await recv_json(ws) == {"key": "v", "value": value}


async def test_keys_are_case_sensitive(client: Connect) -> None:
    """Foo and foo are different keys."""
    async with client() as ws:
        await ws.send(msg(action="set", key="Foo", value=1))
        await ws.send(msg(action="set", key="foo", value=2))
        await ws.send(msg(action="get", key="Foo"))
        assert await recv_json(ws) == {"key": "Foo", "value": 1}
        await ws.send(msg(action="get", key="foo"))
        assert await recv_json(ws) == {"key": "foo", "value": 2}


async def test_root_path_also_accepts_websockets(client: Connect) -> None:
    """ws://host:port without a path works, as in the original's example."""
    async with client("/") as ws:
        await ws.send(msg(action="get", key="x"))
        assert await recv_json(ws) == {"key": "x", "value": None}


async def test_binary_frame_with_json_is_accepted(client: Connect) -> None:
    """A binary frame holding UTF-8 JSON is handled like a text frame."""
    async with client() as ws:
        await ws.send(msg(action="get", key="b").encode())
        assert await recv_json(ws) == {"key": "b", "value": None}


async def test_updates_arrive_in_order(client: Connect) -> None:
    """A subscriber that keeps up sees every update of a key, in order."""
    async with client() as publisher, client() as subscriber:
        await subscriber.send(msg(action="subscribe", key="n"))
        await subscriber.send(msg(action="get", key="n"))
        await recv_json(subscriber)
        for n in range(200):
            await publisher.send(msg(action="set", key="n", value=n))
        received = [(await recv_json(subscriber))["value"] for _ in range(200)]
        assert received == list(range(200))


async def test_many_concurrent_clients(client: Connect) -> None:
    """Fifty clients each set their own key and all receive all fifty updates."""
    count = 50
    clients = [await client().__aenter__() for _ in range(count)]
    try:
        for ws in clients:
            for n in range(count):
                await ws.send(msg(action="subscribe", key=f"player-{n}"))
        for ws in clients:  # a round trip each: every subscription is in place
            await ws.send(msg(action="get", key="sync"))
            await recv_json(ws)
        await asyncio.gather(
            *(
                ws.send(msg(action="set", key=f"player-{n}", value=n))
                for n, ws in enumerate(clients)
            )
        )
        for ws in clients:
            got = {}
            for _ in range(count):
                update = await recv_json(ws)
                got[update["key"]] = update["value"]
            assert got == {f"player-{n}": n for n in range(count)}
    finally:
        for ws in clients:
            await ws.close()


async def test_closed_connection_leaves_no_subscription(
    server: ObjstoreServer, client: Connect
) -> None:
    """When a client goes away, abruptly or not, its subscriptions are removed."""
    async with client() as ws:
        await ws.send(msg(action="subscribe", key="k"))
        await ws.send(msg(action="get", key="k"))
        await recv_json(ws)
        assert server.hub.subscribers("k") == 1
        ws.transport.abort()  # no closing handshake
    for _ in range(100):
        if server.hub.subscribers("k") == 0:
            break
        await asyncio.sleep(0.02)
    assert server.hub.subscribers("k") == 0
    assert server.hub.subscriber_count == 0


async def test_oversized_frame_closes_only_that_connection(start_server: StartServer) -> None:
    """A message over the size limit closes its connection with 1009; others carry on."""
    server = await start_server(max_size=64 * 1024)
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url, max_size=None) as big, connect(url) as other:
        await other.send(msg(action="subscribe", key="k"))
        await big.send(msg(action="set", key="k", value="x" * 70_000))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(big.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
        await other.send(msg(action="set", key="k", value="small"))
        assert await recv_json(other) == {"key": "k", "value": "small"}
    assert server.store.get("k") == b'"small"'


async def test_server_stop_closes_connections_with_1001(start_server: StartServer) -> None:
    """Stopping the server closes open connections with code 1001 (going away)."""
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await server.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1001


async def test_client_that_never_answers_pings_is_closed(start_server: StartServer) -> None:
    """A client that answers no keepalive ping is closed with 1011 after the timeout."""
    server = await start_server(ping_interval=0.2, ping_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    received = b""
    async with asyncio.timeout(5):
        while b"keepalive ping timeout" not in received:  # pings, then a close frame
            received += await reader.read(100)
    assert received.startswith(b"\x89\x00")
    close = received[received.index(b"\x88") :]
    assert close[2:4] == (1011).to_bytes(2, "big")
    assert close[4:] == b"keepalive ping timeout"
    writer.close()


async def test_client_that_answers_pings_stays_connected(start_server: StartServer) -> None:
    """A client that answers pings is kept open across many keepalive intervals."""
    server = await start_server(ping_interval=0.1, ping_timeout=0.1)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await asyncio.sleep(0.8)
        await ws.send(msg(action="get", key="k"))
        assert await recv_json(ws) == {"key": "k", "value": None}
