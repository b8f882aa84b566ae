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
    "ClientError",
    "InvalidKey",
    "InvalidMessage",
    "InvalidValue",
    "ObjstoreError",
    "StartupError",
    "StorageError",
    "describe",
]


class ObjstoreError(Exception):
    """Root of every error objstore raises on purpose."""


class ClientError(ObjstoreError):
    """The client sent something we cannot accept; the message is safe to send back."""

    #: HTTP status used when this error answers an HTTP request.
    http_status = 400


class InvalidMessage(ClientError):
    """A message that is not valid JSON, not an object, or has a bad ``action``."""


class InvalidKey(ClientError):
    """A key that is missing, not a string, empty, too long or not valid Unicode."""


class InvalidValue(ClientError):
    """A value that is missing or cannot be stored as JSON."""


class StorageError(ObjstoreError):
    """A value could not be written to, or read from, the cache folder."""


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
