"""The commands of the protocol, as typed values: what a client asks, whatever its transport.

Owns the shape of every command of the original protocol (``get``, ``set``,
``subscribe``, ``unsubscribe``) and of protocol 2 (``delete``, ``patch``,
``incr``, ``keys``, prefix subscriptions, ``batch``, ``auth``), and the limits on their
fields. Pure data: parsing them from JSON is :mod:`objstore.protocol`'s work,
applying them :mod:`objstore.service`'s.

A field that a message of the original protocol does not carry has a default
that makes the command behave exactly as the original: no ``id`` (no reply to a
write), no ``ifRev``, no ``ttl``, not ``ephemeral``.

Commands are not frozen: a frozen dataclass sets each field through
``object.__setattr__``, which made parsing a set 300 ns slower. Nothing
changes a command once it is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "ACTIONS",
    "DEFAULT_LIST_LIMIT",
    "MAX_BATCH_OPS",
    "MAX_ID_BYTES",
    "MAX_LIST_LIMIT",
    "MAX_PREFIX_SUBSCRIPTIONS",
    "MAX_REVISION",
    "MAX_TTL",
    "Auth",
    "Batch",
    "Command",
    "Delete",
    "Get",
    "Incr",
    "Keys",
    "Patch",
    "RequestId",
    "Set",
    "Subscribe",
    "SubscribePrefix",
    "Unsubscribe",
    "UnsubscribePrefix",
    "Write",
]

#: Every action a message may name, in the order error messages list them.
ACTIONS: Final = (
    "subscribe",
    "unsubscribe",
    "set",
    "get",
    "delete",
    "patch",
    "incr",
    "keys",
    "batch",
    "auth",
)

#: A request id: an integer of at most 53 bits, or a string of at most MAX_ID_BYTES bytes.
RequestId = int | str

#: Longest string id, in UTF-8 bytes.
MAX_ID_BYTES: Final = 64
#: Revisions (and integer ids) stay exact in every JSON reader: below 2**53.
MAX_REVISION: Final = 2**53 - 1
#: Longest time to live, in seconds: ten years.
MAX_TTL: Final = 315_360_000
#: Most operations in one batch.
MAX_BATCH_OPS: Final = 1000
#: Keys listed per page when the client does not say, and at most.
DEFAULT_LIST_LIMIT: Final = 100
MAX_LIST_LIMIT: Final = 1000
#: Most prefix subscriptions one connection may hold.
MAX_PREFIX_SUBSCRIPTIONS: Final = 1000


@dataclass(slots=True)
class Get:
    """Reply with the key's value (``null`` when it has none), and its revision with an id."""

    key: str
    id: RequestId | None = None


@dataclass(slots=True)
class Set:
    """Store a value and publish it to the key's subscribers.

    ``value`` is the value already encoded as compact UTF-8 JSON. ``ttl`` is in
    seconds; ``ephemeral`` makes the key belong to the connection that sets it.
    """

    key: str
    value: bytes
    id: RequestId | None = None
    if_rev: int | None = None
    ttl: float | None = None
    ephemeral: bool = False


@dataclass(slots=True)
class Delete:
    """Remove the key and its file; subscribers are told."""

    key: str
    id: RequestId | None = None
    if_rev: int | None = None


@dataclass(slots=True)
class Patch:
    """Apply an RFC 7386 merge patch (decoded JSON) to the key's value."""

    key: str
    patch: Any
    id: RequestId | None = None
    if_rev: int | None = None
    ttl: float | None = None


@dataclass(slots=True)
class Incr:
    """Add a number to the key's number (a missing key starts from 0)."""

    key: str
    by: int | float = 1
    id: RequestId | None = None
    if_rev: int | None = None
    ttl: float | None = None


#: The commands that change a key, alone or in a batch.
Write = Set | Delete | Patch | Incr


@dataclass(slots=True)
class Batch:
    """Apply every write, in order, or none of them."""

    ops: tuple[Write, ...]
    id: RequestId | None = None


@dataclass(slots=True)
class Keys:
    """List keys starting with ``prefix``, after ``after``, in UTF-8 byte order.

    With ``details``, each key comes with what a console shows of it.
    """

    prefix: str = ""
    after: str | None = None
    limit: int = DEFAULT_LIST_LIMIT
    id: RequestId | None = None
    #: List each key with its revision, time of last change, size, deadline and ownership.
    details: bool = False


@dataclass(slots=True)
class Subscribe:
    """Send the key's value now (if it has one) and on every later change.

    With ``since``, only what changed after that revision, if it is still known.
    """

    key: str
    id: RequestId | None = None
    since: int | None = None


@dataclass(slots=True)
class SubscribePrefix:
    """Send every key starting with ``prefix`` now, and every later change of one."""

    prefix: str
    id: RequestId | None = None
    since: int | None = None


@dataclass(slots=True)
class Unsubscribe:
    """Stop sending updates of the key."""

    key: str
    id: RequestId | None = None


@dataclass(slots=True)
class UnsubscribePrefix:
    """End the subscription to exactly this prefix."""

    prefix: str
    id: RequestId | None = None


@dataclass(slots=True)
class Auth:
    """Act with the rights of ``token`` from now on (browsers cannot send a header)."""

    token: str
    id: RequestId | None = None


Command = (
    Get
    | Set
    | Delete
    | Patch
    | Incr
    | Batch
    | Keys
    | Subscribe
    | SubscribePrefix
    | Unsubscribe
    | UnsubscribePrefix
    | Auth
)
