"""Which websites may use the store: the Origin and Host checks, and the CORS headers.

Owns the rules that keep a page on another site from using a server on this
machine (cross-site WebSocket hijacking, CSRF, DNS rebinding) and the CORS
answers for origins the user allowed with ``--allow-origin``. Pure: it sees a
request's method and headers, never a socket, and knows nothing of routes.

The rules, in order:

1. **Host.** A request that reached a loopback address (or, when that address is
   unknown, a server bound to loopback) must name a loopback host: ``localhost``,
   ``*.localhost``, ``127.x.x.x`` or ``[::1]``, any port, or the host of an
   allowed origin (a reverse proxy that keeps the Host). Anything else is what
   DNS rebinding sends, and is refused with 403, reads included. A request
   without a Host (HTTP/1.0) is served.
2. **Preflight.** ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``
   is answered here: 204 with CORS headers for an allowed origin, 403 otherwise.
3. **Origin.** A WebSocket upgrade or a state-changing request (any method but
   GET, HEAD and OPTIONS) whose ``Origin`` is neither the server's own nor
   allowed is refused with 403. No ``Origin`` (curl, scripts, native clients):
   served. ``Origin: null`` (sandboxed frames, ``file://`` pages) is refused
   unless ``null`` or ``*`` is allowed. Reads from other origins are served: a
   browser does not let the page read the answer without CORS headers.
4. **Content type.** A state-changing request from another origin, even an
   allowed one, must send a JSON content type or none (415 otherwise): the
   types a page can send without a preflight (``text/plain``, forms) are refused.

The server's own origins are ``http``/``https`` (``https`` only when it speaks
TLS) with the server's port and one of the hosts ``localhost``, ``*.localhost``,
``127.0.0.1``, ``[::1]``, the address it listens on (unless a wildcard) and the
IP address the client reached (which covers a page opened as
``http://192.168.1.5:3000`` on a server listening on ``0.0.0.0``). A page opened
by a host name needs ``--allow-origin``, also over TLS: a name can be rebound by
DNS, an IP literal cannot, and a certificate for ``*.example.com`` would let
the page of any other ``example.com`` site pass for ours. Other ``127.x`` addresses count
only as the bound or reached address: another program may serve them.

Bounds: the allowed origins are the user's list; a request's Origin and Host
are parsed in time and memory linear in their length (the HTTP layer bounds
headers); the Host check remembers its last answers for up to 512 Host values
of up to 260 characters (about 200 KB at most); an Origin or content type shown
in an error is cut at 100 characters.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import NamedTuple

from .errors import describe

__all__ = [
    "ANY_ORIGIN",
    "NULL_ORIGIN",
    "Origin",
    "OriginPolicy",
    "Verdict",
    "is_json_content_type",
    "is_loopback_host",
    "normalize_allowed_origin",
    "parse_origin",
]

#: ``--allow-origin *``: every origin, ``null`` included.
ANY_ORIGIN = "*"
#: The origin of sandboxed frames, ``file://`` pages and some redirects.
NULL_ORIGIN = "null"

#: Methods that read; every other method changes state.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Methods and request headers a preflight may ask for (the routes' methods).
_CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
_CORS_HEADERS = "Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID"
#: Response headers a page of an allowed origin may read (the revision of /keys/{key}).
_CORS_EXPOSED = ("Access-Control-Expose-Headers", "ETag")
#: Seconds a browser may keep a preflight answer (Chromium keeps at most 7200).
_CORS_MAX_AGE = "600"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*\Z")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_SHOWN_LIMIT = 100
#: The Host check remembers its answer for this many (Host, address) pairs, of Host
#: values up to this length (a DNS name and a port): at most about 200 KB.
_HOSTS_REMEMBERED = 512
_HOST_REMEMBERED_LENGTH = 260
_ORIGIN_HINT = "an origin is scheme://host[:port] without a path, like http://localhost:5173"


class Origin(NamedTuple):
    """A parsed origin: lowercase scheme, host (IPv6 in brackets), port (None: the default)."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}" + ("" if self.port is None else f":{self.port}")

    @property
    def effective_port(self) -> int | None:
        """The port, or the scheme's default port (None for a scheme without one)."""
        return self.port if self.port is not None else _DEFAULT_PORTS.get(self.scheme)


def _split_host_port(text: str) -> tuple[str, str | None] | None:
    """``host[:port]`` into a normalized host and the port's text; None if malformed."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        try:
            address = ipaddress.IPv6Address(text[1:end])
        except ValueError:
            return None
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        return f"[{address.compressed}]", rest[1:] if rest else None
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port_text = text, None
    else:
        port_text = port
    if not _HOST_NAME.match(host):
        return None
    return host.removesuffix("."), port_text


def parse_origin(text: str) -> Origin | None:
    """Parse an ``Origin`` value (``scheme://host[:port]``); None if it is not one.

    The scheme and host are compared without case, and a default port (80 for
    http, 443 for https) is the same as none, as browsers send them.
    """
    scheme, separator, rest = text.lower().partition("://")
    if not separator or not _SCHEME.match(scheme):
        return None
    split = _split_host_port(rest)
    if split is None:
        return None
    host, port_text = split
    port: int | None = None
    if port_text is not None:
        if not _PORT.match(port_text) or not 0 < int(port_text) <= 65535:
            return None
        port = int(port_text)
        if _DEFAULT_PORTS.get(scheme) == port:
            port = None
    return Origin(scheme, host, port)


def normalize_allowed_origin(text: str) -> str:
    """An ``--allow-origin`` value in the form browsers send; ValueError saying what is wrong.

    ``*`` and ``null`` are kept; an origin is lowercased, loses a default port
    and a lone trailing ``/``.
    """
    value = text.strip()
    if value in (ANY_ORIGIN, NULL_ORIGIN):
        return value
    origin = parse_origin(value.removesuffix("/"))
    if origin is None:
        raise ValueError(
            "must be an origin like http://localhost:5173 (scheme://host[:port] without a "
            f"path), * or null, got {text!r}"
        )
    return str(origin)


def is_json_content_type(value: str) -> bool:
    """``application/json`` or any ``+json`` type, with or without parameters."""
    media_type = value.partition(";")[0].strip().lower()
    kind, slash, subtype = media_type.partition("/")
    return bool(slash and kind) and (
        (kind == "application" and subtype == "json") or subtype.endswith("+json")
    )


def _host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]").partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost``, 127.0.0.0/8 or ::1 (host already lowercase)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _host_address(host)
    return address is not None and address.is_loopback


def _origin_host(host: str) -> str:
    """A listening or reached address as an origin's host: lowercase, IPv6 in brackets."""
    address = _host_address(host)
    if address is None:
        return host.lower().removesuffix(".")
    return f"[{address.compressed}]" if address.version == 6 else str(address)


def _shown(value: str) -> str:
    return value if len(value) <= _SHOWN_LIMIT else value[: _SHOWN_LIMIT - 3] + "..."


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a request.

    *status* None: route it, adding *headers* to the answer. 204: answer the
    preflight with *headers*. 403 or 415: refuse with *error*, adding *headers*.
    """

    status: HTTPStatus | None = None
    error: str = ""
    headers: tuple[tuple[str, str], ...] = ()


_GO_ON = Verdict()


@dataclass(frozen=True, slots=True)
class OriginPolicy:
    """The checks of one server: the address and port it listens on, and the allowed origins.

    *allowed* holds values of :func:`normalize_allowed_origin`.
    """

    host: str
    port: int
    allowed: frozenset[str] = frozenset()
    #: The server speaks TLS: its own pages are https ones only.
    tls: bool = False
    #: The listening address as an origin's host; "" for a wildcard (every address).
    _bound: str = field(init=False)
    #: Hosts of allowed origins: accepted in ``Host`` like loopback names.
    _allowed_hosts: frozenset[str] = field(init=False)
    #: The Host check's answers by (Host, address reached): the same few come every time.
    _hosts_seen: dict[tuple[str, str], bool] = field(
        init=False, default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        bound = "" if self.host in _WILDCARD_HOSTS else _origin_host(self.host)
        object.__setattr__(self, "_bound", bound)
        hosts = {o.host for o in map(parse_origin, self.allowed) if o is not None}
        object.__setattr__(self, "_allowed_hosts", frozenset(hosts))

    @classmethod
    def for_server(
        cls, host: str, port: int, allowed: Iterable[str] = (), *, tls: bool = False
    ) -> OriginPolicy:
        """The policy of a server listening on *host* and *port* (the real port, not 0)."""
        return cls(host, port, frozenset(normalize_allowed_origin(o) for o in allowed), tls)

    def check(
        self, method: str, is_upgrade: bool, headers: Mapping[str, str], local_host: str
    ) -> Verdict:
        """Decide on a request: its method, headers (lowercase names), the address it reached."""
        host = headers.get("host", "")
        if host:
            seen = self._hosts_seen.get((host, local_host))
            if seen is None:
                seen = self._host_allowed(host, local_host)
                if len(host) <= _HOST_REMEMBERED_LENGTH:
                    if len(self._hosts_seen) >= _HOSTS_REMEMBERED:
                        self._hosts_seen.clear()
                    self._hosts_seen[host, local_host] = seen
            if not seen:
                return Verdict(HTTPStatus.FORBIDDEN, self._host_error(host))
        origin_text = headers.get("origin")
        if origin_text is None:
            return _GO_ON
        origin = parse_origin(origin_text) if origin_text != NULL_ORIGIN else None
        own = origin is not None and self._is_own(origin, local_host)
        allowed = own or self._is_allowed(origin_text, origin)
        cors = self._cors_headers(origin_text) if allowed and not own else ()
        if method == "OPTIONS" and "access-control-request-method" in headers:
            if not allowed:
                return Verdict(HTTPStatus.FORBIDDEN, self._origin_error(origin_text, origin))
            preflight: tuple[tuple[str, str], ...] = (
                ("Access-Control-Allow-Methods", _CORS_METHODS),
                ("Access-Control-Allow-Headers", _CORS_HEADERS),
                ("Access-Control-Max-Age", _CORS_MAX_AGE),
            )
            if headers.get("access-control-request-private-network") == "true":
                # Chromium asks this before a public page may reach a local server.
                preflight += (("Access-Control-Allow-Private-Network", "true"),)
            return Verdict(HTTPStatus.NO_CONTENT, headers=cors + preflight)
        if not (is_upgrade or method not in _SAFE_METHODS):
            return Verdict(headers=cors)
        if not allowed:
            return Verdict(HTTPStatus.FORBIDDEN, self._origin_error(origin_text, origin))
        content_type = headers.get("content-type", "")
        if not own and not is_upgrade and content_type and not is_json_content_type(content_type):
            return Verdict(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"content type {_shown(content_type)} is not accepted from another origin; "
                "send the body as application/json",
                cors,
            )
        return Verdict(headers=cors)

    # -- the parts of the decision ------------------------------------------------------

    def _host_allowed(self, host_header: str, local_host: str) -> bool:
        address = _host_address(local_host) if local_host else None
        guarded = address.is_loopback if address is not None else is_loopback_host(self._bound)
        if not guarded:
            return True
        split = _split_host_port(host_header.lower())
        return split is not None and (
            is_loopback_host(split[0]) or split[0] in self._allowed_hosts
        )

    def _is_own(self, origin: Origin, local_host: str) -> bool:
        if origin.scheme not in _DEFAULT_PORTS or origin.effective_port != self.port:
            return False
        if self.tls and origin.scheme != "https":
            return False  # nothing serves http:// pages on a port that speaks TLS
        host = origin.host
        if host in ("localhost", "127.0.0.1", "[::1]") or host.endswith(".localhost"):
            return True
        if host == self._bound:
            return True
        return bool(local_host) and host == _origin_host(local_host)

    def _is_allowed(self, origin_text: str, origin: Origin | None) -> bool:
        if ANY_ORIGIN in self.allowed:
            return True
        if origin_text == NULL_ORIGIN:
            return NULL_ORIGIN in self.allowed
        return origin is not None and str(origin) in self.allowed

    def _cors_headers(self, origin_text: str) -> tuple[tuple[str, str], ...]:
        if ANY_ORIGIN in self.allowed:
            return (("Access-Control-Allow-Origin", "*"), _CORS_EXPOSED)
        return (("Access-Control-Allow-Origin", origin_text), ("Vary", "Origin"), _CORS_EXPOSED)

    def _origin_error(self, origin_text: str, origin: Origin | None) -> str:
        if origin_text == NULL_ORIGIN:
            return (
                "origin null (a sandboxed frame or a file:// page) is not allowed; "
                "start objstore with --allow-origin null to allow it"
            )
        if origin is None:
            return f"origin {describe(origin_text, _SHOWN_LIMIT)} is not allowed; {_ORIGIN_HINT}"
        flag = f"--allow-origin {origin}" if len(origin_text) <= _SHOWN_LIMIT else "--allow-origin"
        return (
            f"origin {_shown(origin_text)} is not allowed; start objstore with {flag} to allow it"
        )

    def _host_error(self, host: str) -> str:
        return (
            f"host {_shown(host)} is not allowed on a loopback address (it could be DNS "
            f"rebinding); open http://localhost:{self.port} instead, or name a reverse "
            "proxy's host with --allow-origin"
        )
