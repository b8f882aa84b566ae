"""The wire protocol, sans I/O: client messages in, typed commands out; replies as bytes.

Owns the JSON message format of the original server (``subscribe``,
``unsubscribe``, ``set``, ``get``) and of protocol 2 (docs/protocol.md), and
the one error shape ``{"error": "<message>"}``. The shapes of updates are
:mod:`objstore.updates`' (re-exported here), those of protocol 2's replies
:mod:`objstore.replies`'. Imports neither asyncio nor
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
from typing import Any, Final

from . import jsonvalues, tallies
from .commands import (
    ACTIONS,
    DEFAULT_LIST_LIMIT,
    MAX_BATCH_OPS,
    MAX_ID_BYTES,
    MAX_LIST_LIMIT,
    MAX_REVISION,
    MAX_TTL,
    Auth,
    Batch,
    Command,
    Delete,
    Get,
    Incr,
    Keys,
    Patch,
    RequestId,
    Set,
    Subscribe,
    SubscribePrefix,
    Unsubscribe,
    UnsubscribePrefix,
    Write,
)
from .errors import (
    ClientError,
    InvalidJSON,
    InvalidKey,
    InvalidMessage,
    InvalidValue,
    ObjstoreError,
    TooLarge,
    describe,
)
from .keys import validate_key
from .updates import ExpiredUpdate, Update, encode_key, encode_rev_update, encode_update

__all__ = [
    "ACTIONS",
    "Command",
    "ExpiredUpdate",
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

_EXPECTED_ACTIONS: Final = ", ".join(f'"{name}"' for name in ACTIONS)


def _decode_object(text: str, what: str, enclosing: int = 1) -> dict[str, Any]:
    try:
        # The object is the envelope: its members' values may nest MAX_DEPTH deep.
        data = jsonvalues.decode(text, enclosing)
    except jsonvalues.JSONDecodeError as exc:
        raise InvalidJSON(f"invalid JSON: {exc}") from None
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
            and "\\" not in text
            and colons
            == len(data)
            + value.count(b":")
            + key.count(":")
            + (
                0
                if len(data) == 2 or (len(data) == 3 and data.get("action") == "set")
                else _colons_of_others(data)
            )
        ):
            _refuse_duplicates(text, data, envelope)
    if len(data) > 3 and envelope == "message":
        return _extended_set(data, value)
    key = validate_key(data.get("key"))
    if value is None:
        raise InvalidValue(f'invalid {what}: missing "value" (send null to store null)')
    return Set(key, value)


def _colons_of_others(data: dict[str, Any]) -> int:
    """The colons in the names of *data*'s members and in their values but for the key and
    the value, as a text without backslashes shows them; a nested object or array counts
    as too many (its colons are not counted: the caller then looks closer)."""
    colons = 0
    for name, member in data.items():
        if name in ("key", "value"):
            continue
        colons += name.count(":")
        if type(member) is str:
            colons += member.count(":")
        elif type(member) is list or type(member) is dict:
            return 1 << 20
    return colons


def _extended_set(data: dict[str, Any], value: bytes | None) -> Set:
    """A set with fields of protocol 2 (or unknown ones, which are ignored); *value* is
    the value already encoded, None when the message has none."""
    request_id = _request_id(data)
    try:
        command = _parse_write("set", data, request_id, value)
    except ClientError as exc:
        exc.request_id = request_id
        raise
    assert isinstance(command, Set)
    return command


def parse_message(frame: str | bytes) -> Command:
    """Parse one WebSocket message into a command.

    Text frames and binary frames holding UTF-8 JSON are both accepted. Raises a
    :class:`~objstore.errors.ClientError` whose message says what is wrong; once
    the message's id is known, the error carries it as ``request_id``.
    """
    counts = tallies.messages_received
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            counts[tallies.OTHER] += 1
            raise InvalidMessage("invalid message: binary frame is not UTF-8 JSON text") from None
    # A batch nests its values two levels deeper than other messages (ops, op).
    batch = '"batch"' in frame
    try:
        data = _decode_object(frame, "message", 3 if batch else 1)
    except ClientError:
        counts[tallies.OTHER] += 1
        raise
    action = data.get("action")
    # Counted in the branches the parser takes anyway: an index increment for the
    # hot actions, a dictionary lookup for the others.
    if action == "set" and not batch:
        counts[tallies.SET] += 1
        return _set_from(data, "set", frame, "message")
    if action == "get":
        counts[tallies.GET] += 1
    else:
        tallies.count_message(action)
    _refuse_duplicates(frame, data, "message")
    if action == "get" and len(data) == 2:
        return Get(validate_key(data.get("key")))
    request_id = _request_id(data)
    try:
        return _parse_action(action, data, request_id, batch)
    except ClientError as exc:
        exc.request_id = request_id
        raise


def _parse_action(
    action: object, data: dict[str, Any], request_id: RequestId | None, batch: bool
) -> Command:
    if action == "get":
        return Get(validate_key(data.get("key")), request_id)
    # A tuple, not a set: an action that is a list or an object is compared, not hashed.
    if action in ("subscribe", "unsubscribe"):
        return _parse_subscription(action, data, request_id)
    if action == "keys":
        return Keys(
            _prefix_field(data, "prefix"),
            _optional_key_field(data, "after"),
            _limit_field(data),
            request_id,
            _flag_field(data, "details"),
        )
    if action == "batch":
        return Batch(_parse_ops(data), request_id)
    if action == "auth":
        token = data.get("token")
        if not isinstance(token, str):
            raise InvalidMessage(f'invalid auth: "token" must be a string, got {describe(token)}')
        return Auth(token, request_id)
    if action in _WRITE_ACTIONS:
        if batch:
            _check_value_depth(data)
        return _parse_write(action, data, request_id)
    if "action" not in data:
        raise InvalidMessage(
            f'invalid message: missing "action"; expected one of {_EXPECTED_ACTIONS}'
        )
    raise InvalidMessage(
        f"invalid action: expected one of {_EXPECTED_ACTIONS}, got {describe(action)}"
    )


_WRITE_ACTIONS: Final = ("set", "delete", "patch", "incr")


def _parse_write(
    action: object,
    data: dict[str, Any],
    request_id: RequestId | None,
    encoded: bytes | None = None,
) -> Write:
    """A set, delete, patch or incr from its decoded message (or batch op); a set's value
    may come *encoded* already."""
    key = validate_key(data.get("key"))
    if encoded is not None and len(data) == 4 and "id" in data:
        # A set with an id and nothing else of protocol 2 (action, key, value, id): the
        # other fields' defaults, without looking for them.
        return Set(key, encoded, request_id)
    if_rev = _revision_field(data, "ifRev")
    if action == "delete":
        return Delete(key, request_id, if_rev)
    if action == "incr":
        by = data.get("by", 1)
        if not _is_number(by):
            raise InvalidMessage(f'invalid incr: "by" must be a number, got {describe(by)}')
        return Incr(key, by, request_id, if_rev, _ttl_field(data))
    if "value" not in data:
        raise InvalidValue(f'invalid {action}: missing "value" (send null to store null)')
    if action == "patch":
        return Patch(key, data["value"], request_id, if_rev, _ttl_field(data))
    value = jsonvalues.encode(data["value"]) if encoded is None else encoded
    return Set(key, value, request_id, if_rev, _ttl_field(data), _flag_field(data, "ephemeral"))


def _parse_ops(data: dict[str, Any]) -> tuple[Write, ...]:
    ops = data.get("ops")
    if not isinstance(ops, list):
        raise InvalidMessage(f'invalid batch: "ops" must be an array, got {describe(ops)}')
    if len(ops) > MAX_BATCH_OPS:
        raise TooLarge(
            f"too large: a batch of {len(ops)} operations, over the limit of {MAX_BATCH_OPS}; "
            "split it"
        )
    parsed: list[Write] = []
    for index, op in enumerate(ops):
        try:
            if not isinstance(op, dict):
                raise InvalidMessage(f"invalid op: expected a JSON object, got {describe(op)}")
            action = op.get("action")
            if action not in _WRITE_ACTIONS:
                raise InvalidMessage(
                    'invalid op: "action" must be "set", "delete", "patch" or "incr", '
                    f"got {describe(action)}"
                )
            if "id" in op:
                raise InvalidMessage("invalid op: an op has no id; put the id on the batch")
            _check_value_depth(op)
            parsed.append(_parse_write(action, op, None))
        except ClientError as exc:
            exc.op = index
            raise
    return tuple(parsed)


def _check_value_depth(data: dict[str, Any]) -> None:
    """A value decoded with room for a batch's nesting still nests at most MAX_DEPTH levels."""
    value = data.get("value")
    if isinstance(value, (dict, list)) and jsonvalues.depth_exceeds(value, jsonvalues.MAX_DEPTH):
        raise InvalidValue(f"invalid JSON: nested deeper than {jsonvalues.MAX_DEPTH} levels")


def _parse_subscription(
    action: str, data: dict[str, Any], request_id: RequestId | None
) -> Command:
    has_key = "key" in data
    if "prefix" in data:
        if has_key:
            raise InvalidMessage(f'invalid {action}: give "key" or "prefix", not both')
        prefix = _prefix_field(data, "prefix")
        if action == "subscribe":
            return SubscribePrefix(prefix, request_id, _revision_field(data, "since"))
        return UnsubscribePrefix(prefix, request_id)
    key = validate_key(data.get("key"))
    if action == "subscribe":
        return Subscribe(key, request_id, _revision_field(data, "since"))
    return Unsubscribe(key, request_id)


def _request_id(data: dict[str, Any]) -> RequestId | None:
    """The message's id, None without one; raises InvalidMessage for an id of another kind."""
    if "id" not in data:
        return None
    value = data["id"]
    if isinstance(value, int) and not isinstance(value, bool):
        if -MAX_REVISION <= value <= MAX_REVISION:
            return value
    elif isinstance(value, str):
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            size = MAX_ID_BYTES + 1
        if size <= MAX_ID_BYTES:
            return value
    error = InvalidMessage(
        'invalid message: "id" must be an integer of at most 53 bits or a string of at most '
        f"{MAX_ID_BYTES} bytes, got {describe(value)}"
    )
    error.coded = True  # no id to echo, but a code
    raise error


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _revision_field(data: dict[str, Any], name: str) -> int | None:
    if name not in data:
        return None
    value = data[name]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_REVISION:
        return value
    raise InvalidMessage(
        f'invalid message: "{name}" must be a revision, an integer from 0 to 2^53-1, '
        f"got {describe(value)}"
    )


def _ttl_field(data: dict[str, Any]) -> float | None:
    if "ttl" not in data:
        return None
    value = data["ttl"]
    if _is_number(value) and 0 < value <= MAX_TTL:
        return float(value)
    raise InvalidMessage(
        f'invalid message: "ttl" must be a number of seconds above 0 and at most {MAX_TTL} '
        f"(ten years), got {describe(value)}"
    )


def _flag_field(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if isinstance(value, bool):
        return value
    raise InvalidMessage(f'invalid message: "{name}" must be true or false, got {describe(value)}')


def _prefix_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name, "")
    if value == "":
        return ""
    if not isinstance(value, str):
        raise InvalidKey(f'invalid prefix: "{name}" must be a string, got {describe(value)}')
    return validate_key(value)


def _optional_key_field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    return None if value is None else validate_key(value)


def _limit_field(data: dict[str, Any]) -> int:
    value = data.get("limit", DEFAULT_LIST_LIMIT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidMessage(
            f'invalid keys: "limit" must be a positive integer, got {describe(value)}'
        )
    if value > MAX_LIST_LIMIT:
        raise TooLarge(
            f"too large: a limit of {value} keys, over the most of {MAX_LIST_LIMIT}; "
            'page with "after"'
        )
    return value


def parse_set_body(body: bytes) -> Set:
    """Parse the body of ``POST /set``: ``{"key": K, "value": V}``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidMessage("invalid body: not UTF-8 text") from None
    if not text.strip():
        raise InvalidMessage('invalid body: empty; send {"key": "...", "value": ...} as JSON')
    return _set_from(_decode_object(text, "body"), "body", text, "body")


def encode_error(error: ObjstoreError | str, code: str | None = None) -> bytes:
    """Encode the one error shape, ``{"error": "<message>"}``.

    Counted as sent with *code*, by default the error's own (``internal`` for text).
    """
    tallies.count_error(
        code
        if code is not None
        else error.code
        if isinstance(error, ObjstoreError)
        else "internal"
    )
    # ASCII escapes keep the reply valid UTF-8 even when it quotes a lone surrogate.
    return json.dumps({"error": str(error)}, separators=(",", ":")).encode("utf-8")
