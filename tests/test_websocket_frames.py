"""How the server reads client frames: split, batched, pipelined, fragmented and malformed.

The connection takes whole text and binary frames apart itself and hands every
other frame to websockets; these tests send bytes by hand to check that both
paths, and the border between them, behave as RFC 6455 says.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator

import pytest

from objstore.server import ObjstoreServer
from tests.conftest import StartServer
from tests.helpers import RawWebSocket, client_frame


def message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def set_frame(key: str, value: object) -> bytes:
    return client_frame(message(action="set", key=key, value=value))


def get_frame(key: str) -> bytes:
    return client_frame(message(action="get", key=key))


@pytest.fixture
async def raw(server: ObjstoreServer) -> AsyncIterator[RawWebSocket]:
    connection = await RawWebSocket.connect(server.port)
    yield connection
    connection.close()


async def test_many_frames_in_one_write_are_each_answered_in_order(raw: RawWebSocket) -> None:
    """Frames arriving together are all handled, in the order sent."""
    data = b"".join(set_frame("k", n) + get_frame("k") for n in range(20))
    await raw.send(data)
    assert [(await raw.recv_json())["value"] for _ in range(20)] == list(range(20))


@pytest.mark.parametrize("size", [10, 200, 70000])
async def test_frames_split_across_writes_are_reassembled(raw: RawWebSocket, size: int) -> None:
    """A frame arriving in pieces (inside its header too) is handled once complete."""
    value = "x" * size
    data = set_frame("k", value) + get_frame("k")
    await raw.send(data, pieces=min(len(data), 40))
    assert await raw.recv_json() == {"key": "k", "value": value}


async def test_frame_cut_after_every_byte_of_its_header(raw: RawWebSocket) -> None:
    """Cuts at every position of a 16-bit-length header all work."""
    for cut in range(1, 9):
        data = set_frame("k", "y" * 200 + str(cut)) + get_frame("k")
        await raw.send(data[:cut])
        await raw.send(data[cut:])
        assert (await raw.recv_json())["value"] == "y" * 200 + str(cut)


async def test_frames_sent_with_the_upgrade_request_are_answered(server: ObjstoreServer) -> None:
    """A client that pipelines frames after its upgrade request gets its answers."""
    raw = await RawWebSocket.connect(
        server.port, after_request=set_frame("early", 1) + get_frame("early")
    )
    try:
        assert await raw.recv_json() == {"key": "early", "value": 1}
    finally:
        raw.close()


async def test_binary_frame_and_64_bit_length(raw: RawWebSocket) -> None:
    """A binary frame and a 64-bit length form holding a small payload are both read."""
    await raw.send(client_frame(message(action="set", key="b", value=2), opcode=0x2))
    await raw.send(client_frame(message(action="get", key="b"), length_form=127))
    assert await raw.recv_json() == {"key": "b", "value": 2}


async def test_fragmented_message_with_a_ping_between_fragments(raw: RawWebSocket) -> None:
    """Fragments are assembled; a ping between them is answered with a pong first."""
    text = message(action="set", key="f", value="fragmented") + b" "
    parts = [text[:10], text[10:20], text[20:]]
    data = (
        client_frame(parts[0], 0x1, fin=False)
        + client_frame(parts[1], 0x0, fin=False)
        + client_frame(b"are you there", 0x9)
        + client_frame(parts[2], 0x0)
        + get_frame("f")
    )
    await raw.send(data, pieces=7)
    assert await raw.recv_frame() == (0xA, b"are you there")
    assert await raw.recv_json() == {"key": "f", "value": "fragmented"}


async def test_empty_text_frame_gets_an_error_reply(raw: RawWebSocket) -> None:
    """A zero-length message is invalid JSON, answered like any other bad message."""
    await raw.send(client_frame(b""))
    reply = await raw.recv_json()
    assert reply["error"].startswith("invalid JSON")
    await raw.send(get_frame("k"))
    assert await raw.recv_json() == {"key": "k", "value": None}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(client_frame(b'{"action":"get"}', masked=False), 1002, id="unmasked"),
        pytest.param(client_frame(b'{"action":"get"}', rsv=4), 1002, id="reserved-bit"),
        pytest.param(client_frame(b"x", 0x3), 1002, id="unknown-opcode"),
        pytest.param(client_frame(b"x", 0x0), 1002, id="continuation-without-start"),
        pytest.param(
            client_frame(b"{", fin=False) + client_frame(b"{}"), 1002, id="text-inside-fragments"
        ),
        pytest.param(client_frame(b"\xff\xfe"), 1007, id="invalid-utf8"),
    ],
)
async def test_malformed_frames_close_with_the_right_code(
    server: ObjstoreServer, data: bytes, code: int
) -> None:
    """Protocol errors close only the offending connection, with RFC 6455's close code."""
    raw, other = await RawWebSocket.connect(server.port), await RawWebSocket.connect(server.port)
    try:
        await raw.send(data)
        assert await raw.close_code() == code
        await other.send(get_frame("k"))
        assert await other.recv_json() == {"key": "k", "value": None}
    finally:
        raw.close()
        other.close()


async def test_oversized_frame_is_refused_from_its_header(start_server: StartServer) -> None:
    """A frame announcing more than --max-size is refused (1009) before its payload arrives."""
    server = await start_server(max_size=1024)
    raw = await RawWebSocket.connect(server.port)
    try:
        header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 10**9) + b"mask"
        await raw.send(header)
        assert await raw.close_code() == 1009
    finally:
        raw.close()


async def test_fragment_passing_the_limit_is_refused_from_its_header(
    start_server: StartServer,
) -> None:
    """A continuation frame that takes its message past --max-size is refused (1009) from
    its header, before its payload arrives."""
    server = await start_server(max_size=100_000)
    raw = await RawWebSocket.connect(server.port)
    try:
        await raw.send(client_frame(b"[" + b"1," * 30_000, fin=False))  # 60,001 bytes
        header = bytes([0x80, 0x80 | 126]) + struct.pack("!H", 50_000) + b"mask"
        await raw.send(header)  # 110,001 in all; its payload is never sent
        assert await raw.close_code(timeout=3) == 1009
    finally:
        raw.close()
