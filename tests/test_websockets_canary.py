"""Canaries for what objstore.connection relies on beyond websockets' documented API.

If one of these fails after upgrading websockets, read objstore/connection.py
before shipping: the way connections start, receive frames and apply flow
control must be checked against the new version.
"""

from __future__ import annotations

import inspect
import re

import websockets
import websockets.frames
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import SERVER, Protocol

from objstore import connection
from objstore.connection import ObjstoreConnection


def source(function: object) -> str:
    return inspect.getsource(function)  # type: ignore[arg-type]


def test_websockets_major_version_is_the_one_checked() -> None:
    """The connection subclass was written against websockets 17."""
    assert websockets.version.version.split(".")[0] == "17"


def test_serve_accepts_create_connection() -> None:
    """serve() still takes a ServerConnection subclass as create_connection."""
    assert "create_connection" in inspect.signature(serve).parameters
    assert issubclass(ObjstoreConnection, ServerConnection)


def test_connection_made_starts_websockets() -> None:
    """connection_made still sets up the connection and starts the handshake task,
    so deferring it keeps websockets out of plain HTTP connections."""
    assert "self.recv_messages = Assembler(" in source(Connection.connection_made)
    assert "self.server.handler(self)" in source(ServerConnection.connection_made)


def test_data_received_feeds_the_protocol() -> None:
    """Connection.data_received still feeds every received byte to the sans-I/O protocol."""
    assert "self.protocol.receive_data(data)" in source(Connection.data_received)


def test_process_event_sees_the_request_then_every_frame() -> None:
    """ServerConnection.process_event takes the request first, then passes frames on,
    and data frames would otherwise go to the message queue objstore bypasses."""
    server_side = source(ServerConnection.process_event)
    assert "self.request = event" in server_side
    assert "super().process_event(event)" in server_side
    assert "self.recv_messages.put(event)" in source(Connection.process_event)


def test_flow_control_callbacks_track_paused() -> None:
    """pause_writing/resume_writing still maintain Connection.paused."""
    assert "self.paused = True" in source(Connection.pause_writing)
    assert "self.paused = False" in source(Connection.resume_writing)


def test_protocol_state_is_public() -> None:
    """The sans-I/O protocol still exposes its state."""
    assert isinstance(inspect.getattr_static(Protocol, "state"), property)


def test_message_queue_is_only_used_where_objstore_expects() -> None:
    """recv_messages is used by recv(), the data path objstore replaces, and
    connection_lost, which the shared stand-in supports by closing."""
    uses = sorted(set(re.findall(r"self\.recv_messages\.(\w+)", source(Connection))))
    assert uses == ["close", "get", "get_iter", "put"]
    assert "self.recv_messages.get" in source(Connection.recv)
    assert "self.recv_messages.close()" in source(Connection.connection_lost)


def test_keepalive_is_per_connection_and_optional() -> None:
    """websockets' keepalive is a task per connection, off when ping_interval is None."""
    assert "if self.ping_interval is not None" in source(Connection.start_keepalive)


def test_fragmented_message_state_and_size_limit_are_where_expected() -> None:
    """The protocol keeps current_size (None between messages) and max_message_size, which
    the connection reads to decide which frames it may take apart itself."""
    protocol = Protocol(SERVER, max_size=1234)
    assert protocol.current_size is None
    assert protocol.max_message_size == 1234
    assert "self.current_size = len(frame.data)" in source(Protocol.recv_frame)


def test_frames_are_unmasked_by_the_helper_websockets_uses() -> None:
    """apply_mask, from the C speedups where built, is the function websockets unmasks with."""
    ours = getattr(connection, "apply_mask")  # noqa: B009  # not exported
    assert getattr(websockets.frames, "apply_mask") is ours  # noqa: B009
    assert ours(b"\x01\x02\x03\x04\x05", b"\x01\x02\x03\x04") == b"\x00\x00\x00\x00\x04"
