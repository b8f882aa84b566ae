"""Replies of protocol 2, sans I/O: ``{"id": I, "ok": true, ...}`` and errors with a code.

Owns the bytes of every reply to a message that carries an id (from the
typed results of :mod:`objstore.results`), of the replies of the original's
shape to messages without one, of error replies with their ``code``, and of
the messages a subscription sends before its reply (``{"reset": true, ...}``).
Replies are built from members already encoded as JSON (values are stored
encoded), so nothing is decoded again.
Imports neither asyncio nor websockets; knows nothing of storage.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from . import jsonvalues, tallies
from .commands import RequestId
from .errors import ClientError, Conflict, ObjstoreError
from .results import (
    Authenticated,
    BatchWritten,
    Done,
    KeyDetails,
    Listed,
    Read,
    Result,
    Subscribed,
    Written,
)
from .updates import encode_key, encode_update

__all__ = [
    "encode_error_reply",
    "encode_id",
    "encode_keys",
    "encode_ok",
    "encode_plain_reply",
    "encode_reply",
    "encode_reset",
    "rev_member",
    "value_member",
]


def encode_id(request_id: RequestId) -> bytes:
    """The id as JSON, exactly as the client sent it (an integer or a string)."""
    return jsonvalues.encode(request_id)


def encode_ok(request_id: RequestId, members: bytes = b"") -> bytes:
    """``{"id": I, "ok": true, ...}``; *members* are encoded, each starting with a comma."""
    return b'{"id":' + encode_id(request_id) + b',"ok":true' + members + b"}"


def rev_member(rev: int) -> bytes:
    """``,"rev":N``."""
    return b',"rev":' + str(rev).encode()


def value_member(value: bytes | None) -> bytes:
    """``,"value":V`` with *value* compact JSON, ``null`` for None."""
    return b',"value":' + (b"null" if value is None else value)


def encode_keys(
    keys: Iterable[str], next_key: str | None, details: Iterable[KeyDetails] | None = None
) -> bytes:
    """``,"keys":[...],"next":K`` for a listing.

    With *details*, each key is an object: ``{"key", "rev", "changed", "size"}``,
    plus ``"expires"`` and ``"ephemeral": true`` when they apply.
    """
    if details is None:
        listed = b",".join(jsonvalues.encode(key) for key in keys)
    else:
        listed = b",".join(_key_details(key, one) for key, one in zip(keys, details, strict=True))
    return (
        b',"keys":['
        + listed
        + b'],"next":'
        + (b"null" if next_key is None else jsonvalues.encode(next_key))
    )


def _key_details(key: str, details: KeyDetails) -> bytes:
    changed = b"null" if details.changed is None else b"%d" % details.changed
    members = b'{"key":%s,"rev":%d,"changed":%s,"size":%d' % (
        jsonvalues.encode(key),
        details.rev,
        changed,
        details.size,
    )
    if details.expires is not None:
        members += b',"expires":%d' % details.expires
    if details.ephemeral:
        members += b',"ephemeral":true'
    return members + b"}"


def encode_error_reply(
    error: ObjstoreError | str, request_id: RequestId | None, code: str | None = None
) -> bytes:
    """``{"id": I, "error": "...", "code": "..."}`` (without ``id`` when there is none).

    A conflict adds the key's current ``rev`` and ``value`` (no ``value`` when the
    client may not read the key); an error in a
    batch adds ``op``, the index of the operation that failed.
    """
    if code is None:
        code = error.code if isinstance(error, ObjstoreError) else "internal"
    tallies.count_error(code)
    head = b"{" if request_id is None else b'{"id":' + encode_id(request_id) + b","
    # ASCII escapes keep the reply valid UTF-8 even when it quotes a lone surrogate.
    text = json.dumps(str(error)).encode()
    tail = b',"code":"' + code.encode() + b'"'
    if isinstance(error, ClientError):
        op = error.op
        if op is not None:
            tail += b',"op":' + str(op).encode()
    if isinstance(error, Conflict):
        tail += rev_member(error.rev)
        if not error.value_hidden:
            tail += value_member(error.value)
    return head + b'"error":' + text + tail + b"}"


def encode_reset(kind: str, name: str) -> bytes:
    """``{"reset": true, "key": K}`` (or ``"prefix"``): drop what you hold of it."""
    return b'{"reset":true,"' + kind.encode() + b'":' + jsonvalues.encode(name) + b"}"


def encode_reply(request_id: RequestId, result: Result) -> bytes:
    """The reply to a message with an id: ``{"id": I, "ok": true, ...}``."""
    return encode_ok(request_id, _members(result))


def _members(result: Result) -> bytes:
    if isinstance(result, Written):
        return _written_members(result)
    if isinstance(result, Read):
        members = (
            b',"key":'
            + encode_key(result.key)
            + value_member(result.value)
            + rev_member(result.rev)
        )
        if result.expires is not None:
            members += b',"expires":%d' % result.expires
        if result.ephemeral:
            members += b',"ephemeral":true'
        return members
    if isinstance(result, Subscribed):
        members = rev_member(result.rev)
        if result.reset is not None:
            members += b',"reset":true' if result.reset else b',"reset":false'
        return members
    if isinstance(result, Listed):
        return encode_keys(result.keys, result.next, result.details)
    if isinstance(result, BatchWritten):
        return (
            rev_member(result.rev)
            + b',"results":['
            + b",".join(b"{" + _written_members(one)[1:] + b"}" for one in result.results)
            + b"]"
        )
    if isinstance(result, Authenticated):
        return b',"name":' + jsonvalues.encode(result.name)
    assert isinstance(result, Done)
    return b""


def _written_members(result: Written) -> bytes:
    members = rev_member(result.rev)
    if result.deleted is not None:
        return members + (b',"deleted":true' if result.deleted else b',"deleted":false')
    if result.action in ("patch", "incr"):
        return members + value_member(result.value)
    return members


def encode_plain_reply(result: Result) -> bytes | None:
    """The reply to a message without an id, in the original's shape; None when it has none.

    A get answers ``{"key": K, "value": V}`` and a listing ``{"keys": [...], "next": K}``;
    writes and subscriptions answer nothing, as in the original.
    """
    if isinstance(result, Read):
        return encode_update(result.key, result.value)
    if isinstance(result, Listed):
        return b"{" + encode_keys(result.keys, result.next, result.details)[1:] + b"}"
    return None
