"""Counts of what the server did, kept as plain ints where it happens, read when scraped.

Owns the counters that have no other home: WebSocket messages by action and
errors sent by code (process-wide, since the parser and the encoders are pure
functions with no server to hand), and the per-server counts of deliveries,
conflations and slow clients closed (:class:`ServerTallies`). Bumping one is an
index or an attribute increment: the hot path pays nothing more, no lock, no
clock. Knows nothing of Prometheus (:mod:`objstore.metrics` reads these), of
sockets or of the store.

The process-wide counts only grow. In production one process runs one server;
tests that start several servers in one process compare two readings.

Memory: fixed. One int per action and per error code: the codes are the stable
:data:`~objstore.errors.ERROR_CODES`, any other code is counted as
``internal``, so a client cannot grow the table.
"""

from __future__ import annotations

from typing import Final

from .commands import ACTIONS
from .errors import ERROR_CODES

__all__ = [
    "MESSAGE_ACTIONS",
    "ServerTallies",
    "count_error",
    "count_message",
    "errors_sent",
    "messages_received",
]

#: The labels of messages counted: the actions of the protocol, and ``other``
#: for a message whose action is missing or unknown, or that is not a JSON object.
MESSAGE_ACTIONS: Final = (*ACTIONS, "other")
#: Indexes into :data:`messages_received`, for the parser's branches.
SET: Final = 2
GET: Final = 3
OTHER: Final = len(MESSAGE_ACTIONS) - 1
_ACTION_INDEX: Final = {name: index for index, name in enumerate(MESSAGE_ACTIONS[:-1])}

#: WebSocket messages received, indexed as :data:`MESSAGE_ACTIONS`.
messages_received: list[int] = [0] * len(MESSAGE_ACTIONS)
#: Error replies and error bodies sent, by code (every code of ERROR_CODES is here).
errors_sent: dict[str, int] = dict.fromkeys(ERROR_CODES, 0)


def count_message(action: object) -> None:
    """Count a message whose ``action`` member is *action* (anything the client sent)."""
    index = _ACTION_INDEX.get(action, OTHER) if type(action) is str else OTHER
    messages_received[index] += 1


def count_error(code: str) -> None:
    """Count an error sent with *code* (one of ERROR_CODES, else counted as internal)."""
    if code not in errors_sent:
        code = "internal"
    errors_sent[code] += 1


class ServerTallies:
    """The counts of one server that have no other home; plain attributes, bumped in place."""

    __slots__ = ("conflated", "delivered", "slow_closed")

    def __init__(self) -> None:
        #: Updates queued to subscribers (one per subscriber per update), before
        #: any conflation.
        self.delivered = 0
        #: Updates a congested subscriber never got, replaced by a newer one of the key.
        self.conflated = 0
        #: WebSocket clients closed for not reading (the stall timeout, code 1008).
        self.slow_closed = 0
