"""objstore's Python client: ``objstore.client`` (asyncio) and ``objstore.client.sync``.

Owns the public surface of the client. The client speaks protocol 2 over one
WebSocket, reconnects by itself and resumes every watch; it must not import the
server's modules, so that it can be used without them.

>>> from objstore.client import Set, Incr
>>> Set("a", 1, ttl=5).message()
{'action': 'set', 'key': 'a', 'value': 1, 'ttl': 5}
>>> Incr("n", 2).message()
{'action': 'incr', 'key': 'n', 'by': 2}
"""

from __future__ import annotations

from ._aio import Store, Watch, connect
from ._core import Change, Delete, Entry, Incr, KeyInfo, Op, Patch, Set
from .errors import (
    ConflictError,
    ConnectionLostError,
    ForbiddenError,
    InternalError,
    InvalidJSONError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidValueError,
    NotFoundError,
    ObjstoreError,
    StorageError,
    TooLargeError,
)

__all__ = [
    "Change",
    "ConflictError",
    "ConnectionLostError",
    "Delete",
    "Entry",
    "ForbiddenError",
    "Incr",
    "InternalError",
    "InvalidJSONError",
    "InvalidKeyError",
    "InvalidMessageError",
    "InvalidValueError",
    "KeyInfo",
    "NotFoundError",
    "ObjstoreError",
    "Op",
    "Patch",
    "Set",
    "StorageError",
    "Store",
    "TooLargeError",
    "Watch",
    "connect",
]
