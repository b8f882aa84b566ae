"""The Origin and Host rules of objstore.origins, without a server."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from objstore.origins import (
    Origin,
    OriginPolicy,
    Verdict,
    is_json_content_type,
    normalize_allowed_origin,
    parse_origin,
)

PORT = 3000
LOOPBACK = OriginPolicy.for_server("127.0.0.1", PORT)


def check(
    policy: OriginPolicy,
    method: str = "GET",
    *,
    upgrade: bool = False,
    local_host: str = "127.0.0.1",
    **headers: str,
) -> Verdict:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return policy.check(method, upgrade, named, local_host)


# -- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("http://localhost:5173", Origin("http", "localhost", 5173)),
        ("HTTP://Example.COM", Origin("http", "example.com", None)),
        ("http://example.com:80", Origin("http", "example.com", None)),
        ("https://example.com:443", Origin("https", "example.com", None)),
        ("https://example.com:80", Origin("https", "example.com", 80)),
        ("http://[0:0::1]:3000", Origin("http", "[::1]", 3000)),
        ("app://bundle", Origin("app", "bundle", None)),
    ],
)
def test_origins_are_parsed_as_browsers_compare_them(text: str, origin: Origin) -> None:
    """Scheme and host lose their case, a default port is no port, IPv6 is compressed."""
    assert parse_origin(text) == origin


@pytest.mark.parametrize(
    "text",
    [
        "null",
        "evil.example",
        "http://",
        "http://evil.example/",
        "http://evil.example/path",
        "http://user@evil.example",
        "http://evil.example:0",
        "http://evil.example:65536",
        "http://evil.example:x",
        "http://[::1",
        "http://[nope]:3000",
        "1http://evil.example",
    ],
)
def test_malformed_origins_are_not_origins(text: str) -> None:
    """A value that is not scheme://host[:port] parses to None."""
    assert parse_origin(text) is None


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("*", "*"),
        ("null", "null"),
        (" http://LOCALHOST:5173 ", "http://localhost:5173"),
        ("http://localhost:5173/", "http://localhost:5173"),
        ("https://app.example:443", "https://app.example"),
    ],
)
def test_allowed_origins_are_normalized(text: str, normal: str) -> None:
    """--allow-origin values are kept as browsers send them: lowercase, no default port."""
    assert normalize_allowed_origin(text) == normal


@pytest.mark.parametrize("text", ["", "localhost:5173", "http://x/app", "http://x?q", "**"])
def test_bad_allowed_origins_are_refused(text: str) -> None:
    """A path, a missing scheme or garbage is a ValueError naming the value."""
    with pytest.raises(ValueError, match=r"must be an origin like http://localhost:5173") as exc:
        normalize_allowed_origin(text)
    assert str(exc.value).endswith(f"got {text!r}")


@pytest.mark.parametrize(
    ("value", "is_json"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/merge-patch+json", True),
        ("text/plain", False),
        ("text/plain; a=application/json", False),
        ("application/x-www-form-urlencoded", False),
        ("multipart/form-data; boundary=x", False),
        ("json", False),
        ("application/jsonx", False),
    ],
)
def test_json_content_types(value: str, is_json: bool) -> None:
    """application/json or any +json type, parameters allowed."""
    assert is_json_content_type(value) is is_json


# -- the Host check -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:3000",
        "LOCALHOST:1",
        "localhost.:3000",
        "app.localhost:3000",
        "127.0.0.1:3000",
        "127.1.2.3",
        "[::1]:3000",
        "[::1]",
    ],
)
def test_loopback_hosts_are_served(host: str) -> None:
    """Loopback names and addresses, any port, are served on a loopback server."""
    assert check(LOOPBACK, host=host) == Verdict()


@pytest.mark.parametrize(
    "host",
    ["evil.example:3000", "evil.example", "localhost.evil.example", "0.0.0.0:3000", "192.168.1.5"],
)
def test_other_hosts_are_refused_on_loopback(host: str) -> None:
    """A host that is not a loopback name is refused with 403, reads included: DNS rebinding."""
    verdict = check(LOOPBACK, host=host)
    assert verdict.status == HTTPStatus.FORBIDDEN
    assert verdict.error == (
        f"host {host} is not allowed on a loopback address (it could be DNS rebinding); "
        "open http://localhost:3000 instead, or name a reverse proxy's host with --allow-origin"
    )


def test_host_answers_are_remembered_within_a_bound() -> None:
    """The Host check remembers at most 512 answers, of short Host values, and stays right."""
    policy = OriginPolicy.for_server("127.0.0.1", PORT)
    for n in range(1000):
        assert check(policy, host=f"evil-{n}.example").status == 403
        assert check(policy, host=f"evil-{n}.example").status == 403
    assert check(policy, host="localhost:3000") == Verdict()
    assert check(policy, host="localhost:3000") == Verdict()
    assert 0 < len(policy._hosts_seen) <= 512
    assert check(policy, host="a" * 300 + ".localhost") == Verdict()
    assert ("a" * 300 + ".localhost", "127.0.0.1") not in policy._hosts_seen


def test_missing_host_is_served() -> None:
    """An HTTP/1.0 request without Host is served."""
    assert check(LOOPBACK) == Verdict()


def test_host_check_applies_to_upgrades() -> None:
    """A WebSocket upgrade for a rebound host is refused like any request."""
    assert check(LOOPBACK, upgrade=True, host="evil.example:3000").status == 403


def test_any_host_is_served_on_a_network_address() -> None:
    """A request that reached a network address may name any host (a LAN name)."""
    policy = OriginPolicy.for_server("0.0.0.0", PORT)
    assert check(policy, host="my-pc.lan:3000", local_host="192.168.1.5") == Verdict()


def test_host_check_applies_to_loopback_of_a_wildcard_bind() -> None:
    """On 0.0.0.0, a request that reached 127.0.0.1 must still name a loopback host."""
    policy = OriginPolicy.for_server("0.0.0.0", PORT)
    assert check(policy, host="evil.example", local_host="127.0.0.1").status == 403
    assert check(policy, host="evil.example", local_host="::ffff:127.0.0.1").status == 403


def test_host_check_without_the_reached_address_follows_the_bind() -> None:
    """When the address reached is unknown, a loopback bind decides."""
    assert check(LOOPBACK, host="evil.example", local_host="").status == 403
    policy = OriginPolicy.for_server("192.168.1.5", PORT)
    assert check(policy, host="evil.example", local_host="") == Verdict()


def test_host_of_an_allowed_origin_is_served() -> None:
    """A reverse proxy that keeps the Host works once its origin is allowed."""
    policy = OriginPolicy.for_server("127.0.0.1", PORT, ["https://store.example"])
    assert check(policy, host="store.example") == Verdict()
    assert check(policy, host="other.example").status == 403


# -- the Origin check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "upgrade"), [("GET", True), ("POST", False), ("PUT", False), ("DELETE", False)]
)
def test_other_origin_may_not_upgrade_or_change_state(method: str, upgrade: bool) -> None:
    """An upgrade or a state-changing request from another website is refused with 403."""
    verdict = check(LOOPBACK, method, upgrade=upgrade, origin="http://evil.example")
    assert verdict == Verdict(
        HTTPStatus.FORBIDDEN,
        "origin http://evil.example is not allowed; "
        "start objstore with --allow-origin http://evil.example to allow it",
    )


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_other_origin_may_read(method: str) -> None:
    """Reads from another website are served, without CORS headers: it cannot read them."""
    assert check(LOOPBACK, method, origin="http://evil.example") == Verdict()


def test_null_origin_is_refused() -> None:
    """Origin: null (a sandboxed frame, a file:// page) is refused and the message says why."""
    verdict = check(LOOPBACK, upgrade=True, origin="null")
    assert verdict.status == HTTPStatus.FORBIDDEN
    assert verdict.error == (
        "origin null (a sandboxed frame or a file:// page) is not allowed; "
        "start objstore with --allow-origin null to allow it"
    )


def test_malformed_origin_is_refused() -> None:
    """An Origin that is no origin is refused, named as JSON."""
    verdict = check(LOOPBACK, "POST", origin="evil")
    assert verdict.error == (
        'origin "evil" is not allowed; an origin is scheme://host[:port] without a path, '
        "like http://localhost:5173"
    )


def test_long_origin_is_cut_in_the_message() -> None:
    """The Origin shown in an error is cut at 100 characters."""
    origin = "http://" + "a" * 500 + ".example"
    assert check(LOOPBACK, "POST", origin=origin).error == (
        f"origin {origin[:97]}... is not allowed; start objstore with --allow-origin to allow it"
    )


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:3000",
        "http://localhost:3000",
        "https://localhost:3000",
        "http://app.localhost:3000",
        "http://[::1]:3000",
    ],
)
def test_own_origins_may_upgrade_and_post(origin: str) -> None:
    """Loopback names with the server's port are its own origins: no CORS, any body type."""
    assert check(LOOPBACK, upgrade=True, origin=origin) == Verdict()
    assert check(LOOPBACK, "POST", origin=origin, content_type="text/plain") == Verdict()


@pytest.mark.parametrize(
    ("origin", "own"),
    [
        ("https://localhost:3000", True),
        ("https://127.0.0.1:3000", True),
        ("https://192.168.1.5:3000", True),
        ("http://localhost:3000", False),
        ("http://192.168.1.5:3000", False),
    ],
)
def test_own_origins_over_tls_are_https_ones(origin: str, own: bool) -> None:
    """A server speaking TLS serves only https pages: an http page of its port is not its own."""
    policy = OriginPolicy.for_server("0.0.0.0", PORT, tls=True)
    verdict = check(policy, upgrade=True, origin=origin, local_host="192.168.1.5", host="x")
    assert verdict.status is (None if own else HTTPStatus.FORBIDDEN)


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:3001",
        "http://localhost",
        "ws://localhost:3000",
        "http://127.0.0.2:3000",
        "http://192.168.1.5:3000",
    ],
)
def test_other_ports_and_addresses_are_not_own(origin: str) -> None:
    """Another port, another scheme, or another 127.x address is another origin."""
    assert check(LOOPBACK, upgrade=True, origin=origin).status == 403


def test_listening_address_is_own() -> None:
    """The address the server listens on, with its port, is its own origin."""
    policy = OriginPolicy.for_server("127.0.0.2", PORT)
    assert check(policy, upgrade=True, origin="http://127.0.0.2:3000") == Verdict()
    named = OriginPolicy.for_server("my-pc.lan", PORT)
    assert check(named, upgrade=True, origin="http://my-pc.lan:3000", local_host="10.0.0.2") == (
        Verdict()
    )


@pytest.mark.parametrize(
    ("local_host", "origin"),
    [
        ("192.168.1.5", "http://192.168.1.5:3000"),
        ("::ffff:192.168.1.5", "http://192.168.1.5:3000"),
        ("fe80::1%eth0", "http://[fe80::1]:3000"),
        ("2001:db8::1", "http://[2001:db8::1]:3000"),
    ],
)
def test_address_reached_is_own_on_a_wildcard_bind(local_host: str, origin: str) -> None:
    """On 0.0.0.0, the IP address the client reached, with the port, is an own origin."""
    policy = OriginPolicy.for_server("0.0.0.0", PORT)
    assert check(policy, upgrade=True, origin=origin, local_host=local_host) == Verdict()


def test_lan_name_needs_allowing_on_a_wildcard_bind() -> None:
    """A page opened by a LAN name is not own (a name can be rebound); allowing it works."""
    policy = OriginPolicy.for_server("0.0.0.0", PORT)
    origin = "http://my-pc.lan:3000"
    assert check(policy, upgrade=True, origin=origin, local_host="192.168.1.5").status == 403
    allowed = OriginPolicy.for_server("0.0.0.0", PORT, [origin])
    assert check(allowed, upgrade=True, origin=origin, local_host="192.168.1.5").status is None


def test_no_origin_is_served() -> None:
    """Without Origin (curl, scripts, native clients) upgrades and writes are served."""
    assert check(LOOPBACK, upgrade=True) == Verdict()
    assert check(LOOPBACK, "POST", content_type="application/x-www-form-urlencoded") == Verdict()


# -- allowed origins and CORS -------------------------------------------------------------

APP = "http://localhost:5173"
ALLOWING = OriginPolicy.for_server("127.0.0.1", PORT, [APP])
EXPOSED = ("Access-Control-Expose-Headers", "ETag")
CORS = (("Access-Control-Allow-Origin", APP), ("Vary", "Origin"), EXPOSED)


def test_allowed_origin_may_upgrade() -> None:
    """An allowed origin may open a WebSocket."""
    assert check(ALLOWING, upgrade=True, origin=APP).status is None


def test_allowed_origin_gets_cors_headers_on_reads() -> None:
    """A read from an allowed origin carries Access-Control-Allow-Origin and Vary."""
    assert check(ALLOWING, origin=APP) == Verdict(headers=CORS)


def test_allowed_origin_may_post_json() -> None:
    """A JSON POST from an allowed origin goes on, with CORS headers."""
    verdict = check(ALLOWING, "POST", origin=APP, content_type="application/json")
    assert verdict == Verdict(headers=CORS)


def test_allowed_origin_may_post_without_content_type() -> None:
    """A POST from an allowed origin without a content type goes on."""
    assert check(ALLOWING, "POST", origin=APP) == Verdict(headers=CORS)


def test_cross_origin_post_needs_json() -> None:
    """A text/plain POST from an allowed origin is 415, with CORS headers to read it."""
    verdict = check(ALLOWING, "POST", origin=APP, content_type="text/plain;charset=UTF-8")
    assert verdict == Verdict(
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        "content type text/plain;charset=UTF-8 is not accepted from another origin; "
        "send the body as application/json",
        CORS,
    )


def test_preflight_of_allowed_origin_is_204() -> None:
    """OPTIONS with Access-Control-Request-Method from an allowed origin: 204 and CORS."""
    verdict = check(
        ALLOWING,
        "OPTIONS",
        origin=APP,
        access_control_request_method="POST",
        access_control_request_headers="content-type",
    )
    assert verdict == Verdict(
        HTTPStatus.NO_CONTENT,
        headers=(
            *CORS,
            ("Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            (
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, If-Match, If-None-Match, Last-Event-ID",
            ),
            ("Access-Control-Max-Age", "600"),
        ),
    )


def test_preflight_may_reach_the_private_network() -> None:
    """A preflight asking for private network access is granted to an allowed origin."""
    verdict = check(
        ALLOWING,
        "OPTIONS",
        origin=APP,
        access_control_request_method="GET",
        access_control_request_private_network="true",
    )
    assert verdict.headers[-1] == ("Access-Control-Allow-Private-Network", "true")


def test_preflight_of_other_origin_is_403() -> None:
    """A preflight from an origin that is not allowed is refused."""
    verdict = check(
        ALLOWING, "OPTIONS", origin="http://evil.example", access_control_request_method="POST"
    )
    assert verdict.status == HTTPStatus.FORBIDDEN
    assert verdict.headers == ()


def test_options_without_preflight_headers_is_routed() -> None:
    """OPTIONS that is no preflight (no Access-Control-Request-Method) goes to the routes."""
    assert check(ALLOWING, "OPTIONS", origin=APP) == Verdict(headers=CORS)


def test_other_origins_stay_refused_when_some_are_allowed() -> None:
    """Allowing one origin does not allow another."""
    assert check(ALLOWING, "POST", origin="http://evil.example").status == 403


def test_any_origin_with_star() -> None:
    """With *, every origin, null included, may upgrade and post JSON; CORS says *."""
    policy = OriginPolicy.for_server("127.0.0.1", PORT, ["*"])
    star = (("Access-Control-Allow-Origin", "*"), EXPOSED)
    assert check(policy, upgrade=True, origin="null") == Verdict(headers=star)
    verdict = check(policy, "POST", origin="http://evil.example", content_type="application/json")
    assert verdict == Verdict(headers=star)


def test_null_allowed_explicitly() -> None:
    """--allow-origin null lets file:// pages in, echoing null."""
    policy = OriginPolicy.for_server("127.0.0.1", PORT, ["null"])
    assert check(policy, upgrade=True, origin="null") == Verdict(
        headers=(("Access-Control-Allow-Origin", "null"), ("Vary", "Origin"), EXPOSED)
    )


def test_allowed_origin_matches_as_browsers_send_it() -> None:
    """An allowed origin given with a default port or capitals matches the browser's form."""
    policy = OriginPolicy.for_server("127.0.0.1", PORT, ["HTTPS://App.Example:443"])
    assert check(policy, upgrade=True, origin="https://app.example").status is None
