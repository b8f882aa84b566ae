"""Helpers shared by the tests: a raw HTTP client, a WebSocket reader, and a free port."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

__all__ = ["HttpAnswer", "assert_silent", "free_port", "http_request", "raw_http", "recv_json"]


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
