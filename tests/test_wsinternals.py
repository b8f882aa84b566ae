"""Canaries for what objstore relies on beyond websockets' documented API.

Each test checks one reliance listed in objstore/wsinternals.py by what websockets
does on a real connection, not by reading its source. If one fails after upgrading
websockets, read objstore/wsinternals.py and objstore/connection.py before shipping.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
import websockets.frames
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import Frame, Opcode

from objstore import wsinternals
from objstore.wsinternals import WebsocketsConnection

from .helpers import client_frame
from .test_main import python


class Recording(WebsocketsConnection):
    """Starts as plain TCP; hands itself to websockets on the first bytes; records frames."""

    instances: list[Recording]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[Frame] = []
        self.pongs = 0
        self.started = False
        self.flow: list[str] = []
        self.instances.append(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # websockets not started

    def data_received(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            self.start_websockets(data)
        else:
            self.feed_websockets(data)

    def eof_received(self) -> None:
        if self.started:
            self.websockets_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.started:
            self.websockets_lost(exc)

    def data_frame(self, frame: Frame) -> None:
        self.frames.append(frame)

    def pong_received(self) -> None:
        self.pongs += 1

    def pause_writing(self) -> None:
        super().pause_writing()
        self.flow.append(f"pause {self.paused}")

    def resume_writing(self) -> None:
        super().resume_writing()
        self.flow.append(f"resume {self.paused}")


@pytest.fixture
async def recording() -> AsyncIterator[tuple[Server, list[Recording]]]:
    instances: list[Recording] = []
    cls = type("Recorded", (Recording,), {"instances": instances})

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, WebsocketsConnection)
        await connection.handshake_done()

    server = await serve(
        handler, "127.0.0.1", 0, create_connection=cls, max_size=1000, compression=None
    )
    yield server, instances
    server.close()
    await server.wait_closed()


async def handshake(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def settle(condition: Any, timeout: float = 5) -> None:
    """Wait until *condition()* holds, polling: the callbacks it watches have no event."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def test_websockets_major_version_is_the_one_checked() -> None:
    """The base class was written against websockets 17."""
    assert websockets.version.version.split(".")[0] == "17"


async def test_a_connection_started_late_performs_the_handshake(
    recording: tuple[Server, list[Recording]],
) -> None:
    """websockets can be started on a connection after its first bytes, and answers 101."""
    server, instances = recording
    _, writer = await handshake(server)
    (connection,) = instances
    await settle(lambda: connection.is_open and connection.request is not None)
    assert not connection.is_closing
    assert connection.max_message_size == 1000  # the server's max_size
    writer.close()


async def test_data_frames_reach_data_frame_and_pongs_pong_received(
    recording: tuple[Server, list[Recording]],
) -> None:
    """Text, binary and continuation frames go to data_frame, parsed; pongs are counted."""
    server, instances = recording
    _, writer = await handshake(server)
    (connection,) = instances
    writer.write(
        client_frame(b"whole")
        + client_frame(b"\x01", opcode=0x2)
        + client_frame(b"part", fin=False)
        + client_frame(b"-end", opcode=0x0)
        + client_frame(b"", opcode=0xA)
    )
    await settle(lambda: len(connection.frames) == 4 and connection.pongs == 1)
    assert [(f.opcode, f.fin, bytes(f.data)) for f in connection.frames] == [
        (Opcode.TEXT, True, b"whole"),
        (Opcode.BINARY, True, b"\x01"),
        (Opcode.TEXT, False, b"part"),
        (Opcode.CONT, True, b"-end"),
    ]
    writer.close()


async def test_a_ping_is_answered_by_websockets(
    recording: tuple[Server, list[Recording]],
) -> None:
    """Control frames stay with websockets: a ping gets its pong."""
    server, _ = recording
    reader, writer = await handshake(server)
    writer.write(client_frame(b"hi", opcode=0x9))
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x8a\x02hi"
    writer.close()


async def test_an_oversized_header_is_refused_before_its_payload(
    recording: tuple[Server, list[Recording]],
) -> None:
    """A header announcing more than max_size closes with 1009 without the payload."""
    server, _ = recording
    reader, writer = await handshake(server)
    writer.write(bytes([0x81, 0x80 | 126]) + (5000).to_bytes(2, "big") + b"mask")
    head = await asyncio.wait_for(reader.readexactly(2), 5)
    assert head[0] == 0x88
    payload = await asyncio.wait_for(reader.readexactly(head[1]), 5)
    assert int.from_bytes(payload[:2], "big") == 1009
    writer.close()


async def test_flow_control_callbacks_maintain_paused(
    recording: tuple[Server, list[Recording]],
) -> None:
    """pause_writing and resume_writing, called by the transport, keep ``paused``."""
    server, instances = recording
    reader, writer = await handshake(server)
    (connection,) = instances
    await settle(lambda: connection.is_open and connection.request is not None)
    frame = b"\x81\x7e\xff\xff" + b"z" * 65535
    for _ in range(300):  # 19 MB: more than the socket buffers take
        connection.transport.write(frame)
    await settle(lambda: connection.flow[:1] == ["pause True"])
    await asyncio.wait_for(reader.readexactly(300 * len(frame)), 10)
    await settle(lambda: connection.flow[-1:] == ["resume False"])
    writer.close()


async def test_closing_and_connection_lost_resolve_the_end_future(
    recording: tuple[Server, list[Recording]],
) -> None:
    """A close frame begins closing; the future of handshake_done resolves when it is lost."""
    server, instances = recording
    reader, writer = await handshake(server)
    (connection,) = instances
    await settle(lambda: connection.request is not None)
    end = connection.handshake_done()
    writer.write(client_frame(b"\x03\xe8", opcode=0x8))
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x88\x02\x03\xe8"
    assert connection.is_closing
    assert not end.done()
    writer.close()
    await asyncio.wait_for(end, 5)


async def test_shared_stand_ins_survive_the_connection_ending(
    recording: tuple[Server, list[Recording]],
) -> None:
    """With the message queue, pings and extensions replaced, a connection ends cleanly."""
    server, instances = recording
    _, writer = await handshake(server)
    (connection,) = instances
    await settle(lambda: connection.request is not None)
    connection.handshake_done()
    assert connection.request is not None
    assert not connection.request.headers
    writer.close()
    await asyncio.wait_for(connection.connection_lost_waiter, 5)
    assert connection.is_closing


def test_frames_are_unmasked_by_the_helper_websockets_uses() -> None:
    """apply_mask, from the C speedups where built, is the function websockets unmasks with."""
    ours = wsinternals.apply_mask
    assert getattr(websockets.frames, "apply_mask") is ours  # noqa: B009
    assert ours(b"\x01\x02\x03\x04\x05", b"\x01\x02\x03\x04") == b"\x00\x00\x00\x00\x04"


def test_websockets_reads_nothing_of_the_package_metadata_it_imports() -> None:
    """websockets imports importlib.metadata at load but reads nothing from it, so the
    entry point's stand-in (objstore/__main__.py) keeps it unloaded."""
    check = (
        "import sys\n"
        "from objstore.__main__ import _import_websockets\n"
        "_import_websockets()\n"
        "import websockets.asyncio.client, websockets.asyncio.server\n"
        "print(sorted(m for m in sys.modules if m.startswith('importlib.metadata')))\n"
    )
    assert python(check) == "[]\n"
