"""The server: websockets wired to the store, the hub and the HTTP routes; its lifecycle.

Owns the listening socket, the per-connection loop and startup and shutdown.
This and :mod:`objstore.connection` are the only modules that import
websockets; the protocol, the store and the routes know nothing of it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from functools import partial

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .cachefolder import LoadReport
from .config import Config
from .connection import HttpServerConnection
from .errors import ClientError, StartupError, StorageError
from .http import HttpRequest, route
from .hub import Hub
from .protocol import encode_error, parse_message
from .service import StoreService
from .store import Store

__all__ = ["ObjstoreServer", "WebSocketClient"]

logger = logging.getLogger("objstore.server")

_ADDRESS_IN_USE = {errno.EADDRINUSE, 10048}  # 10048: WSAEADDRINUSE on Windows


class WebSocketClient:
    """A WebSocket connection seen as a subscriber of the hub."""

    __slots__ = ("__weakref__", "connection")

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    def deliver(self, key: str, frame: bytes) -> None:
        """Write *frame* without waiting; connections that are closing are skipped."""
        broadcast((self.connection,), frame, text=True)

    def report_write(self, key: str, result: asyncio.Future[StorageError | None]) -> None:
        """Tell the client when its set could not be saved to disk."""
        failure = result.result()
        if failure is not None:
            broadcast((self.connection,), encode_error(str(failure)), text=True)


class ObjstoreServer:
    """A running objstore: the store loaded from disk and a websockets server in front."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.cache_dir)
        self.hub = Hub()
        self.service = StoreService(self.store, self.hub)
        self._server: Server | None = None
        self.load_report = LoadReport()

    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        assert self._server is not None, "the server is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Load the store and start listening. Raises StartupError with what to do."""
        self.load_report = await asyncio.to_thread(self.store.open)
        connection_class = type(
            "ConfiguredConnection",
            (HttpServerConnection,),
            {"max_body_size": self.config.max_size},
        )
        try:
            self._server = await serve(
                self._handle_connection,
                self.config.host,
                self.config.port,
                process_request=self._process_request,
                create_connection=connection_class,
                compression="deflate" if self.config.compression else None,
                max_size=self.config.max_size,
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_timeout,
                server_header=None,
                logger=logging.getLogger("objstore.websockets"),
            )
        except OSError as exc:
            await self.store.close()
            if exc.errno in _ADDRESS_IN_USE:
                raise StartupError(
                    f"port {self.config.port} is already in use, perhaps by another objstore; "
                    "stop that program or choose another port with --port or PORT"
                ) from None
            raise StartupError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}; "
                "check --host and --port"
            ) from None

    async def stop(self) -> None:
        """Close connections with 1001 (going away), finish pending writes, stop."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.store.close()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        assert isinstance(connection, HttpServerConnection)
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        answer = await route(
            self.service,
            HttpRequest(
                request.method,
                request.path,
                upgrade,
                connection.request_body,
                connection.body_error,
            ),
        )
        if answer is None:
            return None
        headers = Headers(
            [
                ("Content-Type", answer.content_type),
                ("Content-Length", str(len(answer.body))),
                ("Connection", "close"),
                ("Cache-Control", "no-store"),
                *answer.headers,
            ]
        )
        return Response(answer.status.value, answer.status.phrase, headers, answer.body)

    async def _handle_connection(self, connection: ServerConnection) -> None:
        client = WebSocketClient(connection)
        started = time.monotonic()
        messages = 0
        debug = logger.isEnabledFor(logging.DEBUG)
        if debug:
            logger.debug("%s connected", _address(connection))
        try:
            async for frame in connection:
                messages += 1
                if debug:
                    logger.debug("%s sent %r", _address(connection), frame[:500])
                try:
                    command = parse_message(frame)
                except ClientError as exc:
                    logger.debug("rejected message from %s: %s", connection.remote_address, exc)
                    await connection.send(encode_error(exc), text=True)
                    continue
                reply, written = self.service.execute(client, command)
                if written is not None:
                    written.add_done_callback(partial(client.report_write, command.key))
                if reply is not None:
                    await connection.send(reply, text=True)
        except ConnectionClosed:
            pass
        finally:
            self.hub.drop(client)
            close = connection.close_code
            logger.info(
                "%s disconnected after %.1f s and %d messages (close code %s%s)",
                _address(connection),
                time.monotonic() - started,
                messages,
                close,
                f", {connection.close_reason}" if connection.close_reason else "",
            )


def _address(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)
