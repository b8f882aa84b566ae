"""Updates: a change of a key, encoded once for every subscriber whatever its transport.

Owns the two shapes of an update, the original's ``{"key": K, "value": V}``
and the revision form ``{"key": K, "value": V, "rev": N}`` (with ``"deleted"``
and ``"expired"`` for a deletion), their bytes and their WebSocket frames.
Pure: imports neither asyncio nor websockets and knows nothing of who
receives them.
"""

from __future__ import annotations

from . import jsonvalues
from .wsframes import text_frame

__all__ = [
    "ExpiredUpdate",
    "TimedUpdate",
    "Update",
    "encode_key",
    "encode_rev_update",
    "encode_update",
]


class Update:
    """A change of a key, encoded once for every subscriber whatever its transport.

    Two forms, each made on first use and then shared by every subscriber of
    that form: ``payload`` is the original's ``{"key": K, "value": V}`` (a
    deletion has ``null``), for subscriptions made without a request id;
    ``rev_payload`` adds ``"rev"``, and ``"deleted"`` (and ``"expired"``) for a
    deletion, for subscriptions made with one. ``ws_frame`` and
    ``rev_ws_frame`` are the same as WebSocket text frames.
    """

    __slots__ = ("_payload", "_rev_payload", "_rev_ws_frame", "_value", "_ws_frame", "key", "rev")

    #: The key was deleted because its time to live ran out (see ExpiredUpdate).
    expired = False
    #: The key's deadline (ms since the epoch) and whether it is ephemeral (see TimedUpdate).
    expires: int | None = None
    ephemeral = False

    def __init__(self, key: str, value: bytes | None, rev: int = 0) -> None:
        self.key = key
        self._value = value
        #: The revision of the change; 0 where revisions are not known.
        self.rev = rev
        # Encoded on first use: a set nobody subscribed to encodes nothing. The
        # revision form's slots are left unset until then (an assignment less each).
        self._payload: bytes | None = None
        self._ws_frame: bytes | None = None

    _rev_payload: bytes
    _rev_ws_frame: bytes

    @property
    def value(self) -> bytes | None:
        """The new value as compact JSON; None for a deletion."""
        return self._value

    @property
    def deleted(self) -> bool:
        """Whether the change removed the key."""
        return self._value is None

    @property
    def payload(self) -> bytes:
        """``{"key": K, "value": V}`` as JSON bytes."""
        payload = self._payload
        if payload is None:
            payload = self._payload = encode_update(self.key, self._value)
        return payload

    @property
    def ws_frame(self) -> bytes:
        """The payload as one WebSocket text frame."""
        frame = self._ws_frame
        if frame is None:
            frame = self._ws_frame = text_frame(self.payload)
        return frame

    @property
    def rev_payload(self) -> bytes:
        """``{"key": K, "value": V, "rev": N}`` (plus ``"deleted"``, ``"expired"``) as JSON."""
        # Unset until first asked for (a set nobody subscribed to in this form never
        # is); getattr's default costs a third of catching the AttributeError.
        payload: bytes | None = getattr(self, "_rev_payload", None)
        if payload is None:
            payload = self._rev_payload = encode_rev_update(
                self.key,
                self._value,
                self.rev,
                expired=self.expired,
                expires=self.expires,
                ephemeral=self.ephemeral,
            )
        return payload

    @property
    def rev_ws_frame(self) -> bytes:
        """The revision form as one WebSocket text frame."""
        frame: bytes | None = getattr(self, "_rev_ws_frame", None)
        if frame is None:
            frame = self._rev_ws_frame = text_frame(self.rev_payload)
        return frame


class ExpiredUpdate(Update):
    """The deletion of a key whose time to live ran out: its revision form says so."""

    __slots__ = ()
    expired = True

    def __init__(self, key: str, rev: int) -> None:
        super().__init__(key, None, rev)


class TimedUpdate(Update):
    """A new value of a key that has a deadline or is ephemeral: its revision form says so."""

    __slots__ = ("ephemeral", "expires")

    def __init__(
        self, key: str, value: bytes, rev: int, expires: int | None, ephemeral: bool
    ) -> None:
        super().__init__(key, value, rev)
        self.expires = expires
        self.ephemeral = ephemeral


def encode_key(key: str) -> bytes:
    """Encode a key as a JSON string, once, for reuse in many replies.

    Keys are valid Unicode (see :func:`~objstore.keys.validate_key`), so this
    never raises.
    """
    return jsonvalues.encode(key)


def encode_update(key: str | bytes, value: bytes | None) -> bytes:
    """Encode ``{"key": K, "value": V}``; *value* is compact JSON, None for ``null``.

    *key* may be given already encoded by :func:`encode_key`.
    """
    key_json = key if isinstance(key, bytes) else encode_key(key)
    return b'{"key":' + key_json + b',"value":' + (b"null" if value is None else value) + b"}"


def encode_rev_update(
    key: str | bytes,
    value: bytes | None,
    rev: int,
    *,
    expired: bool = False,
    expires: int | None = None,
    ephemeral: bool = False,
) -> bytes:
    """Encode the revision form of an update: ``{"key": K, "value": V, "rev": N}``.

    A deletion (*value* None) adds ``"deleted": true``, and ``"expired": true``
    when its time to live ran out. A value with a deadline adds ``"expires"``
    (ms since the epoch); an ephemeral one ``"ephemeral": true``.
    """
    key_json = key if isinstance(key, bytes) else encode_key(key)
    if value is None:
        tail = b',"deleted":true,"expired":true}' if expired else b',"deleted":true}'
        return b'{"key":' + key_json + b',"value":null,"rev":%d' % rev + tail
    tail = b"}"
    if expires is not None or ephemeral:
        tail = (
            (b',"expires":%d' % expires if expires is not None else b"")
            + (b',"ephemeral":true' if ephemeral else b"")
            + b"}"
        )
    return b'{"key":%b,"value":%b,"rev":%d%b' % (key_json, value, rev, tail)
