"""The HTTP routes of protocol 2: ``/keys/{key}``, ``GET /keys`` and ``GET /events``.

Owns the HTTP shape of the store's commands: methods to commands, revisions
to ``ETag`` and ``If-Match``, outcomes to statuses (docs/protocol.md, section
6). The commands themselves are applied by :mod:`objstore.service`, the same
as over WebSocket. Knows nothing of sockets; the router in :mod:`objstore.http`
hands requests in and sends back what this module returns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote_to_bytes

from . import authorize, jsonvalues
from .access import Access
from .commands import DEFAULT_LIST_LIMIT, MAX_TTL, Delete, Keys, Patch, Set, Write
from .errors import (
    ClientError,
    Conflict,
    Forbidden,
    InvalidJSON,
    InvalidKey,
    InvalidMessage,
    NotFound,
    ObjstoreError,
    UnsupportedType,
    describe,
)
from .eventstream import EventStream
from .keys import validate_key
from .permissions import Grant
from .protocol import parse_message
from .replies import encode_error_reply, encode_plain_reply, encode_reset
from .results import Listed, Written
from .service import StoreService
from .storage import Owner
from .writer import WriteResult

__all__ = [
    "CHALLENGE",
    "JSON",
    "Answer",
    "error_response",
    "events_route",
    "keys_route",
    "query",
]

JSON = "application/json"
_MERGE_PATCH = "application/merge-patch+json"


class _HttpClient:
    """The client of a REST write: it owns nothing and hears of failures in its answer."""

    __slots__ = ()

    subscriber: object = None

    def report_failure(self, error: Exception) -> None:  # pragma: no cover  # writes wait
        pass

    def send(self, payload: bytes) -> None:  # pragma: no cover  # REST does not subscribe
        pass

    @property
    def narrowed(self) -> dict[str, tuple[str, ...]]:  # pragma: no cover  # no subscription
        return {}

    def authenticate(self, token: str) -> Grant:  # pragma: no cover  # not a REST command
        raise InvalidMessage("invalid request: over HTTP, send Authorization: Bearer TOKEN")


_CLIENT: Owner = _HttpClient()
#: The header of a 401 answer: how to present a token.
CHALLENGE = ("WWW-Authenticate", 'Bearer realm="objstore"')


def error_response(
    error: ObjstoreError | str, status: HTTPStatus | None = None
) -> tuple[HTTPStatus, bytes]:
    """The status and body of an error: ``{"error": "...", "code": "..."}``."""
    if status is None:
        status = (
            HTTPStatus(error.http_status)
            if isinstance(error, ClientError)
            else (HTTPStatus.INTERNAL_SERVER_ERROR)
        )
    return status, encode_error_reply(error, None)


def query(target: str) -> dict[str, str]:
    """The query parameters of *target* (the last of a repeated name), percent-decoded."""
    text = target.partition("?")[2]
    try:
        return dict(parse_qsl(text, keep_blank_values=True, errors="strict"))
    except UnicodeDecodeError:
        raise InvalidMessage("invalid query: not UTF-8 once percent-decoded") from None


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _etag(rev: int) -> tuple[str, str]:
    return ("ETag", f'"{rev}"')


def _revision_of(header: str, name: str) -> int:
    """The revision in an ``If-Match`` header: one strong entity tag ``"N"``."""
    tag = header.strip()
    if len(tag) >= 3 and tag[0] == tag[-1] == '"' and _is_number(tag[1:-1]) and len(tag) < 20:
        return int(tag[1:-1])
    raise InvalidMessage(
        f'invalid {name}: expected one revision as an entity tag, like "12", '
        f"got {describe(header)}"
    )


def _ttl(params: dict[str, str]) -> float | None:
    text = params.get("ttl")
    if text is None:
        return None
    try:
        ttl = float(text)
    except ValueError:
        ttl = math.nan
    if not (0 < ttl <= MAX_TTL):
        raise InvalidMessage(
            f"invalid ttl: expected seconds above 0 and at most {MAX_TTL}, got {describe(text)}"
        )
    return ttl


def _body_value(body: bytes) -> object:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidJSON("invalid body: not UTF-8 text") from None
    if not text.strip():
        raise InvalidJSON("invalid body: empty; send the value as JSON")
    try:
        return jsonvalues.decode(text)
    except jsonvalues.JSONDecodeError as exc:
        raise InvalidJSON(f"invalid JSON: {exc}") from None


Answer = tuple[HTTPStatus, bytes, list[tuple[str, str]]]


def keys_route(
    service: StoreService,
    grant: Grant,
    *,
    method: str,
    path: str,
    target: str,
    headers: dict[str, str] | object,
    body: bytes,
) -> Answer | Awaitable[Answer]:
    """Answer a request to ``/keys`` or ``/keys/{key}``: status, body and headers.

    *grant* is what the client may do (checked before the store is looked at).
    """
    assert isinstance(headers, dict)
    key = ""
    try:
        if path == "/keys":
            if method != "GET":
                return _not_allowed(method, path, "GET")
            return _list(service, grant, query(target))
        try:
            key = unquote_to_bytes(path[len("/keys/") :]).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidKey("invalid key: the percent-encoded path is not UTF-8") from None
        key = validate_key(key)
        if method == "GET":
            authorize.require_read(grant, key)
            return _get(service, key, headers)
        if method in ("PUT", "PATCH", "DELETE"):
            authorize.require_write(grant, key)
            return _write(
                service, grant, method=method, key=key, target=target, headers=headers, body=body
            )
        return _not_allowed(method, path, "GET, PUT, PATCH, DELETE")
    except ClientError as exc:
        authorize.hide_unreadable(grant, exc, [key])
        return _failed(exc)


def _failed(error: ClientError) -> Answer:
    headers: list[tuple[str, str]] = []
    status = None
    if isinstance(error, Forbidden) and error.unauthenticated:
        headers.append(CHALLENGE)
    if isinstance(error, Conflict):
        status = HTTPStatus.PRECONDITION_FAILED
        if error.rev:
            headers.append(_etag(error.rev))
    status, body = error_response(error, status)
    return status, body, headers


def _not_allowed(method: str, path: str, allowed: str) -> Answer:
    _, body = error_response(
        InvalidMessage(f"method {method} is not allowed on {path}; use {allowed}")
    )
    return HTTPStatus.METHOD_NOT_ALLOWED, body, [("Allow", allowed)]


def _list(service: StoreService, grant: Grant, params: dict[str, str]) -> Answer:
    limit_text = params.get("limit", str(DEFAULT_LIST_LIMIT))
    if not _is_number(limit_text) or len(limit_text) > 9:
        raise InvalidMessage(
            f"invalid limit: expected a positive integer, got {describe(limit_text)}"
        )
    message: dict[str, object] = {"action": "keys", "limit": int(limit_text)}
    if "prefix" in params:
        message["prefix"] = params["prefix"]
    if params.get("after"):
        message["after"] = params["after"]
    details = params.get("details", "0")
    if details not in ("0", "1", "true", "false"):
        raise InvalidMessage(f"invalid details: expected 1 or 0, got {describe(details)}")
    message["details"] = details in ("1", "true")
    command = parse_message(json.dumps(message))
    assert isinstance(command, Keys)
    result = service.execute_as(_CLIENT, grant, command)  # type: ignore[arg-type]
    assert isinstance(result, Listed)
    return HTTPStatus.OK, encode_plain_reply(result) or b"", []


def _get(service: StoreService, key: str, headers: dict[str, str]) -> Answer:
    value = service.store.get(key)
    if value is None:
        raise NotFound(f"not found: key {describe(key)} has no value")
    rev = service.store.revision(key)
    tag = f'"{rev}"'
    wanted = headers.get("if-none-match")
    if wanted is not None and (wanted.strip() == "*" or tag in _tags(wanted)):
        return HTTPStatus.NOT_MODIFIED, b"", [_etag(rev)]
    return HTTPStatus.OK, value, [_etag(rev)]


def _tags(header: str) -> list[str]:
    return [part.strip().removeprefix("W/") for part in header.split(",")]


def _write(
    service: StoreService,
    grant: Grant,
    *,
    method: str,
    key: str,
    target: str,
    headers: dict[str, str],
    body: bytes,
) -> Answer | Awaitable[Answer]:
    params = query(target)
    if_rev: int | None = None
    if "if-match" in headers:
        if_rev = _revision_of(headers["if-match"], "If-Match")
    unwanted = headers.get("if-none-match")
    if unwanted is not None and unwanted.strip() == "*":
        if if_rev is not None and if_rev != 0:
            raise InvalidMessage("invalid request: If-Match and If-None-Match: * together")
        if_rev = 0
    elif unwanted is not None:
        current = service.store.revision(key)
        if current and f'"{current}"' in _tags(unwanted):
            raise Conflict(
                f"conflict: key {describe(key)} is at revision {current}, which If-None-Match "
                "excludes",
                current,
                service.store.get(key),
            )
    command: Write
    if method == "DELETE":
        if if_rev is None and service.store.get(key) is None:
            raise NotFound(f"not found: key {describe(key)} has no value")
        command = Delete(key, 0, if_rev)
    elif method == "PUT":
        value = jsonvalues.encode(_body_value(body))
        command = Set(key, value, 0, if_rev, _ttl(params))
    else:
        content_type = headers.get("content-type", _MERGE_PATCH).partition(";")[0].strip().lower()
        if content_type not in (_MERGE_PATCH, JSON):
            raise UnsupportedType(
                f"unsupported content type {describe(content_type)}; send the merge patch as "
                f"{_MERGE_PATCH}"
            )
        command = Patch(key, _body_value(body), 0, if_rev, _ttl(params))
    result = service.execute_as(_CLIENT, grant, command)  # type: ignore[arg-type]
    assert isinstance(result, Written)
    written = result.written
    if written is None or written.done():
        return _written_answer(method, result)
    return _when_written(method, result, written)


async def _when_written(method: str, result: Written, written: WriteResult) -> Answer:
    await written
    return _written_answer(method, result)


def _written_answer(method: str, result: Written) -> Answer:
    """The answer of a write once its file is written (or could not be)."""
    failure = None if result.written is None else result.written.result()
    if isinstance(failure, ClientError):  # a conflict decided by a shared store
        return _failed(failure)
    if failure is not None:
        status, body = error_response(failure)
        return status, body, []
    tag = [_etag(result.rev)]
    if method == "DELETE":
        if not result.deleted:  # If-Match: "0" on a key without a value: nothing to delete
            status, body = error_response(
                NotFound(f"not found: key {describe(result.key)} has no value")
            )
            return status, body, []
        return HTTPStatus.NO_CONTENT, b"", tag
    if method == "PATCH":
        assert result.value is not None
        return HTTPStatus.OK, result.value, tag
    return HTTPStatus.OK, b'{"rev":%d}' % result.rev, tag


def events_route(
    service: StoreService,
    access: Access,
    grant: Grant,
    *,
    method: str,
    target: str,
    headers: dict[str, str],
) -> EventStream | Answer:
    """``GET /events?key=K`` or ``?prefix=P`` (``&since=R``, or ``Last-Event-ID``).

    Returns the stream, subscribed and holding what the client must see first
    (a ``reset`` event if it must drop what it holds, the updates, and a
    ``ready`` event whose id is the store's revision), or an error answer.
    A prefix covers only the keys *grant* may read; the stream ends when the
    rules change what it may read (*access* tells it).
    """
    try:
        if method != "GET":
            return _not_allowed(method, "/events", "GET")
        params = query(target)
        has_key, has_prefix = "key" in params, "prefix" in params
        if has_key == has_prefix:
            raise InvalidMessage(
                "invalid events request: give exactly one of ?key=K and ?prefix=P"
            )
        kind = "key" if has_key else "prefix"
        name = params[kind]
        if has_key or name:
            name = validate_key(name)
        since_text = headers.get("last-event-id") or params.get("since")
        since = None
        if since_text is not None:
            if not _is_number(since_text) or len(since_text) > 16:
                raise InvalidMessage(
                    f"invalid since: expected a revision, got {describe(since_text)}"
                )
            since = int(since_text)
        parts: tuple[str, ...] = (name,)
        if has_key:
            authorize.require_read(grant, name)
        else:
            authorize.require_prefix(grant, name, "subscribing to")
            parts = grant.readable_within(name)
    except ClientError as exc:
        return _failed(exc)
    stream = EventStream()
    stream.grant = grant
    access.hold(stream)
    hub = service.hub

    def closed() -> None:
        hub.drop(stream)

    stream.on_close = closed
    if has_key:
        hub.subscribe_rev(stream, name)
    else:
        for part in parts:
            hub.subscribe_prefix(stream, part, rev_form=True)
    reset, updates = service.initial_state(kind=kind, name=name, since=since, parts=parts)
    if reset:
        stream.send("reset", encode_reset(kind, name))
    for update in updates:
        stream.deliver(update)
    rev = service.store.rev
    stream.send("ready", b'{"rev":%d}' % rev, id=rev)
    return stream
