"""Canaries for what objstore.connection relies on beyond websockets' documented API.

If one of these fails after upgrading websockets, read objstore/connection.py:
the way request bodies are read must be revisited before shipping.
"""

from __future__ import annotations

import inspect

import pytest
import websockets
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request
from websockets.streams import StreamReader

from objstore.connection import ObjstoreConnection, strip_body_headers


def _parse(data: bytes) -> Request:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Request.parse(reader.read_line)
    try:
        next(parser)
    except StopIteration as done:
        request: Request = done.value
        return request
    raise AssertionError("request head not parsed")


def test_websockets_major_version_is_the_one_checked() -> None:
    """The body-reading connection was written against websockets 17."""
    assert websockets.version.version.split(".")[0] == "17"


def test_serve_accepts_create_connection() -> None:
    """serve() still takes a ServerConnection subclass as create_connection."""
    assert "create_connection" in inspect.signature(serve).parameters


def test_data_received_is_the_entry_of_request_bytes() -> None:
    """Connection.data_received still feeds every received byte to the sans-I/O protocol."""
    assert "self.protocol.receive_data(data)" in inspect.getsource(Connection.data_received)
    assert issubclass(ObjstoreConnection, ServerConnection)
    assert "data_received" in vars(ObjstoreConnection)


def test_request_with_body_is_still_refused_by_websockets() -> None:
    """websockets still rejects a Content-Length, which is why bodies are read beforehand."""
    head = b"POST /set HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    # If this fails, websockets reads bodies itself: connection.py may be simplified.
    with pytest.raises(ValueError, match="unsupported request body"):
        _parse(head)


def test_stripped_head_is_accepted_by_websockets() -> None:
    """The head left after removing body headers parses, method and path intact."""
    head = (
        b"POST /set?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    )
    stripped, found = strip_body_headers(head)
    request = _parse(stripped)
    assert (request.method, request.path) == ("POST", "/set?x=1")
    assert found == {b"content-length": [b"5"], b"expect": [b"100-continue"]}
