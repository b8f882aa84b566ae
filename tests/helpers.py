"""Helpers shared by the tests: a raw HTTP client, a WebSocket reader, and a free port."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from websockets.asyncio.client import ClientConnection

__all__ = [
    "HttpAnswer",
    "RawWebSocket",
    "TlsFiles",
    "assert_silent",
    "client_frame",
    "free_port",
    "http_request",
    "raw_http",
    "recv_json",
    "tls_files",
]


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _parse_answer(raw: bytes) -> HttpAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return HttpAnswer(status, headers, body)


async def raw_http(port: int, data: bytes, *, timeout: float = 10) -> bytes:
    """Send *data* as is and return every byte the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


async def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> HttpAnswer:
    """Make one HTTP/1.1 request with ``Connection: close`` and return the parsed answer."""
    if isinstance(body, str):
        body = body.encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None and not any(n.lower() == "content-length" for n in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    raw = await raw_http(port, data)
    answer = _parse_answer(raw)
    if answer.status == 100:  # interim answer to Expect: 100-continue
        answer = _parse_answer(raw.partition(b"\r\n\r\n")[2])
    return answer


async def recv_json(ws: ClientConnection, timeout: float = 5) -> Any:
    """The next message of *ws*, parsed as JSON."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def assert_silent(ws: ClientConnection, timeout: float = 0.3) -> None:
    """Fail if *ws* receives anything within *timeout* seconds."""
    try:
        message = await asyncio.wait_for(ws.recv(), timeout)
    except TimeoutError:
        return
    raise AssertionError(f"expected no message, got {message!r}")


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def client_frame(
    payload: bytes,
    opcode: int = 0x1,
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    length_form: int | None = None,
) -> bytes:
    """A client frame, built by hand so that tests can also build malformed ones.

    *length_form* forces the 7-bit (None picks the shortest), 16-bit (126) or
    64-bit (127) length encoding.
    """
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    length = len(payload)
    form = length_form or (length if length < 126 else 126 if length < 65536 else 127)
    mask_bit = 0x80 if masked else 0
    header = bytes([first, mask_bit | form])
    if form == 126:
        header += struct.pack("!H", length)
    elif form == 127:
        header += struct.pack("!Q", length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawWebSocket:
    """A WebSocket client that writes bytes exactly as given and reads frames as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int, *, after_request: bytes = b"") -> RawWebSocket:
        """Open ``/ws``; *after_request* is sent in the same write as the upgrade request."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        writer.write(request + after_request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(reader, writer)

    async def send(self, data: bytes, *, pieces: int = 1) -> None:
        """Write *data*, in *pieces* separate writes (each drained and given time to arrive)."""
        size = -(-len(data) // pieces)
        for start in range(0, len(data), size):
            self.writer.write(data[start : start + size])
            await self.writer.drain()
            if pieces > 1:
                await asyncio.sleep(0.001)

    async def recv_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        """The next frame from the server, as ``(opcode, payload)``."""
        first, second = await asyncio.wait_for(self.reader.readexactly(2), timeout)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def recv_json(self, timeout: float = 5) -> Any:
        """The next text frame, parsed as JSON."""
        opcode, payload = await self.recv_frame(timeout)
        assert opcode == 0x1, (opcode, payload)
        return json.loads(payload)

    async def close_code(self, timeout: float = 5) -> int:
        """Read until the server's close frame and return its code."""
        while True:
            opcode, payload = await self.recv_frame(timeout)
            if opcode == 0x8:
                code: int = struct.unpack("!H", payload[:2])[0]
                return code

    def close(self) -> None:
        self.writer.close()


@dataclass
class TlsFiles:
    """A certificate for localhost and 127.0.0.1 signed by a test CA, as PEM files."""

    ca: trustme.CA
    cert: Path
    key: Path
    ca_cert: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the test CA (and nothing else)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


def tls_files(folder: Path) -> TlsFiles:
    """Write a fresh test CA's certificate, and a server chain and key, into *folder*."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key, ca_cert = folder / "fullchain.pem", folder / "privkey.pem", folder / "ca.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_cert))
    return TlsFiles(ca, cert, key, ca_cert)
