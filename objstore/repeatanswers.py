"""Answers to repeated HTTP reads, kept whole, so that a poller's request costs one lookup.

Owns a small table from the exact bytes of a request (with the local address it
came to) to the bytes of the answer it last got, and what that answer was made
from: the key's value (and its revision, for an answer that shows it) and the
access rules in force. A kept answer is used only while the value and the
rules are the very same objects (identity, not equality: every change of a key
stores a new value object and every reload makes new rules) and the revision is
the same, so it is never stale. The router decides which answers may be kept
(:class:`Reuse`); the origin checks depend on nothing but the request's bytes and
the local address.

Knows nothing of sockets, of routes or of the HTTP machine: the connection asks
for an answer to the bytes it received, and offers the answers it wrote.

Memory: at most :data:`MAX_ENTRIES` answers of at most :data:`MAX_ANSWER` bytes,
to requests of at most :data:`MAX_REQUEST` bytes; each also holds its key's value
(at most the answer's size), so the table holds at most about 9 MiB, and far less
in practice (a poller's answer is a few hundred bytes). When full, the oldest
answer goes; a client that sends ever-new requests only makes them go sooner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["MAX_ANSWER", "MAX_ENTRIES", "MAX_REQUEST", "RepeatAnswers", "Reuse"]

#: At most this many answers are kept.
MAX_ENTRIES = 512
#: Answers longer than this are not kept (their cost is in the copy, not the lookup).
MAX_ANSWER = 8 * 1024
#: Requests longer than this are not kept (a poller's request is a few hundred bytes).
MAX_REQUEST = 1024


class Reuse(NamedTuple):
    """What an answer was made from, as the router tells it: a key, its value and, when
    the answer shows it (an ``ETag``), its revision then."""

    key: str
    #: The value object the answer holds (None: the key had none).
    value: bytes | None
    #: The key's revision, when the answer depends on it (None: it does not).
    rev: int | None = None


class _Entry(NamedTuple):
    local_host: str
    answer: bytes
    key: str
    value: bytes | None
    rev: int | None
    rules: object


class RepeatAnswers:
    """Whole answers to requests seen before, valid while their key and rules stay.

    *value_of* gives a key's current value object, *rules_now* the access rules
    in force; both are called on every use of a kept answer. *revision_of* gives a
    key's revision, asked only for answers that show it: a value set again could be
    the very same object (CPython shares some small ones), under a new revision.
    """

    __slots__ = ("_entries", "_revision_of", "_rules_now", "_value_of")

    def __init__(
        self,
        value_of: Callable[[str], bytes | None],
        rules_now: Callable[[], object],
        revision_of: Callable[[str], int],
    ) -> None:
        self._value_of = value_of
        self._rules_now = rules_now
        self._revision_of = revision_of
        self._entries: dict[bytes, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, request: bytes, local_host: str) -> bytes | None:
        """The answer to *request* received on *local_host*, if one is kept and still true."""
        entry = self._entries.get(request)
        if entry is None:
            return None
        if (
            entry.local_host != local_host
            or self._value_of(entry.key) is not entry.value
            or self._rules_now() is not entry.rules
            or (entry.rev is not None and self._revision_of(entry.key) != entry.rev)
        ):
            return None
        return entry.answer

    def remember(self, request: bytes, local_host: str, answer: bytes, reuse: Reuse) -> None:
        """Keep *answer*, just written to *request*, made from *reuse* under the rules now."""
        if len(request) > MAX_REQUEST or len(answer) > MAX_ANSWER:
            return
        entries = self._entries
        if request not in entries and len(entries) >= MAX_ENTRIES:
            del entries[next(iter(entries))]  # the oldest
        entries[request] = _Entry(
            local_host, answer, reuse.key, reuse.value, reuse.rev, self._rules_now()
        )
