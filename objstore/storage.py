"""The storage seam: what the service needs of a store, whatever keeps the data.

Owns the interface between :mod:`objstore.service` and a backend. The file
store (:class:`objstore.store.Store`: values in memory, one JSON file per key,
revisions beside them) is one implementation; a backend on Redis or Valkey,
shared by several servers, is meant to be another. Knows nothing of the wire
protocol, subscribers or sockets.

The contract:

- Values are compact JSON bytes; a key without a value reads as None with
  revision 0.
- Every change takes the next revision of one counter; ``rev`` is the last.
- A write is visible to reads as soon as the call returns, and durable when
  its :data:`~objstore.writer.WriteResult` (asked for with ``wait``) resolves
  to None; it resolves to the error when it could not be made durable.
- ``if_rev`` is checked and the write applied as one step: a mismatch raises
  :class:`~objstore.errors.Conflict` and changes nothing.
- ``changes_since`` answers from a bounded history, or None when it cannot
  answer exactly.
- Changes are published through :meth:`Storage.when_durable`: at once, or (a
  backend that promises durability first) once the writes before them are.
- Deadlines are kept by the backend; the caller asks for the keys that are
  due (``expire_due``) when ``next_deadline`` comes.

A backend on a network store will answer writes later, not at once: this
interface is synchronous because the file store is, and the service keeps
every call site in one module so that it can grow awaitables in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import Protocol, TypeVar

from .keyspace import Change
from .writer import FailureCallback, WriteResult

__all__ = ["Owner", "Storage"]

#: Who owns an ephemeral key: a connection's session.
Owner = Hashable

_T = TypeVar("_T")


class Storage(Protocol):
    """Values with revisions, deadlines and owners; listing and a change history."""

    @property
    def rev(self) -> int:
        """The revision of the last change."""

    def get(self, key: str) -> bytes | None:
        """The value of *key* as compact JSON, or None."""

    def revision(self, key: str) -> int:
        """The revision of *key*'s last change, 0 when it has no value."""

    def set(self, key: str, value: bytes, on_failure: FailureCallback | None = None) -> int:
        """Store a permanent value (the plain ``set``); return its revision."""

    def write(
        self,
        key: str,
        value: bytes | None,
        *,
        if_rev: int | None = None,
        ttl: float | None = None,
        owner: Owner | None = None,
        keep_owner: bool = False,
        wait: bool = False,
        in_file: bool = False,
        on_failure: FailureCallback | None = None,
    ) -> tuple[int | None, WriteResult | None]:
        """Set (*value*) or delete (None) *key*; return the revision and, with *wait*,
        a future of its durability: with *in_file*, of the key's file holding it (as
        the original's ``POST /set`` promised), not only of a journal that does.

        The revision is None for the deletion of a key without a value (nothing
        changed). *ttl* (seconds) gives the key a deadline, its absence takes it
        away. *owner* makes the key ephemeral, owned by it; *keep_owner* keeps
        the key's kind and owner as they are (a patch, an increment).
        """

    def keys(self, prefix: str = "", after: str | None = None, limit: int = 100) -> list[str]:
        """At most *limit* keys starting with *prefix*, after *after*, in UTF-8 byte order."""

    def matching(self, prefix: str) -> Iterator[str]:
        """Every key starting with *prefix*, in order."""

    def changes_since(self, since: int) -> list[Change] | None:
        """The latest change of each key changed after *since*, or None when not known."""

    def details(self, key: str) -> tuple[int | None, bool]:
        """*key*'s deadline (ms since the epoch, None without one) and whether it is ephemeral."""

    def changed_at(self, key: str) -> int | None:
        """When *key* last changed (ms since the epoch, late by at most a second), or None
        when that is not known (or it has no value)."""

    def mark_time(self, now: float) -> None:
        """Every change so far happened by *now* (seconds since the epoch); called about
        once a second, so that :meth:`changed_at` needs no clock read per change."""

    def next_deadline(self) -> float | None:
        """The earliest deadline of a key (seconds since the epoch), or None."""

    def expire_due(self, now: float) -> list[tuple[str, int]]:
        """Delete every key whose deadline is at or before *now*; return (key, revision)."""

    def release(self, owner: Owner) -> list[tuple[str, int]]:
        """Delete every key *owner* owns; return (key, revision) of each."""

    def readiness(self) -> str | None:
        """None when the backend can take writes; else the reason, a few words naming no
        file or address (shown to anyone who asks). The file store: loaded, and its
        writes succeeding; a network backend adds being reachable."""

    def when_durable(
        self, deliver: Callable[[_T], object], key_of: Callable[[_T], str]
    ) -> Callable[[_T], object]:
        """How to publish: *deliver* itself where changes are published as made, else a
        function that calls it once the writes made before each call are durable (or
        failed), in the order of the calls (so that updates keep their order); one
        waiting may be replaced by a later one of the same key (*key_of*)."""
