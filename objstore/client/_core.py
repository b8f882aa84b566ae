"""Sans-I/O core of the client: requests out, replies and updates in, watch resume state.

Owns the shape of every request, the decoding of every reply into a result or an
exception, the routing of updates to watches, and what a watch must remember to
resume after a reconnection without missing or repeating a change. It must not
know sockets, threads or asyncio: the asyncio client and the blocking facade
feed it text and hand back its results on their own terms.

Bounds: a watch whose reader falls behind keeps at most ``MAX_PENDING`` changes
queued in arrival order; past that, a new update of a key that is already queued
replaces it (moving to the end, so the queue stays in revision order, as the
server itself conflates for slow readers). The queue then holds at most
``MAX_PENDING`` changes plus one per key of the watch.
"""

from __future__ import annotations

import json
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from .errors import InvalidMessageError, InvalidValueError, ObjstoreError, error_from_reply

__all__ = [
    "MAX_MESSAGE",
    "MAX_PENDING",
    "Change",
    "Completion",
    "Decode",
    "Delete",
    "Entry",
    "Incr",
    "KeyInfo",
    "Link",
    "Op",
    "Patch",
    "Set",
    "WatchState",
    "backoff_delay",
    "check_url",
    "decode_batch",
    "decode_delete",
    "decode_entry",
    "decode_key_details",
    "decode_keys",
    "decode_rev",
    "decode_value",
    "dial_error_message",
    "keys_message",
]

#: The largest message accepted from the server: a value of the server's
#: default --max-size (16 MiB) with its escaping and the reply around it.
MAX_MESSAGE = 64 * 1024 * 1024


def backoff_delay(attempt: int, min_backoff: float, max_backoff: float) -> float:
    """Seconds to wait before reconnection *attempt* (0, 1, ...): full jitter."""
    return random.uniform(0, min(max_backoff, min_backoff * 2 ** min(attempt, 60)))


def check_url(url: str, tls: ssl.SSLContext | None = None) -> None:
    """Refuse a url that is not ws:// or wss://, or *tls* with a ws:// url, before connecting."""
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(
            f"invalid url: {url!r}; give a ws:// or wss:// url, e.g. ws://localhost:3000/ws"
        )
    if tls is not None and url.startswith("ws://"):
        raise ValueError(
            f"ssl is given for {url!r}, which does not use TLS; give a wss:// url, or no ssl"
        )


def dial_error_message(url: str, exc: BaseException) -> str:
    """What a failed connection to *url* says, with what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"cannot connect to {url}: its certificate is not trusted "
            f"({exc.verify_message}); pass ssl= an SSLContext that trusts it, like "
            "ssl.create_default_context(cafile=...)"
        )
    return f"cannot connect to {url}: {exc or type(exc).__name__}; check that objstore runs there"


#: Changes a watch queues in arrival order before it conflates by key.
MAX_PENDING = 10_000

T = TypeVar("T")
Decode = Callable[[dict[str, Any]], Any]
#: A request answered: its token, its result, or the error it failed with.
Completion = tuple[T, Any, ObjstoreError | None]


@dataclass(frozen=True, slots=True)
class Entry:
    """A key's value and revision (``value`` None and ``rev`` 0 when it has none).

    ``expires`` is its deadline in milliseconds since the Unix epoch (None when
    it has none); ``ephemeral`` whether it belongs to a connection.
    """

    key: str
    value: Any
    rev: int
    expires: int | None = None
    ephemeral: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """One event of a watch.

    ``kind`` is ``"update"`` (a key's new value, or its deletion), ``"reset"``
    (drop what you hold for this watch: its current state follows; ``key`` is
    None) or ``"ready"`` (the end of a (re)subscription's snapshot or catch-up;
    ``rev`` is the store's revision then, ``key`` is None).
    """

    kind: Literal["update", "reset", "ready"]
    key: str | None = None
    value: Any = None
    rev: int = 0
    deleted: bool = False
    expired: bool = False
    #: A value's deadline, ms since the Unix epoch (None: none), and whether it is ephemeral.
    expires: int | None = None
    ephemeral: bool = False


def _optional(message: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """*message* with every field of *fields* that is not None (or False)."""
    for name, value in fields.items():
        if value is not None and value is not False:
            message[name] = value
    return message


@dataclass(frozen=True, slots=True)
class Set:
    """A ``set`` operation of a batch."""

    key: str
    value: Any
    if_rev: int | None = None
    ttl: float | None = None
    ephemeral: bool = False

    def message(self) -> dict[str, Any]:
        """The operation as the protocol spells it."""
        return _optional(
            {"action": "set", "key": self.key, "value": self.value},
            ifRev=self.if_rev,
            ttl=self.ttl,
            ephemeral=self.ephemeral,
        )


@dataclass(frozen=True, slots=True)
class Delete:
    """A ``delete`` operation of a batch."""

    key: str
    if_rev: int | None = None

    def message(self) -> dict[str, Any]:
        """The operation as the protocol spells it."""
        return _optional({"action": "delete", "key": self.key}, ifRev=self.if_rev)


@dataclass(frozen=True, slots=True)
class Patch:
    """A ``patch`` (RFC 7386 merge patch) operation of a batch."""

    key: str
    value: Any
    if_rev: int | None = None
    ttl: float | None = None

    def message(self) -> dict[str, Any]:
        """The operation as the protocol spells it."""
        return _optional(
            {"action": "patch", "key": self.key, "value": self.value},
            ifRev=self.if_rev,
            ttl=self.ttl,
        )


@dataclass(frozen=True, slots=True)
class Incr:
    """An ``incr`` operation of a batch."""

    key: str
    by: int | float = 1
    if_rev: int | None = None
    ttl: float | None = None

    def message(self) -> dict[str, Any]:
        """The operation as the protocol spells it."""
        return _optional(
            {"action": "incr", "key": self.key, "by": self.by}, ifRev=self.if_rev, ttl=self.ttl
        )


Op = Set | Delete | Patch | Incr


def _int(reply: dict[str, Any], name: str) -> int:
    value = reply.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidMessageError(f"the server's reply has no integer {name!r}: {reply!r}")
    return value


def decode_rev(reply: dict[str, Any]) -> int:
    """A ``set`` reply: the new revision."""
    return _int(reply, "rev")


def decode_value(reply: dict[str, Any]) -> Any:
    """A ``patch`` or ``incr`` reply: the new value."""
    return reply.get("value")


def decode_delete(reply: dict[str, Any]) -> bool:
    """A ``delete`` reply: whether a value was removed."""
    return reply.get("deleted") is True


def decode_entry(reply: dict[str, Any]) -> Entry:
    """A ``get`` reply: the key, its value and revision."""
    return Entry(
        str(reply.get("key")),
        reply.get("value"),
        _int(reply, "rev"),
        _expires(reply),
        reply.get("ephemeral") is True,
    )


def _expires(message: dict[str, Any]) -> int | None:
    expires = message.get("expires")
    return expires if isinstance(expires, int) and not isinstance(expires, bool) else None


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a detailed listing tells of a key.

    ``changed`` is the time of its last change in milliseconds since the Unix
    epoch, late by at most about a second (None when the server does not know
    it, as after a crash); ``size`` the bytes of its value as JSON; ``expires``
    and ``ephemeral`` as in :class:`Entry`.
    """

    key: str
    rev: int
    changed: int | None
    size: int
    expires: int | None = None
    ephemeral: bool = False


def keys_message(prefix: str, page: int, after: str | None, details: bool) -> dict[str, Any]:
    """The ``keys`` request for one page."""
    message: dict[str, Any] = {"action": "keys", "prefix": prefix, "limit": page}
    return _optional(message, after=after, details=details)


def decode_keys(reply: dict[str, Any]) -> tuple[list[str], str | None]:
    """A ``keys`` reply: the page of keys, and the ``after`` of the next page (or None)."""
    keys, after = _page(reply)
    return [str(key) for key in keys], after


def decode_key_details(reply: dict[str, Any]) -> tuple[list[KeyInfo], str | None]:
    """A detailed ``keys`` reply: what it says of each key, and the next page's ``after``."""
    entries, after = _page(reply)
    found = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
            raise InvalidMessageError(f"the server's keys reply is malformed: {reply!r}")
        changed, size = entry.get("changed"), entry.get("size")
        found.append(
            KeyInfo(
                entry["key"],
                _int(entry, "rev"),
                changed if isinstance(changed, int) else None,
                size if isinstance(size, int) else 0,
                _expires(entry),
                entry.get("ephemeral") is True,
            )
        )
    return found, after


def _page(reply: dict[str, Any]) -> tuple[list[Any], str | None]:
    keys = reply.get("keys")
    after = reply.get("next")
    if not isinstance(keys, list) or not (after is None or isinstance(after, str)):
        raise InvalidMessageError(f"the server's keys reply is malformed: {reply!r}")
    return keys, after


def decode_batch(ops: list[Op]) -> Decode:
    """A ``batch`` reply: per operation, what the same operation alone returns."""

    def decode(reply: dict[str, Any]) -> list[Any]:
        results = reply.get("results")
        if not isinstance(results, list) or len(results) != len(ops):
            raise InvalidMessageError(f"the server's batch reply is malformed: {reply!r}")
        decoded: list[Any] = []
        for op, result in zip(ops, results, strict=True):
            if isinstance(op, Set):
                decoded.append(decode_rev(result))
            elif isinstance(op, Delete):
                decoded.append(decode_delete(result))
            else:
                decoded.append(decode_value(result))
        return decoded

    return decode


class WatchState:
    """What one watch holds: its target, its queue of changes, and where to resume.

    ``highest`` is the highest revision delivered (to the queue) since the last
    reset; an update at or below it is a repeat and is dropped. ``resume`` is
    the revision to resubscribe ``since``: the highest revision delivered or
    acknowledged by a ready reply, whichever is higher; 0 means subscribe anew.
    """

    def __init__(
        self, *, key: str | None = None, prefix: str | None = None, since: int | None = None
    ) -> None:
        if (key is None) == (prefix is None):
            raise ValueError("watch takes exactly one of key= and prefix=")
        self.key = key
        self.prefix = prefix
        self.highest = since or 0
        self.resume = since or 0
        self.error: ObjstoreError | None = None
        self._queue: dict[int, Change] = {}
        self._queued_key: dict[str, int] = {}
        self._seq = 0
        self.in_flight = False
        self._held: dict[str, dict[str, Any]] = {}
        self._reset_seen = False

    @property
    def target(self) -> tuple[str, str]:
        """``("key", K)`` or ``("prefix", P)``: what the server subscribes."""
        if self.key is not None:
            return ("key", self.key)
        assert self.prefix is not None
        return ("prefix", self.prefix)

    def matches(self, key: str) -> bool:
        """Whether an update of *key* belongs to this watch."""
        if self.key is not None:
            return key == self.key
        assert self.prefix is not None
        return key.startswith(self.prefix)

    def subscribe_message(self) -> dict[str, Any]:
        """The subscribe request (without its id) that starts or resumes this watch."""
        name, value = self.target
        message: dict[str, Any] = {"action": "subscribe", name: value}
        if self.resume > 0:
            message["since"] = self.resume
        return message

    def begin(self) -> None:
        """A (re)subscription was sent: hold updates until its reply."""
        self.in_flight = True
        self._held.clear()
        self._reset_seen = False

    def abandon(self) -> None:
        """The connection was lost before the subscription's reply: forget what was held."""
        self.in_flight = False
        self._held.clear()
        self._reset_seen = False

    def on_update(self, update: dict[str, Any]) -> bool:
        """Queue an update unless it repeats one delivered; whether it was queued.

        While the subscription is in flight, updates are held instead: the ones
        that came through other subscriptions of the connection before the
        snapshot are superseded by it, so only each key's latest is kept.
        """
        rev = update.get("rev")
        key = update.get("key")
        if not isinstance(rev, int) or isinstance(rev, bool) or not isinstance(key, str):
            return False
        if self.in_flight:
            held = self._held.get(key)
            if held is None or held["rev"] < rev:
                self._held[key] = update
            return False
        return self._deliver(key, rev, update)

    def _deliver(self, key: str, rev: int, update: dict[str, Any]) -> bool:
        if rev <= self.highest:
            return False
        self.highest = rev
        self.resume = max(self.resume, rev)
        deleted = update.get("deleted") is True
        change = Change(
            "update",
            key,
            None if deleted else update.get("value"),
            rev,
            deleted,
            update.get("expired") is True,
            _expires(update),
            update.get("ephemeral") is True,
        )
        if len(self._queue) >= MAX_PENDING and key in self._queued_key:
            del self._queue[self._queued_key[key]]
        self._push(change)
        self._queued_key[key] = self._seq
        return True

    def on_reset(self) -> None:
        """The server could not resume: what follows is the full current state."""
        self._reset_seen = True
        self._held.clear()

    def on_ready(self, reply: dict[str, Any]) -> None:
        """The subscribe reply: deliver the snapshot or catch-up, then a ready change."""
        rev = _int(reply, "rev")
        self.in_flight = False
        if self._reset_seen or reply.get("reset") is True:
            self.highest = 0
            self._push(Change("reset"))
        held = sorted(self._held.values(), key=lambda update: int(update["rev"]))
        self._held.clear()
        self._reset_seen = False
        for update in held:
            self._deliver(update["key"], update["rev"], update)
        self.resume = max(self.resume, rev)
        self._push(Change("ready", rev=rev))

    def fail(self, error: ObjstoreError) -> None:
        """End the watch with *error*, raised once the queued changes are read."""
        if self.error is None:
            self.error = error

    def _push(self, change: Change) -> None:
        self._seq += 1
        self._queue[self._seq] = change

    def pending(self) -> int:
        """How many changes wait to be read."""
        return len(self._queue)

    def pop(self) -> Change | None:
        """The oldest queued change, or None."""
        if not self._queue:
            return None
        seq = next(iter(self._queue))
        change = self._queue.pop(seq)
        if change.key is not None and self._queued_key.get(change.key) == seq:
            del self._queued_key[change.key]
        return change


class Link(Generic[T]):
    """One connection's bookkeeping: request ids, what waits for a reply, whom updates go to.

    *T* is the I/O layer's token for a waiting request (a future). Ids count
    up from 1 on each connection.
    """

    def __init__(self, watches: list[WatchState]) -> None:
        self._watches = watches
        self._next_id = 0
        self._pending: dict[int, tuple[Decode, T]] = {}
        self._subscriptions: dict[int, WatchState] = {}
        self.lost = False

    def request(self, message: dict[str, Any], decode: Decode, token: T) -> str:
        """The text of *message* with a new id; *token* is answered by :meth:`receive`."""
        text = _encode({**message, "id": self._next_id + 1})
        self._next_id += 1
        self._pending[self._next_id] = (decode, token)
        return text

    def subscribe(self, watch: WatchState) -> str:
        """The text that (re)subscribes *watch* on this connection."""
        self._next_id += 1
        self._subscriptions[self._next_id] = watch
        watch.begin()
        return _encode({**watch.subscribe_message(), "id": self._next_id})

    def receive(self, text: str | bytes) -> tuple[list[Completion[T]], set[WatchState]]:
        """Handle one message from the server.

        Returns the requests it completes, as ``(token, result, error)``, and the
        watches that got something new to read.
        """
        try:
            message = json.loads(text)
        except ValueError:
            return [], set()
        if not isinstance(message, dict):
            return [], set()
        ident = message.get("id")
        if isinstance(ident, int) and not isinstance(ident, bool):
            return self._reply(ident, message)
        if message.get("reset") is True:
            return [], self._reset(message)
        key = message.get("key")
        if not isinstance(key, str):
            return [], set()
        touched = {w for w in self._watches if w.matches(key) and w.on_update(message)}
        return [], touched

    def _reply(
        self, ident: int, message: dict[str, Any]
    ) -> tuple[list[Completion[T]], set[WatchState]]:
        ok = message.get("ok") is True
        watch = self._subscriptions.pop(ident, None)
        if watch is not None:
            if watch not in self._watches:
                return [], set()
            try:
                if not ok:
                    raise error_from_reply(message)
                watch.on_ready(message)
            except ObjstoreError as exc:
                watch.fail(exc)
            return [], {watch}
        entry = self._pending.pop(ident, None)
        if entry is None:
            return [], set()
        decode, token = entry
        if not ok:
            return [(token, None, error_from_reply(message))], set()
        try:
            return [(token, decode(message), None)], set()
        except ObjstoreError as exc:
            return [(token, None, exc)], set()

    def _reset(self, message: dict[str, Any]) -> set[WatchState]:
        touched: set[WatchState] = set()
        for watch in self._watches:
            name, value = watch.target
            if message.get(name) == value and watch.in_flight:
                watch.on_reset()
                touched.add(watch)
        return touched

    def lose(self) -> list[T]:
        """The connection is gone: the tokens of every request that waited for a reply."""
        self.lost = True
        tokens = [token for _, token in self._pending.values()]
        self._pending.clear()
        for watch in self._subscriptions.values():
            watch.abandon()
        self._subscriptions.clear()
        return tokens


def _encode(message: dict[str, Any]) -> str:
    try:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(
            f"invalid value: {exc}; send only JSON values (dict, list, str, finite numbers, "
            "bool, None)"
        ) from None
