"""The one error tree of objstore.

Owns every exception the package raises on purpose. Client mistakes
(:class:`ClientError`) are kept apart from storage failures
(:class:`StorageError`) and startup problems (:class:`StartupError`), so that
callers can tell "reply with an error" from "log and report" from "exit".
Messages are lowercase sentences that name the offending value.
"""

from __future__ import annotations

import json

__all__ = [
    "ERROR_CODES",
    "ClientError",
    "Conflict",
    "Forbidden",
    "InvalidJSON",
    "InvalidKey",
    "InvalidMessage",
    "InvalidValue",
    "NotFound",
    "ObjstoreError",
    "StartupError",
    "StorageError",
    "TooLarge",
    "UnsupportedType",
    "describe",
]

#: The stable set of error codes of protocol 2 (docs/protocol.md, section 1.2).
ERROR_CODES = (
    "invalid_json",
    "invalid_message",
    "invalid_key",
    "invalid_value",
    "not_found",
    "conflict",
    "too_large",
    "forbidden",
    "storage",
    "internal",
)


class ObjstoreError(Exception):
    """Root of every error objstore raises on purpose."""

    #: The code of protocol 2 replies (one of :data:`ERROR_CODES`).
    code = "internal"


class ClientError(ObjstoreError):
    """The client sent something we cannot accept; the message is safe to send back."""

    #: HTTP status used when this error answers an HTTP request.
    http_status = 400
    code = "invalid_message"
    #: The id of the message it answers, once known (a reply then carries it and a code).
    request_id: int | str | None = None
    #: The index of the operation of a batch that failed, if so.
    op: int | None = None
    #: Answer with a code even without an id (an id that was itself refused).
    coded = False


class InvalidMessage(ClientError):
    """A message that is not an object, has a bad ``action``, or a field of the wrong type."""


class UnsupportedType(InvalidMessage):
    """A body of a content type the route does not take (HTTP only)."""

    http_status = 415


class InvalidJSON(InvalidMessage):
    """A message or body that is not valid JSON."""

    code = "invalid_json"


class InvalidKey(ClientError):
    """A key that is missing, not a string, empty, too long or not valid Unicode."""

    code = "invalid_key"


class InvalidValue(ClientError):
    """A value that is missing or cannot be stored as JSON."""

    code = "invalid_value"


class NotFound(ClientError):
    """The key has no value (HTTP only: over WebSocket a missing key reads as null)."""

    code = "not_found"
    http_status = 404


class TooLarge(ClientError):
    """A batch, a listing or a patched value beyond its limit."""

    code = "too_large"
    http_status = 413


class Conflict(ClientError):
    """A compare-and-set whose expected revision is not the key's; nothing changed.

    Carries the key's current revision and value (compact JSON, None when the
    key has none), so that the client can retry at once.
    """

    code = "conflict"
    http_status = 409

    def __init__(self, message: str, rev: int, value: bytes | None) -> None:
        super().__init__(message)
        self.rev = rev
        self.value = value
        #: The value is not told: the client may write the key but not read it.
        self.value_hidden = False

    @classmethod
    def mismatch(cls, key: str, rev: int, expected: int, value: bytes | None) -> Conflict:
        """The key is at *rev* (holding *value*), not at the *expected* revision."""
        return cls(
            f"conflict: key {describe(key)} is at revision {rev}, not {expected}", rev, value
        )


class Forbidden(ClientError):
    """An operation the client's token (or, without one, anonymous clients) may not do.

    Checked before the store is looked at, so that it never tells whether a
    key exists. ``unauthenticated``: no token, or an unknown one, was given
    (HTTP 401 rather than 403).
    """

    code = "forbidden"
    http_status = 403
    # New to every route and message, so always with its code, even where the
    # original's errors had none.
    coded = True

    def __init__(self, message: str, *, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.unauthenticated = unauthenticated
        if unauthenticated:
            self.http_status = 401


class StorageError(ObjstoreError):
    """A value could not be written to, or read from, the cache folder."""

    code = "storage"


class StartupError(ObjstoreError):
    """The server cannot start; the message says what to do about it."""


def describe(value: object, limit: int = 60) -> str:
    """Return *value* as JSON text for an error message, cut at *limit* characters.

    Values in messages come from JSON, so they are shown as JSON (``"a"``,
    ``null``, ``5``) rather than as Python reprs.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text
