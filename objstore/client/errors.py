"""The client's one error tree, mirroring the error codes of protocol 2.

Owns the exceptions the client raises and the mapping from an error reply
(``{"error": ..., "code": ..., "op"?, "rev"?, "value"?}``) to one of them. It
knows the protocol's codes (docs/protocol.md, section 1.2), and nothing of
sockets or of the server's own exception classes: the client must not import
the server.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ConflictError",
    "ConnectionLostError",
    "ForbiddenError",
    "InternalError",
    "InvalidJSONError",
    "InvalidKeyError",
    "InvalidMessageError",
    "InvalidValueError",
    "NotFoundError",
    "ObjstoreError",
    "StorageError",
    "TooLargeError",
    "error_from_reply",
    "refused_handshake",
]


class ObjstoreError(Exception):
    """The root of every error the client raises.

    *code* is the protocol's error code (``"conflict"``, ``"invalid_key"``...),
    or None for errors of the client itself. *op* is the index of the failing
    operation when the error answers a batch, else None.
    """

    def __init__(self, message: str, code: str | None = None, *, op: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.op = op


class InvalidJSONError(ObjstoreError):
    """The server could not read a message as JSON (``invalid_json``)."""


class InvalidMessageError(ObjstoreError):
    """A message the protocol does not allow: a bad field, id, ttl... (``invalid_message``)."""


class InvalidKeyError(ObjstoreError):
    """A key or prefix the server refuses (``invalid_key``)."""


class InvalidValueError(ObjstoreError):
    """A value that cannot be stored, or an increment of a non-number (``invalid_value``)."""


class NotFoundError(ObjstoreError):
    """The key has no value (``not_found``; HTTP only in protocol 2)."""


class ConflictError(ObjstoreError):
    """An ``if_rev`` that did not match: carries the key's current *rev* and *value*.

    *rev* is 0 and *value* None when the key has no value, so that a caller can
    retry at once without reading the key again.
    """

    def __init__(
        self,
        message: str,
        code: str | None = "conflict",
        *,
        op: int | None = None,
        rev: int = 0,
        value: Any = None,
    ) -> None:
        super().__init__(message, code, op=op)
        self.rev = rev
        self.value = value


class TooLargeError(ObjstoreError):
    """A batch, listing, value or subscription count beyond its limit (``too_large``)."""


class ForbiddenError(ObjstoreError):
    """The token (or, without one, anonymous clients) may not do this (``forbidden``).

    Also raised when connecting with a token the server does not know: the
    client then does not retry, since retrying cannot help.
    """


class StorageError(ObjstoreError):
    """The change stands in memory but could not be written to disk yet (``storage``)."""


class InternalError(ObjstoreError):
    """A bug in the server; its log has the details (``internal``)."""


class ConnectionLostError(ObjstoreError):
    """The connection was lost (or could not be made) before the server answered.

    A write that fails with this error may or may not have been applied: read
    the key again (or use ``if_rev``) before retrying it.
    """


_BY_CODE: dict[str, type[ObjstoreError]] = {
    "invalid_json": InvalidJSONError,
    "invalid_message": InvalidMessageError,
    "invalid_key": InvalidKeyError,
    "invalid_value": InvalidValueError,
    "not_found": NotFoundError,
    "too_large": TooLargeError,
    "forbidden": ForbiddenError,
    "storage": StorageError,
    "internal": InternalError,
}


def refused_handshake(url: str, status: int, body: bytes | bytearray) -> ObjstoreError | None:
    """The error of a handshake the server refused with 401 or 403; None for another status."""
    if status not in (401, 403):
        return None
    try:
        reply = json.loads(body)
    except ValueError:
        reply = None
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        return ForbiddenError(f"{url}: {reply['error']}", "forbidden")
    return ForbiddenError(f"{url} refused the connection with HTTP {status}", "forbidden")


def error_from_reply(reply: dict[str, Any]) -> ObjstoreError:
    """The exception an error reply stands for (an unknown code gives the root class)."""
    message = reply.get("error")
    if not isinstance(message, str):
        message = f"the server answered with an error without a message: {reply!r}"
    code = reply.get("code")
    if not isinstance(code, str):
        code = None
    op = reply.get("op")
    index = op if isinstance(op, int) and not isinstance(op, bool) else None
    if code == "conflict":
        rev = reply.get("rev")
        return ConflictError(
            message,
            code,
            op=index,
            rev=rev if isinstance(rev, int) and not isinstance(rev, bool) else 0,
            value=reply.get("value"),
        )
    cls = _BY_CODE.get(code or "", ObjstoreError)
    return cls(message, code, op=index)
