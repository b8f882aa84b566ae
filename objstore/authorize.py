"""Whether a grant allows a command: every operation of the protocol, checked before it runs.

Owns the question "may this client do that?" for each command and route, and
the refusal it gets. Pure: no store, no I/O. The answer never depends on
whether a key exists, so a refusal tells nothing about the store.

- ``get``, ``subscribe`` of a key: the key must be readable.
- ``set``, ``patch``, ``incr``, ``delete``: the key must be writable (writing
  does not imply reading; a conflict then hides the value: see
  :func:`hide_unreadable`).
- ``batch``: every op, before any is applied: one forbidden op fails it all,
  with that op's index.
- ``keys`` and ``subscribe`` of a prefix: some key under the prefix must be
  readable; they then cover only the readable part (the service narrows them
  with :meth:`~objstore.permissions.Grant.readable_within`).
- ``unsubscribe`` and ``auth``: always allowed.
"""

from __future__ import annotations

from .commands import (
    Auth,
    Batch,
    Command,
    Get,
    Keys,
    Subscribe,
    SubscribePrefix,
    Unsubscribe,
    UnsubscribePrefix,
)
from .errors import ClientError, Conflict, Forbidden, describe
from .permissions import Grant

__all__ = ["check", "hide_unreadable", "require_read", "require_write", "unknown_token"]

_HOW = "present a token (Authorization: Bearer TOKEN, or an auth message)"


def _refusal(grant: Grant, doing: str) -> Forbidden:
    if grant.name == "anonymous":
        return Forbidden(f"forbidden: {doing} needs a token; {_HOW}", unauthenticated=True)
    return Forbidden(f'forbidden: token "{grant.name}" may not do this: {doing}')


def unknown_token() -> Forbidden:
    """The refusal of a token that is not one of the configured tokens."""
    return Forbidden(
        "forbidden: unknown token; check it, or ask for one of the tokens this server accepts",
        unauthenticated=True,
    )


def require_read(grant: Grant, key: str) -> None:
    """Raise :class:`Forbidden` unless *grant* may read *key*."""
    if not grant.can_read(key):
        raise _refusal(grant, f"reading key {describe(key)}")


def require_write(grant: Grant, key: str) -> None:
    """Raise :class:`Forbidden` unless *grant* may write *key*."""
    if not grant.can_write(key):
        raise _refusal(grant, f"writing key {describe(key)}")


def require_prefix(grant: Grant, prefix: str, doing: str) -> None:
    """Raise :class:`Forbidden` unless *grant* may read some key starting with *prefix*."""
    if not grant.readable_within(prefix):
        what = "every key" if prefix == "" else f"keys starting with {describe(prefix)}"
        raise _refusal(grant, f"{doing} {what}")


def check(grant: Grant, command: Command) -> None:
    """Raise :class:`Forbidden` unless *grant* allows *command* (see the module's rules)."""
    if isinstance(command, Get | Subscribe):
        require_read(grant, command.key)
    elif isinstance(command, Keys):
        require_prefix(grant, command.prefix, "listing")
    elif isinstance(command, SubscribePrefix):
        require_prefix(grant, command.prefix, "subscribing to")
    elif isinstance(command, Batch):
        for index, op in enumerate(command.ops):
            try:
                require_write(grant, op.key)
            except ClientError as exc:
                exc.op = index
                raise
    elif isinstance(command, Unsubscribe | UnsubscribePrefix | Auth):
        pass
    else:
        require_write(grant, command.key)


def hide_unreadable(grant: Grant, error: ClientError, keys: list[str]) -> None:
    """Drop the current value from a conflict on a key *grant* may not read."""
    if isinstance(error, Conflict) and error.op is not None and error.op < len(keys):
        key = keys[error.op]
    elif isinstance(error, Conflict) and len(keys) == 1:
        key = keys[0]
    else:
        return
    if not grant.can_read(key):
        error.value = None
        error.value_hidden = True
