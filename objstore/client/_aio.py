"""The asyncio client: one WebSocket to objstore, reconnected with backoff, watches resumed.

Owns the connection's lifecycle (connect, read, reconnect with exponential
backoff and full jitter), the futures of requests in flight and the wake-ups of
watches. What to send and what a reply means is the sans-I/O core's
(``_core``); this module must not know the server's modules.

Bounds: a message from the server is refused past ``MAX_MESSAGE`` bytes (the
connection is then lost and reconnected); each watch queues as ``_core`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from ssl import SSLContext
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ._core import (
    MAX_MESSAGE,
    Change,
    Decode,
    Delete,
    Entry,
    Incr,
    KeyInfo,
    Link,
    Op,
    Patch,
    Set,
    WatchState,
    backoff_delay,
    check_url,
    decode_batch,
    decode_delete,
    decode_entry,
    decode_key_details,
    decode_keys,
    decode_rev,
    decode_value,
    dial_error_message,
    keys_message,
)
from .errors import ConnectionLostError, ForbiddenError, ObjstoreError, refused_handshake

__all__ = ["Store", "Watch", "connect"]

_Future = asyncio.Future[Any]


class Store:
    """A connection to objstore. Use :func:`connect`: ``async with connect(url) as store``."""

    def __init__(
        self,
        url: str,
        *,
        reconnect: bool = True,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        open_timeout: float = 10,
        token: str | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        check_url(url, ssl)
        self.url = url
        # Sent in the handshake: Authorization: Bearer TOKEN.
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self.ssl = ssl
        self.reconnect = reconnect
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self._watches: list[WatchState] = []
        self._wakeups: dict[WatchState, asyncio.Event] = {}
        self._link: Link[_Future] | None = None
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._ended: ObjstoreError | None = None
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Make the first connection; raises ConnectionLostError if it cannot be made."""
        ws = await self._dial()
        link = self._attach(ws)
        self._runner = asyncio.create_task(self._run(ws, link))

    async def close(self) -> None:
        """Close the connection; waiting requests and watches end with ConnectionLostError."""
        self._closed = True
        self._end(ConnectionLostError("the client was closed"))
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner

    # The connection.

    async def _dial(self) -> ClientConnection:
        # websockets makes its default context only when ssl is not passed at all.
        tls: dict[str, Any] = {} if self.ssl is None else {"ssl": self.ssl}
        try:
            return await ws_connect(
                self.url,
                open_timeout=self.open_timeout,
                max_size=MAX_MESSAGE,
                compression=None,
                additional_headers=self._headers,
                **tls,
            )
        except InvalidStatus as exc:
            refused = refused_handshake(
                self.url, exc.response.status_code, exc.response.body or b""
            )
            if refused is not None:
                raise refused from None
            raise ConnectionLostError(f"cannot connect to {self.url}: {exc}") from exc
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise ConnectionLostError(dial_error_message(self.url, exc)) from exc

    def _attach(self, ws: ClientConnection) -> Link[_Future]:
        self._ws = ws
        self._link = link = Link[_Future](self._watches)
        self._connected.set()
        return link

    async def _run(self, ws: ClientConnection, link: Link[_Future]) -> None:
        while True:
            for watch in list(self._watches):
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(link.subscribe(watch))
            with contextlib.suppress(ConnectionClosed):
                async for text in ws:
                    self._dispatch(link, text)
            self._connected.clear()
            self._ws = None
            for future in link.lose():
                if not future.done():
                    future.set_exception(
                        ConnectionLostError(
                            f"the connection to {self.url} was lost before the reply"
                        )
                    )
            if self._closed:
                return
            if not self.reconnect:
                self._end(ConnectionLostError(f"the connection to {self.url} was lost"))
                return
            try:
                ws = await self._redial()
            except ForbiddenError as exc:  # the token was revoked: retrying cannot help
                self._end(exc)
                return
            link = self._attach(ws)

    async def _redial(self) -> ClientConnection:
        attempt = 0
        while True:
            await asyncio.sleep(backoff_delay(attempt, self.min_backoff, self.max_backoff))
            attempt += 1
            try:
                return await self._dial()
            except ConnectionLostError:
                continue

    def _dispatch(self, link: Link[_Future], text: str | bytes) -> None:
        completed, touched = link.receive(text)
        for future, result, error in completed:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        for watch in touched:
            self._wakeups[watch].set()

    def _end(self, error: ObjstoreError) -> None:
        self._ended = error
        self._connected.set()
        for watch in self._watches:
            watch.fail(error)
            self._wakeups[watch].set()

    async def _current(self) -> tuple[ClientConnection, Link[_Future]]:
        if self._ended is not None:
            raise ConnectionLostError(self._ended.message)
        if not self._connected.is_set():
            try:
                await asyncio.wait_for(self._connected.wait(), self.open_timeout)
            except TimeoutError:
                raise ConnectionLostError(
                    f"no connection to {self.url} within {self.open_timeout} s; "
                    "check that objstore runs there"
                ) from None
        if self._ended is not None:
            raise ConnectionLostError(self._ended.message)
        assert self._ws is not None
        assert self._link is not None
        return self._ws, self._link

    async def _request(self, message: dict[str, Any], decode: Decode) -> Any:
        ws, link = await self._current()
        future: _Future = asyncio.get_running_loop().create_future()
        text = link.request(message, decode, future)
        try:
            await ws.send(text)
        except ConnectionClosed:
            if not future.done():
                future.set_exception(self._lost())
        return await future

    def _lost(self) -> ConnectionLostError:
        return ConnectionLostError(
            f"the connection to {self.url} was lost before the reply; "
            "the request may or may not have been applied"
        )

    # Operations.

    async def get(self, key: str) -> Any:
        """The value of *key*, or None when it has none."""
        entry: Entry = await self._request({"action": "get", "key": key}, decode_entry)
        return entry.value

    async def entry(self, key: str) -> Entry:
        """The value and revision of *key* (None and 0 when it has none)."""
        result: Entry = await self._request({"action": "get", "key": key}, decode_entry)
        return result

    async def set(
        self,
        key: str,
        value: Any,
        *,
        if_rev: int | None = None,
        ttl: float | None = None,
        ephemeral: bool = False,
    ) -> int:
        """Store *value* under *key* once on disk; the new revision."""
        rev: int = await self._request(
            Set(key, value, if_rev, ttl, ephemeral).message(), decode_rev
        )
        return rev

    async def delete(self, key: str, *, if_rev: int | None = None) -> bool:
        """Remove *key*; whether it had a value."""
        deleted: bool = await self._request(Delete(key, if_rev).message(), decode_delete)
        return deleted

    async def patch(
        self, key: str, patch: Any, *, if_rev: int | None = None, ttl: float | None = None
    ) -> Any:
        """Apply an RFC 7386 merge patch to *key*; the new value."""
        return await self._request(Patch(key, patch, if_rev, ttl).message(), decode_value)

    async def incr(
        self, key: str, by: int | float = 1, *, if_rev: int | None = None, ttl: float | None = None
    ) -> Any:
        """Add *by* to the number under *key* (missing: 0); the new value."""
        return await self._request(Incr(key, by, if_rev, ttl).message(), decode_value)

    async def batch(self, ops: list[Op]) -> list[Any]:
        """Apply *ops* all or none; per op, what it returns alone (rev, deleted, value)."""
        ops = list(ops)
        message = {"action": "batch", "ops": [op.message() for op in ops]}
        results: list[Any] = await self._request(message, decode_batch(ops))
        return results

    async def keys(self, prefix: str = "", *, page: int = 100) -> AsyncIterator[str]:
        """Every key starting with *prefix*, in UTF-8 order, fetched *page* keys at a time."""
        async for key in self._list(prefix, page, False, decode_keys):
            yield key

    async def key_details(self, prefix: str = "", *, page: int = 100) -> AsyncIterator[KeyInfo]:
        """As :meth:`keys`, each key with its revision, time of last change, size,
        deadline and whether it is ephemeral (:class:`KeyInfo`)."""
        async for info in self._list(prefix, page, True, decode_key_details):
            yield info

    async def _list(
        self, prefix: str, page: int, details: bool, decode: Decode
    ) -> AsyncIterator[Any]:
        after: str | None = None
        while True:
            found, after = await self._request(keys_message(prefix, page, after, details), decode)
            for item in found:
                yield item
            if after is None:
                return

    def watch(
        self, *, key: str | None = None, prefix: str | None = None, since: int | None = None
    ) -> Watch:
        """Changes of *key* or of every key starting with *prefix*: see :class:`Watch`."""
        return Watch(self, WatchState(key=key, prefix=prefix, since=since))

    # Watches.

    async def _start(self, state: WatchState) -> None:
        ws, link = await self._current()
        self._watches.append(state)
        self._wakeups[state] = asyncio.Event()
        with contextlib.suppress(ConnectionClosed):
            await ws.send(link.subscribe(state))

    async def _stop(self, state: WatchState) -> None:
        if state not in self._watches:
            return
        self._watches.remove(state)
        del self._wakeups[state]
        if any(other.target == state.target for other in self._watches):
            return
        name, value = state.target
        if self._ws is not None and self._link is not None and self._ended is None:
            with contextlib.suppress(ObjstoreError):
                await self._request({"action": "unsubscribe", name: value}, lambda reply: None)

    async def _next(self, state: WatchState) -> Change:
        while True:
            change = state.pop()
            if change is not None:
                return change
            if state.error is not None:
                await self._stop(state)
                raise state.error
            wakeup = self._wakeups[state]
            wakeup.clear()
            await wakeup.wait()


class Watch:
    """An async iterator of a watch's :class:`Change` s; subscribes at the first read.

    Use it as ``async with store.watch(prefix="p/") as changes: async for change
    in changes: ...`` so that leaving the block unsubscribes; a plain ``async
    for`` stays subscribed until :meth:`aclose` or the store is closed.
    """

    def __init__(self, store: Store, state: WatchState) -> None:
        self._store = store
        self._state = state
        self._started = False

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        if not self._started:
            self._started = True
            await self._store._start(self._state)
        try:
            return await self._store._next(self._state)
        except ConnectionLostError:
            if self._store._closed:
                raise StopAsyncIteration from None
            raise

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching (unsubscribing if no other watch has the same target)."""
        await self._store._stop(self._state)

    @property
    def rev(self) -> int:
        """The revision this watch would resume from (0: none yet)."""
        return self._state.resume


def connect(
    url: str,
    *,
    reconnect: bool = True,
    min_backoff: float = 0.1,
    max_backoff: float = 10.0,
    open_timeout: float = 10,
    token: str | None = None,
    ssl: SSLContext | None = None,
) -> Store:
    """A :class:`Store` for *url* (``ws://host:port/ws``), to use with ``async with``.

    A ``wss://`` url is checked against the system's certificate authorities, or
    against those of *ssl*, an :class:`ssl.SSLContext` (for a self-signed certificate:
    ``ssl.create_default_context(cafile="cert.pem")``).
    """
    return Store(
        url,
        reconnect=reconnect,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        open_timeout=open_timeout,
        token=token,
        ssl=ssl,
    )
