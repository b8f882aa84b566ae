"""Whole answers to repeated reads: kept only while what made them stays, and bounded.

The pure table first, then the real server: the same request bytes on a kept-alive
connection always get the key's current value, under the rules in force.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from websockets.asyncio.client import connect

from objstore.repeatanswers import MAX_ANSWER, MAX_ENTRIES, MAX_REQUEST, RepeatAnswers, Reuse
from objstore.server import ObjstoreServer

from .conftest import StartServer
from .test_http_keepalive import get, read_response

# -- the table ------------------------------------------------------------------------------


class World:
    """Stands for the store's values and the access rules, as the server's are."""

    def __init__(self) -> None:
        self.values: dict[str, bytes | None] = {}
        self.revs: dict[str, int] = {}
        self.rules = object()

    def table(self) -> RepeatAnswers:
        return RepeatAnswers(self.values.get, lambda: self.rules, lambda k: self.revs.get(k, 0))


def test_a_kept_answer_is_given_while_its_value_and_rules_stay() -> None:
    """The same request on the same local address gets the kept answer."""
    world = World()
    value = world.values["k"] = b"1"
    answers = world.table()
    answers.remember(b"GET /get/k", "127.0.0.1", b"ANSWER", Reuse("k", value))
    assert answers.lookup(b"GET /get/k", "127.0.0.1") == b"ANSWER"


def test_a_new_value_even_an_equal_one_retires_the_answer() -> None:
    """A key changed since (a new value object, whatever its bytes) gets no kept answer."""
    world = World()
    world.values["k"] = b"1"
    answers = world.table()
    answers.remember(b"GET /get/k", "127.0.0.1", b"ANSWER", Reuse("k", world.values["k"]))
    world.values["k"] = bytes(bytearray(b"1"))  # equal, not the same
    assert answers.lookup(b"GET /get/k", "127.0.0.1") is None


def test_a_key_that_had_no_value_and_now_has_one() -> None:
    """An answer made while the key had no value is retired by its first value."""
    world = World()
    answers = world.table()
    answers.remember(b"GET /get/k", "127.0.0.1", b"NULL", Reuse("k", None))
    assert answers.lookup(b"GET /get/k", "127.0.0.1") == b"NULL"
    world.values["k"] = b"1"
    assert answers.lookup(b"GET /get/k", "127.0.0.1") is None


def test_new_rules_retire_every_answer() -> None:
    """After a reload of the rules, no answer made under the old ones is given."""
    world = World()
    answers = world.table()
    answers.remember(b"GET /get/k", "127.0.0.1", b"NULL", Reuse("k", None))
    world.rules = object()
    assert answers.lookup(b"GET /get/k", "127.0.0.1") is None


def test_an_answer_that_shows_the_revision_is_retired_by_a_new_one() -> None:
    """The same value object under a new revision (a value set again) retires an answer
    made with the revision, not one made without it."""
    world = World()
    value = world.values["k"] = b"1"
    world.revs["k"] = 1
    answers = world.table()
    answers.remember(b"GET /keys/k", "h", b"ETAG 1", Reuse("k", value, 1))
    answers.remember(b"GET /get/k", "h", b"VALUE", Reuse("k", value))
    world.revs["k"] = 2
    assert answers.lookup(b"GET /keys/k", "h") is None
    assert answers.lookup(b"GET /get/k", "h") == b"VALUE"


def test_another_local_address_gets_no_kept_answer() -> None:
    """The origin checks depend on the address a request came to: it is part of the match."""
    world = World()
    answers = world.table()
    answers.remember(b"GET /get/k", "127.0.0.1", b"NULL", Reuse("k", None))
    assert answers.lookup(b"GET /get/k", "192.168.1.9") is None


def test_the_table_keeps_at_most_its_bound_and_drops_the_oldest() -> None:
    """One answer past the bound pushes out the oldest; the newest are kept."""
    answers = World().table()
    for n in range(MAX_ENTRIES + 1):
        answers.remember(b"GET /get/k%d" % n, "h", b"A%d" % n, Reuse(f"k{n}", None))
    assert len(answers) == MAX_ENTRIES
    assert answers.lookup(b"GET /get/k0", "h") is None
    assert answers.lookup(b"GET /get/k1", "h") == b"A1"
    assert answers.lookup(b"GET /get/k%d" % MAX_ENTRIES, "h") == b"A%d" % MAX_ENTRIES


def test_long_requests_and_long_answers_are_not_kept() -> None:
    """Past their bounds, requests and answers are answered every time, never kept."""
    answers = World().table()
    long_request = b"GET /get/k" + b"x" * MAX_REQUEST
    answers.remember(long_request, "h", b"A", Reuse("k", None))
    answers.remember(b"GET /get/k", "h", b"A" * (MAX_ANSWER + 1), Reuse("k", None))
    assert len(answers) == 0


# -- the server -----------------------------------------------------------------------------


async def test_a_repeated_get_follows_every_change(server: ObjstoreServer) -> None:
    """Byte-identical requests on one connection see each set from a WebSocket client."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        for n in range(5):
            await ws.send(json.dumps({"action": "set", "key": "k", "value": n, "id": n}))
            await ws.recv()  # the acknowledgement: the value is stored
            for _ in range(3):
                writer.write(get("/get/k"))
                status, _, body = await read_response(reader)
                assert (status, json.loads(body)) == (200, {"key": "k", "value": n})
    assert len(server.repeat_answers) == 1
    writer.close()


async def test_a_repeated_get_sees_an_expiry(server: ObjstoreServer) -> None:
    """A kept answer is not given once its key has expired."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(json.dumps({"action": "set", "key": "t", "value": 1, "ttl": 0.2, "id": 1}))
        await ws.recv()
    writer.write(get("/get/t"))
    assert json.loads((await read_response(reader))[2]) == {"key": "t", "value": 1}
    await asyncio.sleep(0.5)
    writer.write(get("/get/t"))
    assert json.loads((await read_response(reader))[2]) == {"key": "t", "value": None}
    writer.close()


async def test_a_request_in_pieces_and_pipelined_requests_are_answered_as_before(
    server: ObjstoreServer,
) -> None:
    """Bytes that are not one whole request take the usual way, and get the same answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    request = get("/get/p")
    for _ in range(2):  # the second time, the answer is kept
        writer.write(request)
        assert json.loads((await read_response(reader))[2]) == {"key": "p", "value": None}
    writer.write(request[:7])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(request[7:] + request + request)
    answers = [json.loads((await read_response(reader))[2]) for _ in range(3)]
    assert answers == [{"key": "p", "value": None}] * 3
    writer.close()


async def test_a_head_request_is_never_answered_with_a_kept_body(server: ObjstoreServer) -> None:
    """A HEAD that looks like a kept GET is a different request: it gets no body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/get/p"))
    await read_response(reader)
    writer.write(b"HEAD /get/p HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 405")
    writer.write(get("/get/p"))
    assert json.loads((await read_response(reader))[2]) == {"key": "p", "value": None}
    writer.close()


async def test_a_reload_that_takes_a_right_away_refuses_the_same_request(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Anonymous reads of public/ allowed, kept, then withdrawn: the same bytes get 401."""
    rules = tmp_path / "permissions.toml"
    admin = "admin-token-0123456789ab"
    rules.write_text(
        f'[anonymous]\nread = ["public/"]\n[tokens.admin]\ntoken = "{admin}"\nread = [""]\n'
        'write = [""]\n'
    )
    server = await start_server(auth_file=rules)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(2):
        writer.write(get("/get/public/x"))
        assert (await read_response(reader))[0] == 200
    rules.write_text(rules.read_text().replace('read = ["public/"]', 'read = ["other/"]'))
    assert server.access.reload()
    writer.write(get("/get/public/x"))
    assert (await read_response(reader))[0] == 401
    writer.close()


async def test_a_repeated_rest_get_shows_each_new_revision(server: ObjstoreServer) -> None:
    """GET /keys/k again after a PUT of the same value: the new ETag, never the kept one."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    tags = []
    for _ in range(3):
        body = b"1"
        writer.write(
            b"PUT /keys/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\n" + body
        )
        assert (await read_response(reader))[0] == 200
        for _ in range(2):
            writer.write(get("/keys/k"))
            status, headers, answer = await read_response(reader)
            assert (status, answer) == (200, b"1")
            tags.append(headers["etag"])
    assert tags[0] == tags[1] != tags[2] == tags[3] != tags[4] == tags[5]
    writer.close()


async def test_a_repeated_rest_get_of_a_missing_key_sees_it_set(server: ObjstoreServer) -> None:
    """A kept 404 is not given once the key has a value."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    for _ in range(2):
        writer.write(get("/keys/m"))
        assert (await read_response(reader))[0] == 404
    writer.write(b"PUT /keys/m HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\n2")
    assert (await read_response(reader))[0] == 200
    writer.write(get("/keys/m"))
    assert (await read_response(reader))[:3:2] == (200, b"2")
    assert len(server.repeat_answers) == 1
    writer.close()
