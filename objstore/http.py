"""The HTTP routes: ``GET /get/{key}``, ``POST /set``, ``GET /test``, ``GET /client.js``, health
and metrics, and 404s.

Owns routing and the shape of every HTTP answer, JSON errors included. The
transport hands in a parsed request (method, target, headers, body) and sends
back what :func:`route` returns; None means "this is the WebSocket endpoint,
upgrade it". Every request, upgrades included, first passes the Origin and Host
checks of :mod:`objstore.origins`. Knows nothing of websockets; the one routing
function serves every transport.

Health: ``/healthz`` answers while the server answers; ``/readyz`` (and its
alias ``/health``) asks the store whether it can take writes. Their answers
tell the status and, when not ready, a reason naming no file: nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote_to_bytes

from . import authorize
from .access import Access, bearer_token
from .errors import ClientError, Forbidden, InvalidKey, ObjstoreError
from .eventstream import EventStream
from .keys import validate_key
from .origins import OriginPolicy
from .permissions import EVERYTHING
from .protocol import encode_error, parse_set_body
from .repeatanswers import Reuse
from .replies import encode_error_reply
from .rest import CHALLENGE, Answer, events_route, keys_route
from .service import StoreService
from .updates import Update
from .writer import WriteResult

if TYPE_CHECKING:
    from .metrics import MetricsPage

__all__ = ["WEBSOCKET_PATHS", "HttpRequest", "HttpResponse", "client_module", "route", "test_page"]

#: Paths that accept a WebSocket upgrade. The original's own example connects
#: to ``ws://localhost:3000`` without a path, so ``/`` works as well as ``/ws``.
WEBSOCKET_PATHS = frozenset({"/ws", "/"})

_JSON = "application/json"
#: Health routes: liveness, readiness and readiness's alias (the name people guess).
_HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/health"})
_ALIVE = b'{"status":"ok"}'
_READY = b'{"status":"ready"}'
#: The codes counted for the errors this module words itself, by status.
_STATUS_CODES = {HTTPStatus.NOT_FOUND: "not_found", HTTPStatus.INTERNAL_SERVER_ERROR: "internal"}
_ROUTES_HINT = (
    "routes are GET /get/{key}, POST /set, /keys/{key}, GET /keys, GET /events, GET /test, "
    "GET /client.js and WebSocket /ws"
)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """An HTTP request as the router needs it."""

    method: str
    target: str
    is_upgrade: bool = False
    body: bytes = b""
    #: Header values by lowercase name (a repeated header: its last value).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: The address of this server the client connected to (the socket's own address).
    local_host: str = ""


@dataclass(slots=True)
class HttpResponse:
    """An HTTP answer: status, headers without Content-Length, and body (or a stream)."""

    status: HTTPStatus
    body: bytes
    content_type: str = _JSON
    headers: list[tuple[str, str]] = field(default_factory=list)
    #: Events sent after the head instead of a body (which must then be empty), until
    #: the stream or the connection ends: no Content-Length, and ``Connection: close``.
    stream: EventStream | None = None
    #: The key and value the answer was made from, when the same request may get the
    #: same answer for as long as they stay (see :mod:`objstore.repeatanswers`).
    reuse: Reuse | None = None


def _error(status: HTTPStatus, error: ObjstoreError | str) -> HttpResponse:
    if isinstance(error, Forbidden):
        response = HttpResponse(status, encode_error_reply(error, None))
        if error.unauthenticated:
            response.headers.append(CHALLENGE)
        return response
    code = (
        None if isinstance(error, ObjstoreError) else _STATUS_CODES.get(status, "invalid_message")
    )
    return HttpResponse(status, encode_error(error, code))


def _refused(error: Forbidden) -> HttpResponse:
    return _error(HTTPStatus(error.http_status), error)


def _method_not_allowed(request: HttpRequest, path: str, allowed: str) -> HttpResponse:
    response = _error(
        HTTPStatus.METHOD_NOT_ALLOWED,
        f"method {request.method} is not allowed on {path}; use {allowed}",
    )
    response.headers.append(("Allow", allowed))
    return response


_static_cache: dict[str, bytes] = {}


def _static(name: str) -> bytes:
    """A bundled file, read once through importlib.resources (works when frozen)."""
    data = _static_cache.get(name)
    if data is None:
        # Imported at the first request for a page, not at every start (2 ms).
        from importlib import resources

        data = resources.files("objstore").joinpath("static", name).read_bytes()
        _static_cache[name] = data
    return data


def test_page() -> bytes:
    """The bundled test page."""
    return _static("test.html")


def client_module() -> bytes:
    """The bundled JavaScript client, an ES module (``GET /client.js``)."""
    return _static("client.js")


#: Routes anybody may fetch: what they serve is the same for everyone and no secret.
_PUBLIC: Final = frozenset({"/test", "/client.js"})


def _public(request: HttpRequest, path: str) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed(request, path, "GET")
    if path == "/test":
        return HttpResponse(HTTPStatus.OK, test_page(), "text/html; charset=utf-8")
    return HttpResponse(HTTPStatus.OK, client_module(), "text/javascript; charset=utf-8")


def _key_from_path(raw: str) -> str:
    """Percent-decode the key in ``/get/{key}``: ``a%20b`` is ``a b``, ``a/b`` is ``a/b``."""
    try:
        key = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidKey("invalid key: the percent-encoded path is not UTF-8") from None
    return validate_key(key)


def route(
    service: StoreService,
    origins: OriginPolicy,
    request: HttpRequest,
    access: Access,
    metrics: MetricsPage | None = None,
) -> HttpResponse | Awaitable[HttpResponse] | None:
    """Answer *request*, or return None to let the WebSocket handshake go on.

    The answer is ready at once, except for ``POST /set``, which is answered
    once the value is on disk: then an awaitable of the answer is returned.
    *origins* refuses requests from websites that may not make them, answers
    CORS preflights and adds CORS headers for allowed origins. *access* says
    what the request's token (``Authorization: Bearer``) may do; an unknown
    token is refused with 401 everywhere but the public routes (the test page,
    the client module, health). *metrics* serves ``/metrics`` (without it, that
    path is not found).
    """
    verdict = origins.check(
        request.method, request.is_upgrade, request.headers, request.local_host
    )
    if verdict.status is None:
        answer = _dispatch(service, request, access, metrics)
    elif verdict.error:
        answer = _error(verdict.status, verdict.error)
    else:
        answer = HttpResponse(verdict.status, b"")
    if not verdict.headers or answer is None:
        return answer
    if isinstance(answer, HttpResponse):
        answer.headers.extend(verdict.headers)
        return answer
    return _with_headers(answer, verdict.headers)


async def _with_headers(
    answer: Awaitable[HttpResponse], headers: tuple[tuple[str, str], ...]
) -> HttpResponse:
    response = await answer
    response.headers.extend(headers)
    return response


def _dispatch(
    service: StoreService, request: HttpRequest, access: Access, metrics: MetricsPage | None
) -> HttpResponse | Awaitable[HttpResponse] | None:
    path = request.target.partition("?")[0]
    if path in _PUBLIC:
        return _public(request, path)
    if path in _HEALTH_PATHS or (path == "/metrics" and metrics is not None):
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed(request, path, "GET, HEAD")
        if metrics is not None and path == "/metrics":
            # With access control on, a token whose rules say metrics = true may read them,
            # as may the --metrics-token; without access control, anyone may unless there
            # is a --metrics-token. Before the token check below: the metrics token is not
            # one of the access tokens.
            grant = access.grant_for(bearer_token(request.headers))
            granted = grant is not None and grant.metrics
            if not access.enabled:
                granted = granted and metrics.token is None
            status, body, content_type, headers = metrics.answer(
                request.headers.get("authorization"), granted=granted
            )
            return HttpResponse(status, body, content_type, headers)
        return _health(service, path)
    # Without access control nothing is looked at: the common case pays two lookups.
    grant = access.grant_for(bearer_token(request.headers)) if access.enabled else EVERYTHING
    if grant is None:
        return _refused(authorize.unknown_token())
    if path in WEBSOCKET_PATHS and request.is_upgrade:
        # Anonymous connections are let in: a browser presents its token in a message.
        return None
    if path.startswith("/get/"):
        if request.method != "GET":
            return _method_not_allowed(request, path, "GET")
        try:
            key = _key_from_path(path[len("/get/") :])
            if not grant.everything:
                authorize.require_read(grant, key)
        except ClientError as exc:
            return _error(HTTPStatus(exc.http_status), exc)
        reuse = Reuse(key, service.store.get(key))
        return HttpResponse(HTTPStatus.OK, service.get(key), reuse=reuse)
    if path == "/set":
        if request.method != "POST":
            return _method_not_allowed(request, path, "POST")
        try:
            command = parse_set_body(request.body)
            authorize.require_write(grant, command.key)
        except ClientError as exc:
            return _error(HTTPStatus(exc.http_status), exc)
        update, result = service.set_and_wait(command.key, command.value)
        # Like the original, answer once the value is on disk, so that a 200
        # means the value survives a restart.
        return _when_written(update, result)
    if path == "/keys" or path.startswith("/keys/"):
        answer = keys_route(
            service,
            grant,
            method=request.method,
            path=path,
            target=request.target,
            headers=dict(request.headers),
            body=request.body,
        )
        if isinstance(answer, tuple):
            response = HttpResponse(answer[0], answer[1], headers=answer[2])
            if request.method == "GET" and answer[0] in _REUSABLE_REST:
                response.reuse = _rest_reuse(service, path)
            return response
        return _rest_later(answer)
    if path == "/events":
        stream = events_route(
            service,
            access,
            grant,
            method=request.method,
            target=request.target,
            headers=dict(request.headers),
        )
        if isinstance(stream, tuple):
            return HttpResponse(stream[0], stream[1], headers=stream[2])
        return HttpResponse(HTTPStatus.OK, b"", "text/event-stream", stream=stream)
    if path == "/ws":
        return _error(
            HTTPStatus.UPGRADE_REQUIRED, "this is the WebSocket endpoint; connect with a WebSocket"
        )
    if path == "/" and request.method == "GET":
        response = HttpResponse(HTTPStatus.FOUND, b"", "text/plain; charset=utf-8")
        response.headers.append(("Location", "/test"))
        return response
    return _error(HTTPStatus.NOT_FOUND, f"not found: {json.dumps(path)}; {_ROUTES_HINT}")


def _health(service: StoreService, path: str) -> HttpResponse:
    """``/healthz``: alive; ``/readyz`` and ``/health``: whether the store can take writes."""
    if path == "/healthz":
        return HttpResponse(HTTPStatus.OK, _ALIVE)
    reason = service.store.readiness()
    if reason is None:
        return HttpResponse(HTTPStatus.OK, _READY)
    body = json.dumps({"status": "not ready", "reason": reason}, separators=(",", ":"))
    return HttpResponse(HTTPStatus.SERVICE_UNAVAILABLE, body.encode())


async def _rest_later(answer: Awaitable[Answer]) -> HttpResponse:
    status, body, headers = await answer
    return HttpResponse(status, body, headers=headers)


#: Answers of ``GET /keys/{key}`` that depend on nothing but the key (its value and
#: revision) and the request: the same request may get them again while those stay.
_REUSABLE_REST: Final = frozenset({HTTPStatus.OK, HTTPStatus.NOT_MODIFIED, HTTPStatus.NOT_FOUND})


def _rest_reuse(service: StoreService, path: str) -> Reuse | None:
    """What ``GET /keys/{key}``'s answer was made from (None for ``/keys``, a listing)."""
    if not path.startswith("/keys/"):
        return None
    try:
        key = _key_from_path(path[len("/keys/") :])
    except ClientError:  # pragma: no cover  # the route answered it, so it is a key
        return None
    store = service.store
    return Reuse(key, store.get(key), store.revision(key))


async def _when_written(update: Update, result: WriteResult) -> HttpResponse:
    failure = await result
    if failure is not None:
        return _error(HTTPStatus.INTERNAL_SERVER_ERROR, failure)
    return HttpResponse(HTTPStatus.OK, update.payload)
