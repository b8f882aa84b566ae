"""The blocking client, for scripts, notebooks and devices without asyncio.

Owns a connection on ``websockets.sync.client``: a reader thread that hands
replies to the threads waiting for them, reconnects with backoff and full
jitter, and resubscribes every watch from its last revision. The same
sans-I/O core (``_core``) as the asyncio client says what to send and what a
reply means; this module must not know the server's modules.

Two locks: ``_state`` guards the core's bookkeeping and is held only briefly;
``_sending`` orders ids and frames, so that a send blocked by a server that
reads nothing never stops the reader thread from taking replies.
Bounds: as the asyncio client (``MAX_MESSAGE`` per message; watch queues as
``_core`` says).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from ssl import SSLContext
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

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

_Future = Future[Any]


class Store:
    """A blocking connection to objstore. Use :func:`connect`: ``with connect(url) as store``."""

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
        self._state = threading.Condition()
        self._sending = threading.Lock()
        self._watches: list[WatchState] = []
        self._link: Link[_Future] | None = None
        self._ws: ClientConnection | None = None
        self._closed = threading.Event()
        self._ended: ObjstoreError | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Make the first connection; raises ConnectionLostError if it cannot be made."""
        ws = self._dial()
        link = self._attach(ws)
        self._reader = threading.Thread(
            target=self._run, args=(ws, link), name="objstore-client", daemon=True
        )
        self._reader.start()

    def close(self) -> None:
        """Close the connection; waiting requests and watches end with ConnectionLostError."""
        self._closed.set()
        self._end(ConnectionLostError("the client was closed"))
        ws = self._ws
        if ws is not None:
            ws.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join()

    # The connection.

    def _dial(self) -> ClientConnection:
        try:
            return ws_connect(
                self.url,
                open_timeout=self.open_timeout,
                max_size=MAX_MESSAGE,
                compression=None,
                additional_headers=self._headers,
                ssl=self.ssl,
                legacy=True,
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
        with self._state:
            self._ws = ws
            self._link = link = Link[_Future](self._watches)
            self._state.notify_all()
        return link

    def _run(self, ws: ClientConnection, link: Link[_Future]) -> None:
        while True:
            with self._sending:
                with self._state:
                    texts = [link.subscribe(watch) for watch in self._watches]
                try:
                    for text in texts:
                        ws.send(text)
                except ConnectionClosed:
                    pass
            try:
                for message in ws:
                    self._dispatch(link, message)
            except ConnectionClosed:
                pass
            with self._state:
                self._ws = None
                lost = link.lose()
            for future in lost:
                if not future.done():
                    future.set_exception(self._lost())
            if self._closed.is_set():
                return
            if not self.reconnect:
                self._end(ConnectionLostError(f"the connection to {self.url} was lost"))
                return
            try:
                redialed = self._redial()
            except ForbiddenError as exc:  # the token was revoked: retrying cannot help
                self._end(exc)
                return
            if redialed is None:
                return
            ws = redialed
            link = self._attach(ws)

    def _redial(self) -> ClientConnection | None:
        attempt = 0
        while True:
            if self._closed.wait(backoff_delay(attempt, self.min_backoff, self.max_backoff)):
                return None
            attempt += 1
            try:
                ws = self._dial()
            except ConnectionLostError:
                continue
            if self._closed.is_set():
                ws.close()
                return None
            return ws

    def _dispatch(self, link: Link[_Future], text: str | bytes) -> None:
        with self._state:
            completed, touched = link.receive(text)
            if touched:
                self._state.notify_all()
        for future, result, error in completed:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    def _end(self, error: ObjstoreError) -> None:
        with self._state:
            self._ended = error
            for watch in self._watches:
                watch.fail(error)
            self._state.notify_all()

    def _lost(self) -> ConnectionLostError:
        return ConnectionLostError(
            f"the connection to {self.url} was lost before the reply; "
            "the request may or may not have been applied"
        )

    def _current(self) -> tuple[ClientConnection, Link[_Future]]:
        """The open connection, waiting up to open_timeout for one; call with _state held."""
        ready = self._state.wait_for(
            lambda: self._ended is not None or self._ws is not None, self.open_timeout
        )
        if self._ended is not None:
            raise ConnectionLostError(self._ended.message)
        if not ready or self._ws is None or self._link is None:
            raise ConnectionLostError(
                f"no connection to {self.url} within {self.open_timeout} s; "
                "check that objstore runs there"
            )
        return self._ws, self._link

    def _request(self, message: dict[str, Any], decode: Decode) -> Any:
        future: _Future = Future()
        with self._sending:
            with self._state:
                ws, link = self._current()
                text = link.request(message, decode, future)
            try:
                ws.send(text)
            except ConnectionClosed:
                if not future.done():
                    future.set_exception(self._lost())
        return future.result()

    # Operations: as the asyncio client's, blocking.

    def get(self, key: str) -> Any:
        """The value of *key*, or None when it has none."""
        entry: Entry = self._request({"action": "get", "key": key}, decode_entry)
        return entry.value

    def entry(self, key: str) -> Entry:
        """The value and revision of *key* (None and 0 when it has none)."""
        result: Entry = self._request({"action": "get", "key": key}, decode_entry)
        return result

    def set(
        self,
        key: str,
        value: Any,
        *,
        if_rev: int | None = None,
        ttl: float | None = None,
        ephemeral: bool = False,
    ) -> int:
        """Store *value* under *key* once on disk; the new revision."""
        rev: int = self._request(Set(key, value, if_rev, ttl, ephemeral).message(), decode_rev)
        return rev

    def delete(self, key: str, *, if_rev: int | None = None) -> bool:
        """Remove *key*; whether it had a value."""
        deleted: bool = self._request(Delete(key, if_rev).message(), decode_delete)
        return deleted

    def patch(
        self, key: str, patch: Any, *, if_rev: int | None = None, ttl: float | None = None
    ) -> Any:
        """Apply an RFC 7386 merge patch to *key*; the new value."""
        return self._request(Patch(key, patch, if_rev, ttl).message(), decode_value)

    def incr(
        self, key: str, by: int | float = 1, *, if_rev: int | None = None, ttl: float | None = None
    ) -> Any:
        """Add *by* to the number under *key* (missing: 0); the new value."""
        return self._request(Incr(key, by, if_rev, ttl).message(), decode_value)

    def batch(self, ops: list[Op]) -> list[Any]:
        """Apply *ops* all or none; per op, what it returns alone (rev, deleted, value)."""
        ops = list(ops)
        message = {"action": "batch", "ops": [op.message() for op in ops]}
        results: list[Any] = self._request(message, decode_batch(ops))
        return results

    def keys(self, prefix: str = "", *, page: int = 100) -> Iterator[str]:
        """Every key starting with *prefix*, in UTF-8 order, fetched *page* keys at a time."""
        return self._list(prefix, page, False, decode_keys)

    def key_details(self, prefix: str = "", *, page: int = 100) -> Iterator[KeyInfo]:
        """As :meth:`keys`, each key with its revision, time of last change, size,
        deadline and whether it is ephemeral (:class:`KeyInfo`)."""
        return self._list(prefix, page, True, decode_key_details)

    def _list(self, prefix: str, page: int, details: bool, decode: Decode) -> Iterator[Any]:
        after: str | None = None
        while True:
            found, after = self._request(keys_message(prefix, page, after, details), decode)
            yield from found
            if after is None:
                return

    def watch(
        self, *, key: str | None = None, prefix: str | None = None, since: int | None = None
    ) -> Watch:
        """Changes of *key* or of every key starting with *prefix*: see :class:`Watch`."""
        return Watch(self, WatchState(key=key, prefix=prefix, since=since))

    # Watches.

    def _start(self, state: WatchState) -> None:
        with self._sending:
            with self._state:
                ws, link = self._current()
                self._watches.append(state)
                text = link.subscribe(state)
            with contextlib.suppress(ConnectionClosed):
                ws.send(text)

    def _stop(self, state: WatchState) -> None:
        with self._state:
            if state not in self._watches:
                return
            self._watches.remove(state)
            if any(other.target == state.target for other in self._watches):
                return
            if self._ws is None or self._ended is not None:
                return
        name, value = state.target
        with contextlib.suppress(ObjstoreError):
            self._request({"action": "unsubscribe", name: value}, lambda reply: None)

    def _next(self, state: WatchState, timeout: float | None) -> Change | None:
        with self._state:
            while True:
                change = state.pop()
                if change is not None:
                    return change
                if state.error is not None:
                    break
                if not self._state.wait(timeout):
                    return None
        self._stop(state)
        raise state.error


class Watch:
    """A blocking iterator of a watch's :class:`Change` s; subscribes at the first read.

    Use it as ``with store.watch(prefix="p/") as changes: for change in changes:``
    so that leaving the block unsubscribes. :meth:`next` takes a timeout.
    """

    def __init__(self, store: Store, state: WatchState) -> None:
        self._store = store
        self._state = state
        self._started = False

    def __iter__(self) -> Watch:
        return self

    def __next__(self) -> Change:
        change = self.next()
        assert change is not None
        return change

    def next(self, timeout: float | None = None) -> Change | None:
        """The next change, waiting up to *timeout* seconds (None: for ever); None on timeout."""
        if not self._started:
            self._started = True
            self._store._start(self._state)
        try:
            return self._store._next(self._state, timeout)
        except ConnectionLostError:
            if self._store._closed.is_set():
                raise StopIteration from None
            raise

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop watching (unsubscribing if no other watch has the same target)."""
        self._store._stop(self._state)

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
    """A blocking :class:`Store` for *url* (``ws://host:port/ws``), to use with ``with``.

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
