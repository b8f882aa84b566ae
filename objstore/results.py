"""The typed results of commands: what the service did, for each transport to encode.

Owns the shapes the service hands back: a value read, a write made (with its
revision and, when asked, a future of its durability), a page of keys, a
subscription made, a batch. The WebSocket encoding is :mod:`objstore.replies`;
the HTTP one is :mod:`objstore.rest`. Pure data: knows nothing of encodings,
storage or sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .writer import WriteResult

__all__ = [
    "Authenticated",
    "BatchWritten",
    "Done",
    "KeyDetails",
    "Listed",
    "Read",
    "Result",
    "Subscribed",
    "Written",
]


@dataclass(slots=True)
class Read:
    """A key's value (None when it has none) and revision (0 then).

    ``expires`` is its deadline (ms since the epoch), ``ephemeral`` whether it
    belongs to a connection.
    """

    key: str
    value: bytes | None
    rev: int
    expires: int | None = None
    ephemeral: bool = False


@dataclass(slots=True)
class Written:
    """A write applied: its revision, and the future of its reaching disk.

    ``value`` is the new value of a patch or an increment (sent back to the
    client); ``deleted`` says, for a delete, whether a value was removed (when
    not, ``rev`` is the store's revision and nothing changed).
    """

    action: str
    key: str
    rev: int
    value: bytes | None = None
    deleted: bool | None = None
    #: Resolves to None once on disk, or to the error; None when not asked for.
    written: WriteResult | None = None


@dataclass(slots=True)
class BatchWritten:
    """Every write of a batch applied; ``rev`` is the store's revision after the last."""

    rev: int
    results: list[Written]
    written: WriteResult | None = None


@dataclass(slots=True)
class KeyDetails:
    """What a detailed listing says of a key.

    ``changed`` is the time of its last change (ms since the epoch, late by at
    most a second: see :mod:`objstore.changeclock`), None when not known;
    ``size`` the bytes of its value as JSON; ``expires`` its deadline (ms since
    the epoch), None without one.
    """

    rev: int
    changed: int | None
    size: int
    expires: int | None
    ephemeral: bool


@dataclass(slots=True)
class Authenticated:
    """An ``auth`` accepted: the connection now acts as the token named ``name``."""

    name: str


@dataclass(slots=True)
class Listed:
    """A page of keys, and the key to list after for the next page (None: the last).

    ``details``, for a detailed listing, holds what it says of each key, in order.
    """

    keys: list[str]
    next: str | None
    details: list[KeyDetails] | None = None


@dataclass(slots=True)
class Subscribed:
    """A subscription made, its first messages sent: the store's revision at its end.

    ``reset`` is None without ``since``, else whether the client had to start over.
    """

    rev: int
    reset: bool | None = None


@dataclass(slots=True)
class Done:
    """A command done that has nothing to tell but that it was (an unsubscribe)."""


#: What the service returns for a command.
Result = Read | Written | BatchWritten | Listed | Subscribed | Done | Authenticated
