"""The REST resource ``/keys/{key}`` and the listing ``GET /keys``, against a real server.

Every route, status and header of docs/protocol.md, section 6, over real
sockets; writes are checked on disk as soon as they are answered.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest

from objstore.keys import file_name
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import HttpAnswer, http_request, raw_http, recv_json

ORIGIN = "https://app.example"


async def put(server: ObjstoreServer, key_path: str, body: str, **headers: str) -> HttpAnswer:
    return await http_request(server.port, "PUT", f"/keys/{key_path}", body, headers)


async def get(server: ObjstoreServer, key_path: str, **headers: str) -> HttpAnswer:
    return await http_request(server.port, "GET", f"/keys/{key_path}", None, headers)


def value_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / file_name(key)


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def conflict(key: str, rev: int, expected: int, value: object) -> dict[str, object]:
    """The body of a 412: the conflict error with the key's current revision and value."""
    return {
        "error": f'conflict: key "{key}" is at revision {rev}, not {expected}',
        "code": "conflict",
        "rev": rev,
        "value": value,
    }


# -- GET /keys/{key} ------------------------------------------------------------------------


async def test_get_answers_the_value_with_its_revision_as_etag(server: ObjstoreServer) -> None:
    """GET answers 200 with the stored JSON as the body and ``ETag: "REV"``."""
    await put(server, "k", '{"a": [1, 2]}')
    await put(server, "k", '{"a": [1, 2, 3]}')
    answer = await get(server, "k")
    assert answer.status == 200
    assert answer.body == b'{"a":[1,2,3]}'
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["etag"] == '"2"'


async def test_get_of_a_missing_key_is_404_not_found(server: ObjstoreServer) -> None:
    """A key without a value is 404 with the not_found code."""
    answer = await get(server, "nope")
    assert (answer.status, answer.json()) == (
        404,
        {"error": 'not found: key "nope" has no value', "code": "not_found"},
    )
    assert "etag" not in answer.headers


async def test_if_none_match_with_the_current_etag_is_304_without_body(
    server: ObjstoreServer,
) -> None:
    """If-None-Match naming the current revision is 304, its ETag and no body at all."""
    await put(server, "k", "1")
    raw = await raw_http(
        server.port,
        b'GET /keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-None-Match: "7", "1"\r\n'
        b"Connection: close\r\n\r\n",
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 304 Not Modified\r\n")
    assert b'\r\nETag: "1"' in head
    assert body == b""


async def test_304_does_not_announce_a_length_of_zero(server: ObjstoreServer) -> None:
    """A 304 sends no Content-Length, or the 200's one (RFC 9110, section 8.6)."""
    await put(server, "k", '"hello"')
    answer = await get(server, "k", **{"If-None-Match": '"1"'})
    assert answer.status == 304
    assert answer.headers.get("content-length", "7") == "7"


async def test_if_none_match_with_an_old_etag_is_200(server: ObjstoreServer) -> None:
    """If-None-Match naming an older revision gets the value and the new ETag."""
    await put(server, "k", "1")
    await put(server, "k", "2")
    answer = await get(server, "k", **{"If-None-Match": '"1"'})
    assert (answer.status, answer.body, answer.headers["etag"]) == (200, b"2", '"2"')


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("a%2Fb%20c", "a/b c"),
        ("a/b%20c", "a/b c"),
        ("caf%C3%A9/%E2%9C%93", "café/✓"),
        ("%3F%23%25", "?#%"),
    ],
)
async def test_keys_are_percent_decoded(
    server: ObjstoreServer, client: Connect, path: str, key: str
) -> None:
    """The key is the percent-decoded path, slashes and UTF-8 included."""
    assert (await put(server, path, "[1]")).status == 200
    async with client() as ws:
        await ws.send(json.dumps({"action": "get", "key": key}))
        assert await recv_json(ws) == {"key": key, "value": [1]}
    assert (await get(server, path)).body == b"[1]"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("%FF", "invalid key: the percent-encoded path is not UTF-8"),
        ("", 'invalid key: expected a non-empty string, got ""'),
        ("%ED%A0%80", "invalid key: the percent-encoded path is not UTF-8"),
    ],
)
async def test_invalid_key_is_400_invalid_key(
    server: ObjstoreServer, path: str, error: str
) -> None:
    """A path that is not a valid key is 400 with the invalid_key code, for reads and writes."""
    for answer in (await get(server, path), await put(server, path, "1")):
        assert (answer.status, answer.json()) == (400, {"error": error, "code": "invalid_key"})


async def test_key_over_1024_bytes_is_400_invalid_key(server: ObjstoreServer) -> None:
    """A key of 1,025 UTF-8 bytes is refused; one of 1,024 is stored."""
    assert (await put(server, "k" * 1024, "1")).status == 200
    answer = await put(server, "k" * 1025, "1")
    assert answer.status == 400
    assert answer.json()["code"] == "invalid_key"


# -- PUT /keys/{key} ------------------------------------------------------------------------


async def test_put_answers_its_revision_once_on_disk(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """PUT answers 200 ``{"rev": R}`` with ``ETag: "R"`` once the value is on disk (in the
    journal), and its file follows."""
    answer = await put(server, "p/k", '{"x": 1}')
    assert (answer.status, answer.json(), answer.headers["etag"]) == (200, {"rev": 1}, '"1"')
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert json.loads(value_file(cache_dir, "p/k").read_bytes()) == {"x": 1}


async def test_put_with_the_current_if_match_applies(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """If-Match naming the key's revision lets the write through."""
    await put(server, "k", "1")
    answer = await put(server, "k", "2", **{"If-Match": '"1"'})
    assert (answer.status, answer.json(), answer.headers["etag"]) == (200, {"rev": 2}, '"2"')
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert value_file(cache_dir, "k").read_bytes() == b"2\n"


async def test_put_with_a_stale_if_match_is_412_with_the_current_etag(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """A stale If-Match is 412 conflict with the current ETag; nothing changes."""
    await put(server, "k", "1")
    await put(server, "k", "2")
    answer = await put(server, "k", "3", **{"If-Match": '"1"'})
    assert (answer.status, answer.json()) == (412, conflict("k", 2, 1, 2))
    assert answer.headers["etag"] == '"2"'
    assert server.store.get("k") == b"2"
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert value_file(cache_dir, "k").read_bytes() == b"2\n"


async def test_put_if_match_on_a_missing_key_is_412_without_etag(server: ObjstoreServer) -> None:
    """If-Match on a key without a value is 412 and has no ETag to give."""
    answer = await put(server, "k", "1", **{"If-Match": '"3"'})
    assert (answer.status, answer.json()) == (412, conflict("k", 0, 3, None))
    assert "etag" not in answer.headers
    assert server.store.get("k") is None


async def test_put_if_none_match_star_only_creates(server: ObjstoreServer) -> None:
    """``If-None-Match: *`` writes a missing key and is 412 once the key exists."""
    first = await put(server, "k", "1", **{"If-None-Match": "*"})
    assert (first.status, first.json()) == (200, {"rev": 1})
    second = await put(server, "k", "2", **{"If-None-Match": "*"})
    assert (second.status, second.json(), second.headers["etag"]) == (
        412,
        conflict("k", 1, 0, 1),
        '"1"',
    )
    assert server.store.get("k") == b"1"


@pytest.mark.parametrize("tag", ["1", 'W/"1"', '"1", "2"', '"x"', '""', '"-1"'])
async def test_put_with_a_malformed_if_match_is_400(server: ObjstoreServer, tag: str) -> None:
    """If-Match must be one strong tag of a revision; anything else is 400, nothing written."""
    await put(server, "k", "1")
    answer = await put(server, "k", "2", **{"If-Match": tag})
    assert (answer.status, answer.json()) == (
        400,
        {
            "error": "invalid If-Match: expected one revision as an entity tag, like "
            f'"12", got {json.dumps(tag)}',
            "code": "invalid_message",
        },
    )
    assert server.store.get("k") == b"1"


async def test_put_with_a_superscript_digit_in_if_match_is_400(server: ObjstoreServer) -> None:
    """An If-Match whose byte 0xB2 reads as a superscript two is 400, not a dropped connection."""
    raw = await raw_http(
        server.port,
        b'PUT /keys/k HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Match: "\xb2"\r\n'
        b"Content-Length: 1\r\nConnection: close\r\n\r\n1",
    )
    assert raw.startswith(b"HTTP/1.1 400 ")


async def test_put_with_a_ttl_expires(server: ObjstoreServer, cache_dir: Path) -> None:
    """``?ttl=S`` deletes the key, and its file, S seconds after the write."""
    answer = await put(server, "k?ttl=0.2", "1")
    assert (answer.status, answer.json()) == (200, {"rev": 1})
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert value_file(cache_dir, "k").exists()
    await asyncio.sleep(0.3)
    assert (await get(server, "k")).status == 404
    await eventually(lambda: not value_file(cache_dir, "k").exists())


@pytest.mark.parametrize("ttl", ["abc", "0", "-1", "315360000.5", "nan", "inf", ""])
async def test_put_with_a_bad_ttl_is_400(server: ObjstoreServer, ttl: str) -> None:
    """A ttl that is not seconds in (0, ten years] is 400 invalid_message; nothing written."""
    answer = await put(server, f"k?ttl={ttl}", "1")
    assert (answer.status, answer.json()) == (
        400,
        {
            "error": "invalid ttl: expected seconds above 0 and at most 315360000, "
            f"got {json.dumps(ttl)}",
            "code": "invalid_message",
        },
    )
    assert server.store.get("k") is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            "{bad",
            "invalid JSON: Expecting property name enclosed in double quotes: line 1 "
            "column 2 (char 1)",
        ),
        ("", "invalid body: empty; send the value as JSON"),
        (b"\xff", "invalid body: not UTF-8 text"),
    ],
)
async def test_put_with_a_body_that_is_not_json_is_400(
    server: ObjstoreServer, body: str | bytes, error: str
) -> None:
    """A body that is not one JSON value is 400 invalid_json; nothing written."""
    answer = await http_request(server.port, "PUT", "/keys/k", body)
    assert (answer.status, answer.json()) == (400, {"error": error, "code": "invalid_json"})
    assert server.store.get("k") is None


async def test_put_body_over_the_size_limit_is_413(start_server: StartServer) -> None:
    """A body over --max-size gets the HTTP layer's 413; nothing written."""
    server = await start_server(max_size=2048)
    body = '"' + "x" * 3000 + '"'
    answer = await put(server, "k", body)
    assert (answer.status, answer.json()) == (
        413,
        {"error": f"body too large: {len(body)} bytes, over the limit of 2048"},
    )
    assert server.store.get("k") is None


# -- PATCH /keys/{key} ----------------------------------------------------------------------


async def test_patch_merges_and_answers_the_new_value_with_its_etag(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """PATCH applies a merge patch and answers the whole new value and its ETag."""
    await put(server, "k", '{"a": 1, "b": {"c": 2}}')
    answer = await http_request(
        server.port,
        "PATCH",
        "/keys/k",
        '{"a": null, "b": {"d": [3]}}',
        {"Content-Type": "application/merge-patch+json"},
    )
    assert (answer.status, answer.body, answer.headers["etag"]) == (
        200,
        b'{"b":{"c":2,"d":[3]}}',
        '"2"',
    )
    assert answer.headers["content-type"] == "application/json"
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert json.loads(value_file(cache_dir, "k").read_bytes()) == {"b": {"c": 2, "d": [3]}}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/merge-patch+json; charset=utf-8",
        "Application/JSON",
        None,
    ],
)
async def test_patch_accepts_json_content_types(
    server: ObjstoreServer, content_type: str | None
) -> None:
    """A merge patch may come as merge-patch+json, as JSON, or without a type; a missing key
    starts from {}."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = await http_request(server.port, "PATCH", "/keys/k", '{"x": 1}', headers)
    assert (answer.status, answer.body) == (200, b'{"x":1}')


async def test_patch_as_text_plain_is_415(server: ObjstoreServer) -> None:
    """A patch sent as text/plain is 415 and changes nothing."""
    await put(server, "k", '{"x": 1}')
    answer = await http_request(
        server.port, "PATCH", "/keys/k", '{"x": 2}', {"Content-Type": "text/plain"}
    )
    assert (answer.status, answer.json()) == (
        415,
        {
            "error": 'unsupported content type "text/plain"; send the merge patch as '
            "application/merge-patch+json",
            "code": "invalid_message",
        },
    )
    assert server.store.get("k") == b'{"x":1}'


async def test_patch_with_if_match(server: ObjstoreServer) -> None:
    """PATCH applies with the current If-Match and is 412 with a stale one."""
    await put(server, "k", '{"x": 1}')
    json_type = {"Content-Type": "application/merge-patch+json"}
    stale = await http_request(
        server.port, "PATCH", "/keys/k", '{"y": 2}', {**json_type, "If-Match": '"7"'}
    )
    assert (stale.status, stale.json(), stale.headers["etag"]) == (
        412,
        conflict("k", 1, 7, {"x": 1}),
        '"1"',
    )
    ok = await http_request(
        server.port, "PATCH", "/keys/k", '{"y": 2}', {**json_type, "If-Match": '"1"'}
    )
    assert (ok.status, ok.body, ok.headers["etag"]) == (200, b'{"x":1,"y":2}', '"2"')


async def test_patch_with_a_ttl_expires(server: ObjstoreServer) -> None:
    """``?ttl=S`` on PATCH deletes the key S seconds later."""
    answer = await http_request(server.port, "PATCH", "/keys/k?ttl=0.2", '{"x": 1}')
    assert answer.status == 200
    await asyncio.sleep(0.3)
    assert (await get(server, "k")).status == 404


async def test_patch_that_is_not_an_object_replaces_the_value(server: ObjstoreServer) -> None:
    """A patch that is not an object replaces the whole value, as RFC 7386 says."""
    await put(server, "k", '{"x": 1}')
    answer = await http_request(server.port, "PATCH", "/keys/k", "[1, null]")
    assert (answer.status, answer.body, answer.headers["etag"]) == (200, b"[1,null]", '"2"')


async def test_patch_whose_result_passes_the_size_limit_is_413(start_server: StartServer) -> None:
    """A patch under --max-size whose result would pass it is 413 too_large; nothing changes."""
    server = await start_server(max_size=100)
    await put(server, "k", json.dumps({"a": "x" * 60}))
    answer = await http_request(server.port, "PATCH", "/keys/k", json.dumps({"b": "y" * 60}))
    assert (answer.status, answer.json()) == (
        413,
        {
            "error": 'too large: the patch would make key "k" 135 bytes, over the limit of '
            "100; nothing changed",
            "code": "too_large",
        },
    )
    assert (server.store.get("k"), server.store.rev) == (b'{"a":"' + b"x" * 60 + b'"}', 1)


# -- DELETE /keys/{key} ---------------------------------------------------------------------


async def test_delete_answers_204_once_the_removal_is_on_disk(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """DELETE is 204 without a body, with the deletion's ETag, once the file is removed."""
    await put(server, "k", "1")
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert value_file(cache_dir, "k").exists()
    answer = await http_request(server.port, "DELETE", "/keys/k")
    assert (answer.status, answer.body, answer.headers["etag"]) == (204, b"", '"2"')
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert not value_file(cache_dir, "k").exists()
    assert (await get(server, "k")).status == 404


async def test_delete_of_a_missing_key_is_404(server: ObjstoreServer) -> None:
    """DELETE of a key without a value is 404 not_found and takes no revision."""
    answer = await http_request(server.port, "DELETE", "/keys/nope")
    assert (answer.status, answer.json()) == (
        404,
        {"error": 'not found: key "nope" has no value', "code": "not_found"},
    )
    assert server.store.rev == 0


async def test_delete_with_a_stale_if_match_is_412(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """A stale If-Match is 412 with the current ETag; the key and its file stay."""
    await put(server, "k", "1")
    answer = await http_request(server.port, "DELETE", "/keys/k", None, {"If-Match": '"5"'})
    assert (answer.status, answer.json(), answer.headers["etag"]) == (
        412,
        conflict("k", 1, 5, 1),
        '"1"',
    )
    await server.store.flush()  # acknowledged from the journal; the file follows
    assert value_file(cache_dir, "k").read_bytes() == b"1\n"


async def test_delete_with_the_current_if_match_deletes(server: ObjstoreServer) -> None:
    """The current If-Match lets the deletion through."""
    await put(server, "k", "1")
    answer = await http_request(server.port, "DELETE", "/keys/k", None, {"If-Match": '"1"'})
    assert answer.status == 204
    assert server.store.get("k") is None


async def test_delete_with_if_match_0_of_a_missing_key_is_404(server: ObjstoreServer) -> None:
    """If-Match "0" (no value) on a missing key deletes nothing: 404, as without If-Match."""
    await put(server, "other", "1")
    answer = await http_request(server.port, "DELETE", "/keys/nope", None, {"If-Match": '"0"'})
    assert (answer.status, answer.json()) == (
        404,
        {"error": 'not found: key "nope" has no value', "code": "not_found"},
    )


# -- GET /keys ------------------------------------------------------------------------------


async def test_listing_pages_through_a_prefix(server: ObjstoreServer) -> None:
    """``limit`` cuts pages, ``next`` is the last key given, ``after`` goes on from it."""
    for key in ("p/c", "q/a", "p/a", "p/é", "p/b", "p", "p/d"):
        await put(server, quote(key, safe=""), "1")
    pages = []
    after = ""
    while True:
        answer = await http_request(server.port, "GET", f"/keys?prefix=p%2F&limit=2&after={after}")
        assert answer.status == 200
        pages.append(answer.json())
        if answer.json()["next"] is None:
            break
        after = quote(answer.json()["next"], safe="")
    assert pages == [
        {"keys": ["p/a", "p/b"], "next": "p/b"},
        {"keys": ["p/c", "p/d"], "next": "p/d"},
        {"keys": ["p/é"], "next": None},
    ]


async def test_listing_without_parameters_gives_every_key(server: ObjstoreServer) -> None:
    """``GET /keys`` lists every key in UTF-8 byte order, up to 100."""
    for key in ("b", "a", "é", "z"):
        await put(server, quote(key, safe=""), "1")
    answer = await http_request(server.port, "GET", "/keys")
    assert (answer.status, answer.json()) == (200, {"keys": ["a", "b", "z", "é"], "next": None})


async def test_listing_over_1000_is_413_too_large(server: ObjstoreServer) -> None:
    """A limit over 1,000 is 413 too_large."""
    answer = await http_request(server.port, "GET", "/keys?limit=1001")
    assert (answer.status, answer.json()) == (
        413,
        {
            "error": 'too large: a limit of 1001 keys, over the most of 1000; page with "after"',
            "code": "too_large",
        },
    )


@pytest.mark.parametrize("limit", ["x", "-1", "1.5", "", "1e3", "9999999999"])
async def test_listing_with_a_bad_limit_is_400(server: ObjstoreServer, limit: str) -> None:
    """A limit that is not a positive integer is 400 invalid_message."""
    answer = await http_request(server.port, "GET", f"/keys?limit={limit}")
    assert (answer.status, answer.json()) == (
        400,
        {
            "error": f"invalid limit: expected a positive integer, got {json.dumps(limit)}",
            "code": "invalid_message",
        },
    )


async def test_listing_with_a_limit_of_0_is_400(server: ObjstoreServer) -> None:
    """A limit of 0 is 400 invalid_message."""
    answer = await http_request(server.port, "GET", "/keys?limit=0")
    assert (answer.status, answer.json()) == (
        400,
        {
            "error": 'invalid keys: "limit" must be a positive integer, got 0',
            "code": "invalid_message",
        },
    )


async def test_listing_with_a_superscript_limit_is_400(server: ObjstoreServer) -> None:
    """A limit of "²" (U+00B2, a digit to str.isdigit) is 400, not a dropped connection."""
    answer = await http_request(server.port, "GET", "/keys?limit=%C2%B2")
    assert answer.status == 400


# -- other methods, subscribers, other origins ----------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/keys/k", "GET, PUT, PATCH, DELETE"),
        ("OPTIONS", "/keys/k", "GET, PUT, PATCH, DELETE"),
        ("POST", "/keys", "GET"),
        ("PUT", "/keys", "GET"),
        ("DELETE", "/keys", "GET"),
    ],
)
async def test_other_methods_are_405_with_allow(
    server: ObjstoreServer, method: str, path: str, allowed: str
) -> None:
    """Methods a route does not take are 405 with the Allow header."""
    answer = await http_request(server.port, method, path, "1")
    assert (answer.status, answer.json(), answer.headers["allow"]) == (
        405,
        {
            "error": f"method {method} is not allowed on {path}; use {allowed}",
            "code": "invalid_message",
        },
        allowed,
    )


async def test_websocket_subscribers_see_rest_writes(
    server: ObjstoreServer, client: Connect
) -> None:
    """PUT, PATCH and DELETE reach a prefix subscriber as updates with their revisions."""
    async with client() as ws:
        await ws.send(json.dumps({"action": "subscribe", "prefix": "p/", "id": 1}))
        assert await recv_json(ws) == {"id": 1, "ok": True, "rev": 0}
        await put(server, "p/k", '{"a": 1}')
        await http_request(server.port, "PATCH", "/keys/p/k", '{"b": 2}')
        await http_request(server.port, "DELETE", "/keys/p/k")
        assert [await recv_json(ws) for _ in range(3)] == [
            {"key": "p/k", "value": {"a": 1}, "rev": 1},
            {"key": "p/k", "value": {"a": 1, "b": 2}, "rev": 2},
            {"key": "p/k", "value": None, "rev": 3, "deleted": True},
        ]


@pytest.mark.parametrize(
    ("method", "body", "content_type", "status"),
    [
        ("PUT", "1", "application/json", 200),
        ("PATCH", '{"x": 1}', "application/merge-patch+json", 200),
        ("DELETE", None, None, 204),
    ],
)
async def test_writes_from_an_allowed_origin_get_cors_headers(
    start_server: StartServer,
    method: str,
    body: str | None,
    content_type: str | None,
    status: int,
) -> None:
    """A write from an --allow-origin page is served with CORS headers that expose ETag."""
    server = await start_server(allow_origins=(ORIGIN,))
    await put(server, "k", '{"x": 0}')
    headers = {"Origin": ORIGIN}
    if content_type is not None:
        headers["Content-Type"] = content_type
    answer = await http_request(server.port, method, "/keys/k", body, headers)
    assert answer.status == status
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert answer.headers["access-control-expose-headers"] == "ETag"
    assert answer.headers["vary"] == "Origin"
    assert answer.headers["etag"] == '"2"'


async def test_preflight_of_an_allowed_origin_allows_the_rest_headers(
    start_server: StartServer,
) -> None:
    """The preflight of a PUT with If-Match from an allowed origin is 204 and allows both."""
    server = await start_server(allow_origins=(ORIGIN,))
    answer = await http_request(
        server.port,
        "OPTIONS",
        "/keys/k",
        None,
        {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type, if-match",
        },
    )
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    assert "PUT" in answer.headers["access-control-allow-methods"].split(", ")
    assert "If-Match" in answer.headers["access-control-allow-headers"].split(", ")


@pytest.mark.parametrize(
    ("method", "body"), [("PUT", "1"), ("PATCH", '{"x": 1}'), ("DELETE", None)]
)
async def test_writes_from_a_foreign_origin_are_403(
    start_server: StartServer, method: str, body: str | None
) -> None:
    """A write from a site that is not allowed is 403 and changes nothing."""
    server = await start_server(allow_origins=(ORIGIN,))
    await put(server, "k", '{"x": 0}')
    answer = await http_request(
        server.port,
        method,
        "/keys/k",
        body,
        {"Origin": "https://evil.example", "Content-Type": "application/json"},
    )
    assert (answer.status, answer.json()) == (
        403,
        {
            "error": "origin https://evil.example is not allowed; start objstore with "
            "--allow-origin https://evil.example to allow it"
        },
    )
    assert "access-control-allow-origin" not in answer.headers
    assert (server.store.get("k"), server.store.rev) == (b'{"x":0}', 1)


async def test_if_none_match_with_the_current_tag_refuses_a_write(server: ObjstoreServer) -> None:
    """A write whose If-None-Match names the key's current revision gets 412, as RFC 9110 says."""
    await http_request(server.port, "PUT", "/keys/k", "1")
    answer = await http_request(server.port, "PUT", "/keys/k", "2", {"If-None-Match": '"1"'})
    assert answer.status == 412
    assert answer.json()["code"] == "conflict"
    answer = await http_request(server.port, "PUT", "/keys/k", "2", {"If-None-Match": '"7"'})
    assert answer.status == 200
