"""The wire protocol, sans I/O: client messages in, typed commands out; replies as bytes.

Owns the JSON message format of the original server (``subscribe``,
``unsubscribe``, ``set``, ``get``), the reply shapes ``{"key": K, "value": V}``
and the one error shape ``{"error": "<message>"}``. Imports neither asyncio nor
websockets and knows nothing of storage or subscribers.

Fields a message does not need are ignored, so that later versions can add
fields (request ids, revisions) without breaking older clients. A message (or
``POST /set`` body) that repeats a member name is refused, however the name is
escaped, so that anything that checks a message reads what objstore reads;
objects inside a value may repeat names, and there the last one wins. The
message object does not count toward the depth limit of values: a value may
nest :data:`~objstore.jsonvalues.MAX_DEPTH` levels inside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from . import jsonvalues
from .errors import ClientError, InvalidMessage, InvalidValue, describe
from .keys import validate_key
from .wsframes import text_frame

__all__ = [
    "ACTIONS",
    "Command",
    "Get",
    "Set",
    "Subscribe",
    "Unsubscribe",
    "Update",
    "encode_error",
    "encode_key",
    "encode_rev_update",
    "encode_update",
    "parse_message",
    "parse_set_body",
]

ACTIONS: Final = ("subscribe", "unsubscribe", "set", "get")
_EXPECTED_ACTIONS: Final = ", ".join(f'"{name}"' for name in ACTIONS)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Send the key's value now (if it has one) and on every later set."""

    key: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop sending updates of the key."""

    key: str


@dataclass(frozen=True, slots=True)
class Set:
    """Store a value and publish it to the key's subscribers.

    ``value`` is the value already encoded as compact UTF-8 JSON.
    """

    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Get:
    """Reply with the key's value, ``null`` when it has none."""

    key: str


Command = Subscribe | Unsubscribe | Set | Get


class Update:
    """A change of a key, encoded once for every subscriber whatever its transport.

    Two forms, each made on first use and then shared by every subscriber of
    that form: ``payload`` is the original's ``{"key": K, "value": V}`` (a
    deletion has ``null``), for subscriptions made without a request id;
    ``rev_payload`` adds ``"rev"``, and ``"deleted"`` (and ``"expired"``) for a
    deletion, for subscriptions made with one. ``ws_frame`` and
    ``rev_ws_frame`` are the same as WebSocket text frames.
    """

    __slots__ = (
        "_payload",
        "_rev_payload",
        "_rev_ws_frame",
        "_value",
        "_ws_frame",
        "expired",
        "key",
        "rev",
    )

    def __init__(
        self, key: str, value: bytes | None, rev: int = 0, *, expired: bool = False
    ) -> None:
        self.key = key
        self._value = value
        #: The revision of the change; 0 where revisions are not known.
        self.rev = rev
        #: The key was deleted because its time to live ran out.
        self.expired = expired
        # Encoded on first use: a set nobody subscribed to encodes nothing.
        self._payload: bytes | None = None
        self._ws_frame: bytes | None = None
        self._rev_payload: bytes | None = None
        self._rev_ws_frame: bytes | None = None

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
        payload = self._rev_payload
        if payload is None:
            payload = self._rev_payload = encode_rev_update(
                self.key, self._value, self.rev, expired=self.expired
            )
        return payload

    @property
    def rev_ws_frame(self) -> bytes:
        """The revision form as one WebSocket text frame."""
        frame = self._rev_ws_frame
        if frame is None:
            frame = self._rev_ws_frame = text_frame(self.rev_payload)
        return frame


def _decode_object(text: str, what: str) -> dict[str, Any]:
    try:
        # The object is the envelope: its members' values may nest MAX_DEPTH deep.
        data = jsonvalues.decode(text, 1)
    except jsonvalues.JSONDecodeError as exc:
        raise InvalidMessage(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessage(f"invalid {what}: expected a JSON object, got {describe(data)}")
    return data


def _refuse_duplicates(text: str, data: dict[str, Any], what: str) -> None:
    name = jsonvalues.duplicate_name(text, data)
    if name is not None:
        raise InvalidMessage(
            f"invalid {what}: duplicate member {describe(name)}; send each member once"
        )


def _set_from(data: dict[str, Any], what: str, text: str, envelope: str) -> Set:
    """The set that *data* (decoded from *text*, a message or body named *envelope*) asks for."""
    value = jsonvalues.encode(data["value"]) if "value" in data else None
    # Duplicates first, so that nothing is read from a message that repeats a name.
    # Every member is followed by a colon, so when the text holds no more colons than
    # the members and what they hold, nothing repeats (see jsonvalues.duplicate_name).
    # A set's members hold colons only in its key and value; with no backslash the
    # text shows them as the value's encoding does. Else the check looks closer.
    colons = text.count(":")
    if colons != len(data):
        key = data.get("key")
        if not (
            value is not None
            and isinstance(key, str)
            and (len(data) == 2 or (len(data) == 3 and data.get("action") == "set"))
            and colons == len(data) + value.count(b":") + key.count(":")
            and "\\" not in text
        ):
            _refuse_duplicates(text, data, envelope)
    key = validate_key(data.get("key"))
    if value is None:
        raise InvalidValue(f'invalid {what}: missing "value" (send null to store null)')
    return Set(key, value)


def parse_message(frame: str | bytes) -> Command:
    """Parse one WebSocket message into a command.

    Text frames and binary frames holding UTF-8 JSON are both accepted. Raises a
    :class:`~objstore.errors.ClientError` whose message says what is wrong.
    """
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMessage("invalid message: binary frame is not UTF-8 JSON text") from None
    data = _decode_object(frame, "message")
    action = data.get("action")
    if action == "set":
        return _set_from(data, "set", frame, "message")
    _refuse_duplicates(frame, data, "message")
    if action == "get":
        return Get(validate_key(data.get("key")))
    if action == "subscribe":
        return Subscribe(validate_key(data.get("key")))
    if action == "unsubscribe":
        return Unsubscribe(validate_key(data.get("key")))
    if "action" not in data:
        raise InvalidMessage(
            f'invalid message: missing "action"; expected one of {_EXPECTED_ACTIONS}'
        )
    raise InvalidMessage(
        f"invalid action: expected one of {_EXPECTED_ACTIONS}, got {describe(action)}"
    )


def parse_set_body(body: bytes) -> Set:
    """Parse the body of ``POST /set``: ``{"key": K, "value": V}``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidMessage("invalid body: not UTF-8 text") from None
    if not text.strip():
        raise InvalidMessage('invalid body: empty; send {"key": "...", "value": ...} as JSON')
    return _set_from(_decode_object(text, "body"), "body", text, "body")


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
    key: str | bytes, value: bytes | None, rev: int, *, expired: bool = False
) -> bytes:
    """Encode the revision form of an update: ``{"key": K, "value": V, "rev": N}``.

    A deletion (*value* None) adds ``"deleted": true``, and ``"expired": true``
    when its time to live ran out.
    """
    key_json = key if isinstance(key, bytes) else encode_key(key)
    if value is None:
        tail = b',"deleted":true,"expired":true}' if expired else b',"deleted":true}'
        return b'{"key":' + key_json + b',"value":null,"rev":' + str(rev).encode() + tail
    return b'{"key":' + key_json + b',"value":' + value + b',"rev":' + str(rev).encode() + b"}"


def encode_error(error: ClientError | str) -> bytes:
    """Encode the one error shape, ``{"error": "<message>"}``."""
    # ASCII escapes keep the reply valid UTF-8 even when it quotes a lone surrogate.
    return json.dumps({"error": str(error)}, separators=(",", ":")).encode("utf-8")
