"""The server: websockets wired to the store, the hub and the HTTP routes; its lifecycle.

Owns the listening socket (TLS on it when configured, see :mod:`objstore.tls`),
the wiring of each connection to its session, the keepalive pings and startup
and shutdown. This and :mod:`objstore.connection`
are the only modules that import websockets; the protocol, the store and the
routes know nothing of it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sys
import time
from collections.abc import Awaitable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from .access import Access, bearer_token
from .cachefolder import LoadReport
from .config import Config
from .connection import ObjstoreConnection
from .errors import StartupError
from .http import HttpRequest, HttpResponse, route
from .hub import Hub
from .metrics import MetricsPage
from .origins import OriginPolicy
from .outbox import CountedFanOut, FlushScheduler, Outbox
from .permissions import NOTHING
from .repeatanswers import RepeatAnswers
from .service import StoreService
from .session import ClientSession
from .store import Store
from .tallies import ServerTallies
from .tls import server_context

if TYPE_CHECKING:
    from .redisstore import RedisStore

__all__ = ["ObjstoreServer"]

_ADDRESS_IN_USE = {errno.EADDRINUSE, 10048}  # 10048: WSAEADDRINUSE on Windows
#: Connections the kernel may hold for the server before it accepts them.
_LISTEN_BACKLOG = 4096


class ObjstoreServer:
    """A running objstore: the store loaded from disk and a websockets server in front."""

    def __init__(self, config: Config) -> None:
        self.config = config
        #: The rules of access control in force (raises StartupError for bad ones).
        self.access = Access(config.token, config.auth_file)
        #: Counts read by /metrics (see objstore.tallies).
        self.tallies = ServerTallies()
        fan_out = CountedFanOut(self.tallies)
        self.hub = Hub(fan_out=fan_out.fan_out, fan_out_rev=fan_out.fan_out_rev)
        #: Where the values are: the cache folder's store, or a shared store in Redis.
        self.storage: Store | RedisStore
        self._session_class: type[ClientSession] = ClientSession
        if config.redis_url is None:
            self.storage = Store(config.cache_dir, config.durability)
            self.service = StoreService(self.storage, self.hub, config.max_size)
        else:
            # Imported only here: the redis library is optional where the executable is not.
            from .redisstore import RedisStore
            from .sharedservice import SharedStoreService
            from .sharedsession import SharedClientSession

            shared = self.storage = RedisStore(config.redis_url, replicas=config.redis_replicas)
            shared.on_reset = self._store_replaced
            self.service = SharedStoreService(shared, self.hub, config.max_size)
            self._session_class = SharedClientSession
        self.service.deadline_changed = self._expire_at
        #: Whole answers to repeated reads, shared by every HTTP connection.
        self.repeat_answers = RepeatAnswers(
            self.storage.get, self._rules_now, self.storage.revision
        )
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at: float | None = None
        self._server: Server | None = None
        self.load_report = LoadReport()
        self._flush_scheduler: FlushScheduler | None = None
        self._http_connections: set[ObjstoreConnection] = set()
        self._keepalive: asyncio.Task[None] | None = None
        self._clock_tick: asyncio.TimerHandle | None = None
        #: When the once-a-second timer should fire next (the loop's clock), and how
        #: late it fired last time, in seconds: the event loop's lag.
        self._tick_due: float | None = None
        self.loop_lag = 0.0
        self.metrics = MetricsPage(self, config.metrics_token)
        #: After stop(): the keys whose latest value could not be written to disk.
        self.unsaved_keys: list[str] = []

    @property
    def store(self) -> Store:
        """The cache folder's store (not there with ``--redis``: see :attr:`storage`)."""
        assert isinstance(self.storage, Store), "this server keeps its store in Redis"
        return self.storage

    @property
    def port(self) -> int:
        """The port actually listened on (useful with port 0)."""
        assert self._server is not None, "the server is not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        """Load the store and start listening. Raises StartupError with what to do."""
        tls: dict[str, Any] = {}
        if self.config.tls_cert is not None and self.config.tls_key is not None:
            # Before the store: a wrong file is told at once, not after loading every key.
            tls["ssl"] = server_context(self.config.tls_cert, self.config.tls_key)
            # A client that opens a connection and finishes no TLS handshake is let go
            # as soon as one that sends no request.
            tls["ssl_handshake_timeout"] = self.config.http_timeout
        if isinstance(self.storage, Store):
            self.load_report = await asyncio.to_thread(self.storage.open)
        else:
            await self.storage.start()
        self._flush_scheduler = FlushScheduler(asyncio.get_running_loop().call_soon)
        connection_class = type(
            "ConfiguredConnection",
            (ObjstoreConnection,),
            {
                "max_body_size": self.config.max_size,
                "stall_timeout": self.config.stall_timeout,
                "http_timeout": self.config.http_timeout,
                "session_factory": self._new_session,
                "http_handler": self._route,
                "repeat_answers": self.repeat_answers,
                "http_connections": self._http_connections,
                "turn": self._flush_scheduler,
                "tallies": self.tallies,
                "tls": self.config.tls,
            },
        )
        try:
            self._server = await serve(
                self._handle_connection,
                self.config.host,
                self.config.port,
                process_request=self._process_request,
                # asyncio's default, 100, drops connections when thousands of clients
                # come back at once (a restart, a network back): they wait a second or
                # more to retry. The kernel caps it (net.core.somaxconn).
                backlog=_LISTEN_BACKLOG,
                create_connection=connection_class,
                # Off: frames are shared by all subscribers, and compressing would
                # cost a deflate per connection per update.
                compression=None,
                max_size=self.config.max_size,
                # One keepalive task for all connections instead of one each.
                ping_interval=None,
                ping_timeout=None,
                server_header=None,
                logger=logging.getLogger("objstore.websockets"),
                **tls,
            )
        except OSError as exc:
            await self.storage.close()
            if exc.errno in _ADDRESS_IN_USE:
                raise StartupError(
                    f"port {self.config.port} is already in use, perhaps by another objstore; "
                    "stop that program or choose another port with --port or PORT"
                ) from None
            raise StartupError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror or exc}; "
                "check --host and --port"
            ) from None
        if self.config.ping_interval is not None:
            self._keepalive = asyncio.get_running_loop().create_task(self._send_keepalives())
        deadline = self.storage.next_deadline()
        if deadline is not None:
            self._expire_at(deadline)
        self._mark_time()

    def _mark_time(self) -> None:
        """Once a second, tell the store the time, for its keys' times of last change,
        reload the permissions file if it changed, and measure how late this call comes
        (the event loop's lag)."""
        self.storage.mark_time(time.time())
        self.access.check_file()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._tick_due is not None:
            self.loop_lag = max(0.0, now - self._tick_due)
        self._tick_due = now + 1.0
        self._clock_tick = loop.call_later(1.0, self._mark_time)

    def _expire_at(self, deadline: float) -> None:
        """Make sure keys are expired at *deadline* (seconds since the epoch) or earlier."""
        if self._expiry_at is not None and self._expiry_at <= deadline:
            return
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = deadline
        delay = max(0.0, deadline - time.time())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        """Expire the keys whose deadline has come, and wait for the next deadline."""
        self._expiry = self._expiry_at = None
        self.service.expire_due(time.time())
        deadline = self.storage.next_deadline()
        if deadline is not None:
            self._expire_at(deadline)

    async def _send_keepalives(self) -> None:
        assert self._server is not None
        assert self.config.ping_interval is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.config.ping_interval)
            now = loop.time()
            for connection in self._server.connections:
                assert isinstance(connection, ObjstoreConnection)
                connection.send_keepalive(now, self.config.ping_timeout)

    async def stop(self) -> None:
        """Close connections with 1001 (going away), finish pending writes, stop.

        Keys whose values could not be written even then are left in :attr:`unsaved_keys`.
        """
        if self._keepalive is not None:
            self._keepalive.cancel()
        if self._clock_tick is not None:
            self._clock_tick.cancel()
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = self._expiry_at = None
        if self._server is not None:
            for connection in list(self._http_connections):
                connection.close_if_http()
            self._server.close()
            await self._server.wait_closed()
        self.unsaved_keys = await self.storage.close()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        # Only WebSocket upgrades reach websockets (see objstore.connection); the
        # router still decides which paths accept them.
        sockname = connection.local_address
        answer = self._route(
            HttpRequest(
                request.method,
                request.path,
                True,
                headers={name.lower(): value for name, value in request.headers.raw_items()},
                local_host=str(sockname[0]) if isinstance(sockname, tuple) and sockname else "",
            ),
        )
        if answer is None:
            return None
        if not isinstance(answer, HttpResponse):
            answer = await answer
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

    def _route(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse] | None:
        """Route a request of either transport with this server's Origin and Host checks."""
        return route(self.service, self._origins, request, self.access, self.metrics)

    def _rules_now(self) -> object:
        """The access rules in force: a reload makes new ones (answers kept under the old
        ones are not given again)."""
        return self.access.rules

    @cached_property
    def _origins(self) -> OriginPolicy:
        # Made at the first request, when the port listened on is known (also with port 0).
        return OriginPolicy.for_server(
            self.config.host, self.port, self.config.allow_origins, tls=self.config.tls
        )

    def connection_counts(self) -> dict[str, int]:
        """Open connections by what they carry: ``websocket``, ``http`` and ``sse``
        (counted when asked: linear in the connections)."""
        counts = {"websocket": 0, "http": 0, "sse": 0}
        if self._server is not None:
            counts["websocket"] = len(self._server.connections)
        for connection in self._http_connections:
            counts[connection.protocol_name] += 1
        return counts

    def _new_session(self, connection: ObjstoreConnection) -> ClientSession:
        assert self._flush_scheduler is not None
        outbox = Outbox(connection, self._flush_scheduler)
        peer = connection.remote_address
        if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
            # Clients mostly share a few hosts: one string each, not one per connection.
            peer = (sys.intern(peer[0]), *peer[1:])
        request = connection.request
        token = (
            None
            if request is None
            else bearer_token({name.lower(): value for name, value in request.headers.raw_items()})
        )
        # The router refused an unknown token at the handshake.
        grant = self.access.grant_for(token) or NOTHING
        session = self._session_class(self.service, outbox, peer, grant, self.access)
        session.close_connection = lambda code, reason: connection.close_soon(
            CloseCode(code), reason
        )
        return session

    def _store_replaced(self) -> None:
        """The shared store was replaced (flushed, or a failover lost changes): close every
        WebSocket connection, so that each client subscribes afresh and is told to reset."""
        if self._server is None:
            return
        for connection in self._server.connections:
            assert isinstance(connection, ObjstoreConnection)
            connection.close_soon(CloseCode.SERVICE_RESTART, "the store was reset; reconnect")

    def _handle_connection(self, connection: ServerConnection) -> Awaitable[None]:
        # Messages are handled by the connection as they arrive, and its session
        # is closed when it is lost (see objstore.connection). websockets only
        # needs something to await for as long as the connection lives: a
        # future costs less than a coroutine per connection.
        assert isinstance(connection, ObjstoreConnection)
        return connection.opened()
