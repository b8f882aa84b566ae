"""One WebSocket client of a shared store: its messages wait for its own writes where needed.

Owns the order of a client's messages when its writes are decided in Redis
and take a round trip (:mod:`objstore.sharedservice`). With the file store a
write is visible when its message is handled, so a ``get`` after a ``set``
reads the new value; here the same holds because a read, and anything after
it, waits until the client's writes before it have been applied by this
instance. Writes do not wait for each other (they go to Redis in order), so
a client streaming sets keeps them flowing; a write that may be computed again
(a patch) holds every later message until it is settled.

Memory: at most :data:`~objstore.session.MAX_WAITING_REPLIES` writes in flight
and as many messages (or :data:`~objstore.session.MAX_WAITING_BYTES` bytes)
held; past either the session is backlogged and the connection stops
reading until they go through.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .commands import Batch, Command, Delete, Incr, Patch, Set
from .errors import StorageError
from .permissions import Grant
from .results import Result
from .session import MAX_WAITING_BYTES, MAX_WAITING_REPLIES, ClientSession
from .writer import WriteResult

__all__ = ["SharedClientSession"]

_WRITES = (Set, Delete, Patch, Incr, Batch)


class SharedClientSession(ClientSession):
    """A :class:`ClientSession` whose reads wait for its writes to a shared store."""

    __slots__ = ("_current", "_execute_now", "_held", "_held_bytes", "_holding_all", "_in_flight")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._in_flight = 0
        self._holding_all = 0
        self._held: deque[str | bytes] | None = None
        self._held_bytes = 0
        self._current: str | bytes = b""
        super().__init__(*args, **kwargs)

    def _set_grant(self, grant: Grant) -> None:
        super()._set_grant(grant)
        self._execute_now = self._execute
        self._execute = self._execute_or_hold

    def receive(self, message: str | bytes) -> None:
        held = self._held
        if held is not None:
            held.append(message)
            self._held_bytes += len(message)
            self._check_held(held)
            return
        self._current = message
        super().receive(message)

    def _execute_or_hold(self, client: ClientSession, command: Command) -> Result | None:
        if self._in_flight and (self._holding_all or not isinstance(command, _WRITES)):
            held = self._held = deque((self._current,))
            self._held_bytes = len(self._current)
            self.messages -= 1  # counted again when it runs
            self._check_held(held)
            return None
        return self._execute_now(client, command)

    def hold_until(self, settled: WriteResult, everything: bool) -> None:
        """A write of this client is in flight until *settled*: later reads wait for it,
        and with *everything* (a write that may be computed again) every later message."""
        self.write_sent()
        if everything:
            self._holding_all += 1
        settled.add_done_callback(self._settled_all if everything else self._settled)

    def write_sent(self) -> None:
        """A plain set of this client is in flight (until :meth:`write_done`)."""
        self._in_flight += 1
        if self._in_flight >= MAX_WAITING_REPLIES:
            self.backlogged = True

    def write_done(self, error: StorageError | None, rev: int) -> None:
        """A plain set of this client is applied (at *rev*), or failed (the client is
        told)."""
        if error is not None:
            self.write_failed(error)
        self._settled(None)

    def _settled_all(self, _: object) -> None:
        self._holding_all -= 1
        self._settled(_)

    def _settled(self, _: object) -> None:
        self._in_flight -= 1
        if self._in_flight:
            return
        held = self._held
        if held is not None:
            self._held = None
            self._held_bytes = 0
            while held:
                self.receive(held.popleft())
                if self._held is not None:  # held again, behind a write it made
                    self._held.extend(held)
                    break
        if (
            self.backlogged
            and self._held is None
            and self._in_flight < MAX_WAITING_REPLIES
            and self._waiting is None
        ):
            self.backlogged = False
            drained = self.on_drained
            if drained is not None:
                self.on_drained = None
                drained()

    def _check_held(self, held: deque[str | bytes]) -> None:
        if len(held) >= MAX_WAITING_REPLIES or self._held_bytes >= MAX_WAITING_BYTES:
            self.backlogged = True

    def close(self, code: int | None, reason: str) -> None:
        self._held = None
        super().close(code, reason)
