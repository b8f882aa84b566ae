"""Protocol 2 over WebSocket against a real server: every operation, reply shape and error code."""

from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.foldernames import JOURNAL_NAME
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import assert_silent, http_request, recv_json


async def ask(ws: ClientConnection, message: dict[str, Any]) -> Any:
    """Send *message* and return the next message received."""
    await ws.send(json.dumps(message))
    return await recv_json(ws)


async def test_set_with_an_id_is_acknowledged_with_its_revision_once_on_disk(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """The acknowledgement comes after the journal holds the value; its file follows."""
    async with client() as ws:
        reply = await ask(ws, {"action": "set", "key": "score", "value": 1, "id": 1})
        assert reply == {"id": 1, "ok": True, "rev": 1}
        assert b'{"k":"score","v":1}\n' in (cache_dir / JOURNAL_NAME).read_bytes()
        await server.store.flush()
        assert (cache_dir / "score.json").read_text() == "1\n"
        reply = await ask(ws, {"action": "set", "key": "score", "value": 2, "id": "two"})
        assert reply == {"id": "two", "ok": True, "rev": 2}


async def test_get_with_an_id_has_value_and_revision(
    server: ObjstoreServer, client: Connect
) -> None:
    """A get with an id tells the revision; a missing key is null at revision 0."""
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "a", "value": {"x": 1}, "id": 1})
        assert await ask(ws, {"action": "get", "key": "a", "id": 2}) == {
            "id": 2,
            "ok": True,
            "key": "a",
            "value": {"x": 1},
            "rev": 1,
        }
        assert await ask(ws, {"action": "get", "key": "none", "id": 3}) == {
            "id": 3,
            "ok": True,
            "key": "none",
            "value": None,
            "rev": 0,
        }


async def test_messages_without_an_id_behave_as_the_original(
    server: ObjstoreServer, client: Connect
) -> None:
    """No id: a set is silent, a get has the original shape, an error has no code."""
    async with client() as ws:
        await ws.send(json.dumps({"action": "set", "key": "a", "value": 1}))
        await ws.send(json.dumps({"action": "delete", "key": "a"}))
        await ws.send(json.dumps({"action": "patch", "key": "b", "value": {"x": 1}}))
        await ws.send(json.dumps({"action": "incr", "key": "c"}))
        assert await ask(ws, {"action": "get", "key": "a"}) == {"key": "a", "value": None}
        assert await ask(ws, {"action": "incr", "key": "b"}) == {
            "error": 'invalid value: key "b" holds {"x": 1}, not a number; use set to replace it'
        }


async def test_errors_with_an_id_carry_it_and_a_code(
    server: ObjstoreServer, client: Connect
) -> None:
    """Every refused message with an id gets its id back with a stable code."""
    async with client() as ws:
        assert await ask(ws, {"action": "get", "key": "", "id": 1}) == {
            "id": 1,
            "error": 'invalid key: expected a non-empty string, got ""',
            "code": "invalid_key",
        }
        reply = await ask(ws, {"action": "nope", "id": 2})
        assert (reply["id"], reply["code"]) == (2, "invalid_message")
        reply = await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1.5})
        assert reply["code"] == "invalid_message"
        assert "id" not in reply
        await ws.send("{not json")
        assert await recv_json(ws) == {
            "error": "invalid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)"
        }
        reply = await ask(ws, {"action": "keys", "limit": 5000, "id": "L"})
        assert (reply["id"], reply["code"]) == ("L", "too_large")


async def test_compare_and_set_applies_only_at_the_expected_revision(
    server: ObjstoreServer, client: Connect
) -> None:
    """ifRev 0 creates only; a stale ifRev is a conflict with the current state."""
    async with client() as ws:
        assert await ask(ws, {"action": "set", "key": "k", "value": 1, "ifRev": 0, "id": 1}) == {
            "id": 1,
            "ok": True,
            "rev": 1,
        }
        assert await ask(ws, {"action": "set", "key": "k", "value": 2, "ifRev": 0, "id": 2}) == {
            "id": 2,
            "error": 'conflict: key "k" is at revision 1, not 0',
            "code": "conflict",
            "rev": 1,
            "value": 1,
        }
        assert (await ask(ws, {"action": "set", "key": "k", "value": 3, "ifRev": 1, "id": 3}))[
            "rev"
        ] == 2
        for action in ({"action": "patch", "value": {}}, {"action": "incr"}, {"action": "delete"}):
            reply = await ask(ws, {**action, "key": "k", "ifRev": 1, "id": 4})
            assert (reply["code"], reply["rev"], reply["value"]) == ("conflict", 2, 3)
        assert await ask(ws, {"action": "get", "key": "k", "id": 5}) == {
            "id": 5,
            "ok": True,
            "key": "k",
            "value": 3,
            "rev": 2,
        }


async def test_delete_removes_the_key_and_its_file(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """A delete is acknowledged once the file is gone; a second one deletes nothing."""
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1})
        assert await ask(ws, {"action": "delete", "key": "k", "id": 2}) == {
            "id": 2,
            "ok": True,
            "rev": 2,
            "deleted": True,
        }
        assert not (cache_dir / "k.json").exists()
        assert await ask(ws, {"action": "delete", "key": "k", "id": 3}) == {
            "id": 3,
            "ok": True,
            "rev": 2,
            "deleted": False,
        }


async def test_patch_merges_and_replies_with_the_whole_value(
    server: ObjstoreServer, client: Connect
) -> None:
    """A merge patch removes nulls, merges objects and starts a missing key from {}."""
    async with client() as ws:
        assert await ask(
            ws, {"action": "patch", "key": "p", "value": {"a": 1, "b": {"c": 2}}, "id": 1}
        ) == {"id": 1, "ok": True, "rev": 1, "value": {"a": 1, "b": {"c": 2}}}
        reply = await ask(
            ws, {"action": "patch", "key": "p", "value": {"a": None, "b": {"d": 3}}, "id": 2}
        )
        assert reply == {"id": 2, "ok": True, "rev": 2, "value": {"b": {"c": 2, "d": 3}}}


async def test_incr_adds_and_refuses_non_numbers(server: ObjstoreServer, client: Connect) -> None:
    """incr starts from 0, keeps integers exact and refuses a key holding text."""
    async with client() as ws:
        assert (await ask(ws, {"action": "incr", "key": "n", "id": 1}))["value"] == 1
        assert (await ask(ws, {"action": "incr", "key": "n", "by": 2**60, "id": 2}))[
            "value"
        ] == 2**60 + 1
        assert (await ask(ws, {"action": "incr", "key": "n", "by": -0.5, "id": 3}))[
            "value"
        ] == 2**60 + 0.5
        await ask(ws, {"action": "set", "key": "t", "value": "x", "id": 4})
        reply = await ask(ws, {"action": "incr", "key": "t", "id": 5})
        assert reply["code"] == "invalid_value"


async def test_a_patch_over_the_size_limit_is_refused(start_server: StartServer) -> None:
    """A patch whose result would pass --max-size is too_large, and nothing changes."""
    server = await start_server(max_size=200)
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ask(ws, {"action": "set", "key": "p", "value": {"a": "x" * 100}, "id": 1})
        reply = await ask(ws, {"action": "patch", "key": "p", "value": {"b": "y" * 100}, "id": 2})
        assert reply["code"] == "too_large"
        assert (await ask(ws, {"action": "get", "key": "p", "id": 3}))["rev"] == 1


async def test_keys_lists_in_pages(server: ObjstoreServer, client: Connect) -> None:
    """Listing pages with limit and next, filtered by prefix, in UTF-8 byte order."""
    async with client() as ws:
        for key in ["b/1", "a/2", "a/1", "a/3", "c"]:
            await ws.send(json.dumps({"action": "set", "key": key, "value": 0}))
        assert await ask(ws, {"action": "keys", "prefix": "a/", "limit": 2, "id": 1}) == {
            "id": 1,
            "ok": True,
            "keys": ["a/1", "a/2"],
            "next": "a/2",
        }
        assert await ask(
            ws, {"action": "keys", "prefix": "a/", "limit": 2, "after": "a/2", "id": 2}
        ) == {"id": 2, "ok": True, "keys": ["a/3"], "next": None}
        assert await ask(ws, {"action": "keys"}) == {
            "keys": ["a/1", "a/2", "a/3", "b/1", "c"],
            "next": None,
        }


async def test_subscriptions_with_an_id_get_revisions_and_deletions(
    server: ObjstoreServer, client: Connect
) -> None:
    """The id form of updates carries rev, and deleted for a deletion; the plain form does not."""
    async with client() as watcher, client() as plain, client() as writer:
        await ask(writer, {"action": "set", "key": "k", "value": 1, "id": 0})
        assert await ask(watcher, {"action": "subscribe", "key": "k", "id": 1}) == {
            "key": "k",
            "value": 1,
            "rev": 1,
        }
        assert await recv_json(watcher) == {"id": 1, "ok": True, "rev": 1}
        assert await ask(plain, {"action": "subscribe", "key": "k"}) == {"key": "k", "value": 1}
        await writer.send(json.dumps({"action": "delete", "key": "k"}))
        assert await recv_json(watcher) == {"key": "k", "value": None, "rev": 2, "deleted": True}
        assert await recv_json(plain) == {"key": "k", "value": None}


async def test_prefix_subscription_sends_snapshot_then_reply_then_changes(
    server: ObjstoreServer, client: Connect
) -> None:
    """Current values in revision order, the reply with the store's revision, then new keys too."""
    async with client() as ws, client() as writer:
        for key in ["player/bob", "player/ann", "other"]:
            await ask(writer, {"action": "set", "key": key, "value": key, "id": 1})
        await ws.send(json.dumps({"action": "subscribe", "prefix": "player/", "id": 5}))
        assert [await recv_json(ws) for _ in range(3)] == [
            {"key": "player/bob", "value": "player/bob", "rev": 1},
            {"key": "player/ann", "value": "player/ann", "rev": 2},
            {"id": 5, "ok": True, "rev": 3},
        ]
        await writer.send(json.dumps({"action": "set", "key": "player/cy", "value": 1}))
        await writer.send(json.dumps({"action": "set", "key": "other", "value": 2}))
        assert await recv_json(ws) == {"key": "player/cy", "value": 1, "rev": 4}
        await assert_silent(ws)
        assert await ask(ws, {"action": "unsubscribe", "prefix": "player/", "id": 6}) == {
            "id": 6,
            "ok": True,
        }
        await writer.send(json.dumps({"action": "set", "key": "player/cy", "value": 2}))
        await assert_silent(ws)


async def test_a_key_under_several_subscriptions_arrives_once(
    server: ObjstoreServer, client: Connect
) -> None:
    """Key, prefix and empty-prefix subscriptions of one connection give one update per change."""
    async with client() as ws, client() as writer:
        await ws.send(json.dumps({"action": "subscribe", "key": "a/b"}))
        await ask(ws, {"action": "subscribe", "prefix": "a/", "id": 1})
        await ask(ws, {"action": "subscribe", "prefix": "", "id": 2})
        await writer.send(json.dumps({"action": "set", "key": "a/b", "value": 1}))
        assert await recv_json(ws) == {"key": "a/b", "value": 1, "rev": 1}
        await assert_silent(ws)


async def test_resume_sends_only_what_changed(server: ObjstoreServer, client: Connect) -> None:
    """since R sends each key changed after R once, deletions included, and reset false."""
    async with client() as ws, client() as writer:
        messages: list[dict[str, Any]] = [
            {"action": "set", "key": "p/a", "value": 1},
            {"action": "set", "key": "p/b", "value": 1},
            {"action": "set", "key": "p/a", "value": 2},
            {"action": "delete", "key": "p/b"},
            {"action": "set", "key": "q", "value": 1},
        ]
        for message in messages:
            await ask(writer, {**message, "id": 0})
        await ws.send(json.dumps({"action": "subscribe", "prefix": "p/", "since": 1, "id": 1}))
        assert [await recv_json(ws) for _ in range(3)] == [
            {"key": "p/a", "value": 2, "rev": 3},
            {"key": "p/b", "value": None, "rev": 4, "deleted": True},
            {"id": 1, "ok": True, "rev": 5, "reset": False},
        ]


async def test_resume_from_an_unknown_revision_resets(
    server: ObjstoreServer, client: Connect
) -> None:
    """A revision ahead of the store is a reset: the reset message comes first."""
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 0})
        await ws.send(json.dumps({"action": "subscribe", "key": "k", "since": 99, "id": 1}))
        assert [await recv_json(ws) for _ in range(3)] == [
            {"reset": True, "key": "k"},
            {"key": "k", "value": 1, "rev": 1},
            {"id": 1, "ok": True, "rev": 1, "reset": True},
        ]


async def test_batch_applies_all_or_nothing(server: ObjstoreServer, client: Connect) -> None:
    """A failing op leaves everything as it was; a good batch applies in order."""
    async with client() as ws, client() as watcher:
        await ask(watcher, {"action": "subscribe", "prefix": "", "id": 0})
        ops = [
            {"action": "set", "key": "a", "value": 1},
            {"action": "incr", "key": "a", "by": 2},
            {"action": "delete", "key": "b", "ifRev": 5},
        ]
        reply = await ask(ws, {"action": "batch", "ops": ops, "id": 1})
        assert (reply["code"], reply["op"], reply["rev"]) == ("conflict", 2, 0)
        assert await ask(ws, {"action": "get", "key": "a", "id": 2}) == {
            "id": 2,
            "ok": True,
            "key": "a",
            "value": None,
            "rev": 0,
        }
        ops[2] = {"action": "delete", "key": "b"}
        assert await ask(ws, {"action": "batch", "ops": ops, "id": 3}) == {
            "id": 3,
            "ok": True,
            "rev": 2,
            "results": [{"rev": 1}, {"rev": 2, "value": 3}, {"rev": 2, "deleted": False}],
        }
        assert [await recv_json(watcher) for _ in range(2)] == [
            {"key": "a", "value": 1, "rev": 1},
            {"key": "a", "value": 3, "rev": 2},
        ]


async def test_replies_keep_the_order_of_messages(server: ObjstoreServer, client: Connect) -> None:
    """A get after acknowledged sets is answered after their acknowledgements."""
    async with client() as ws:
        for number in range(20):
            await ws.send(
                json.dumps({"action": "set", "key": f"k{number}", "value": number, "id": number})
            )
        await ws.send(json.dumps({"action": "get", "key": "k0", "id": "last"}))
        ids = [(await recv_json(ws))["id"] for _ in range(21)]
        assert ids == [*range(20), "last"]


async def test_ephemeral_keys_go_with_their_connection(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """An ephemeral key has no file and is deleted, subscribers told, when its writer leaves."""
    async with client() as watcher:
        await ask(watcher, {"action": "subscribe", "prefix": "online/", "id": 0})
        async with client() as player:
            reply = await ask(
                player,
                {"action": "set", "key": "online/ann", "value": 1, "ephemeral": True, "id": 1},
            )
            assert reply == {"id": 1, "ok": True, "rev": 1}
            assert await recv_json(watcher) == {
                "key": "online/ann",
                "value": 1,
                "rev": 1,
                "ephemeral": True,
            }
            assert not (cache_dir / "online%2Fann.json").exists()
            assert not any(p.name.endswith(".json") for p in cache_dir.iterdir())
        assert await recv_json(watcher) == {
            "key": "online/ann",
            "value": None,
            "rev": 2,
            "deleted": True,
        }


async def test_keys_expire_and_subscribers_are_told(
    server: ObjstoreServer, client: Connect
) -> None:
    """A ttl deletes the key when it runs out; the update says expired."""
    async with client() as ws, client() as watcher:
        await ask(watcher, {"action": "subscribe", "key": "t", "id": 0})
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 0.2, "id": 1})
        update = await recv_json(watcher)
        assert (update["key"], update["value"], update["rev"]) == ("t", 1, 1)
        assert "expires" in update
        assert await recv_json(watcher) == {
            "key": "t",
            "value": None,
            "rev": 2,
            "deleted": True,
            "expired": True,
        }
        assert (await ask(ws, {"action": "get", "key": "t", "id": 2}))["value"] is None


async def test_a_write_without_ttl_makes_the_key_permanent(
    server: ObjstoreServer, client: Connect
) -> None:
    """A set without ttl after one with it takes the deadline away."""
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 0.2, "id": 1})
        await ask(ws, {"action": "set", "key": "t", "value": 2, "id": 2})
        await asyncio.sleep(0.4)
        assert (await ask(ws, {"action": "get", "key": "t", "id": 3}))["value"] == 2


async def test_replies_waiting_for_the_disk_are_bounded(
    server: ObjstoreServer, client: Connect
) -> None:
    """Behind an acknowledgement held up by a slow disk, a client is read no further than the
    bound, and every reply still comes, in order, once the disk catches up."""
    from objstore.session import MAX_WAITING_REPLIES

    disk = threading.Event()
    assert server.store.state is not None
    append = server.store.state.append

    def slow_append(records: Any, *, sync: bool = False) -> None:
        disk.wait(10)  # the disk is stuck until the test lets it go
        append(records, sync=sync)

    server.store.state.append = slow_append  # type: ignore[method-assign]
    count = 3 * MAX_WAITING_REPLIES
    async with client() as ws:
        await ws.send(json.dumps({"action": "set", "key": "k", "value": 1, "id": "set"}))
        for number in range(count):
            await ws.send(json.dumps({"action": "get", "key": "k", "id": number}))
        await asyncio.sleep(0.5)
        (connection,) = server._server.connections  # type: ignore[union-attr]
        session = connection.session  # type: ignore[union-attr]
        assert MAX_WAITING_REPLIES <= len(session._waiting) <= MAX_WAITING_REPLIES + 1
        disk.set()
        ids = [(await recv_json(ws))["id"] for _ in range(count + 1)]
        assert ids == ["set", *range(count)]


async def test_a_write_that_cannot_reach_disk_is_a_storage_error(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """An acknowledged write that cannot reach the journal gets code storage, never a silent
    ok; the change stands in memory and subscribers saw it."""
    assert server.store.state is not None

    def full(records: Any, *, sync: bool = False) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    server.store.state.append = full  # type: ignore[method-assign]
    async with client() as ws, client() as watcher:
        await ask(watcher, {"action": "subscribe", "key": "k", "id": 0})
        reply = await ask(ws, {"action": "set", "key": "k", "value": 1, "id": "w"})
        assert reply["id"] == "w"
        assert reply["code"] == "storage"
        assert reply["error"] == "could not write the journal: No space left on device"
        assert await recv_json(watcher) == {"key": "k", "value": 1, "rev": 1}
        batch = {"action": "batch", "ops": [{"action": "incr", "key": "k"}], "id": "b"}
        assert (await ask(ws, batch))["code"] == "storage"
        answer = await http_request(server.port, "PUT", "/keys/k", "5")
        assert answer.status == 500
        assert answer.json()["code"] == "storage"


async def test_an_acknowledged_write_whose_file_cannot_be_written_is_kept_in_the_journal(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """A value whose file cannot be written (a folder in its way) is acknowledged from the
    journal; /readyz says 503 while the file is retried, and POST /set, which waits for
    the file as the original's did, answers 500 with the storage error."""
    (cache_dir / "k.json").mkdir()  # a folder under the key's file name: no file replaces it
    async with client() as ws:
        assert await ask(ws, {"action": "set", "key": "k", "value": 1, "id": "w"}) == {
            "id": "w",
            "ok": True,
            "rev": 1,
        }
        await server.store.flush()
        assert (await http_request(server.port, "GET", "/readyz")).status == 503
        answer = await http_request(server.port, "POST", "/set", '{"key": "k", "value": 5}')
        assert answer.status == 500
        assert answer.json()["error"].startswith('could not save key "k" to ')


async def test_an_internal_error_with_an_id_has_the_internal_code(
    server: ObjstoreServer, client: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug while handling a message with an id answers that id with code internal."""

    def fail(*args: object) -> None:
        raise RuntimeError("secret")

    monkeypatch.setattr(server.service, "_keys", fail)
    async with client() as ws:
        assert await ask(ws, {"action": "keys", "id": 9}) == {
            "id": 9,
            "error": 'internal error: could not handle this "keys" message; see the server log',
            "code": "internal",
        }


async def test_an_ephemeral_set_over_a_saved_key_is_acknowledged_once_its_removal_is_on_disk(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """Making a saved key ephemeral journals the removal of its file before the
    acknowledgement, so that a crash after it cannot bring the old value back; the file
    goes after."""
    disk = threading.Event()
    assert server.store.folder is not None
    remove = server.store.folder.remove

    def slow_remove(key: str) -> None:
        disk.wait(10)  # the disk is slow to remove the file
        remove(key)

    server.store.folder.remove = slow_remove  # type: ignore[method-assign]
    async with client() as ws:
        await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1})
        await server.store.flush()
        assert (cache_dir / "k.json").exists()
        reply = await ask(
            ws, {"action": "set", "key": "k", "value": 2, "ephemeral": True, "id": 2}
        )
        assert reply == {"id": 2, "ok": True, "rev": 2}
        assert (cache_dir / JOURNAL_NAME).read_bytes().endswith(b'{"k":"k","rm":true}\n')
        disk.set()
        await server.store.flush()
        assert not (cache_dir / "k.json").exists()


async def test_deadlines_and_ephemeral_keys_are_told_with_their_values(
    server: ObjstoreServer, client: Connect
) -> None:
    """A get with an id, an id-form update and a snapshot say a key's deadline (ms since the
    epoch) and whether it is ephemeral; a later plain set takes both away."""
    async with client() as ws, client() as watcher:
        await ask(watcher, {"action": "subscribe", "prefix": "", "id": 0})
        before = int(time.time() * 1000)
        await ask(ws, {"action": "set", "key": "t", "value": 1, "ttl": 60, "id": 1})
        update = await recv_json(watcher)
        assert before + 60_000 <= update["expires"] <= int(time.time() * 1000) + 60_000
        await ask(ws, {"action": "set", "key": "e", "value": 2, "ephemeral": True, "id": 2})
        assert await recv_json(watcher) == {"key": "e", "value": 2, "rev": 2, "ephemeral": True}
        got = await ask(ws, {"action": "get", "key": "t", "id": 3})
        assert got["expires"] == update["expires"]
        await ws.send(json.dumps({"action": "subscribe", "prefix": "", "id": 4}))
        snapshot = [await recv_json(ws) for _ in range(3)]
        assert snapshot[0]["expires"] == update["expires"]
        assert snapshot[1]["ephemeral"] is True
        await ws.send(json.dumps({"action": "set", "key": "t", "value": 5, "id": 5}))
        assert await recv_json(watcher) == {"key": "t", "value": 5, "rev": 3}
        assert [await recv_json(ws) for _ in range(2)] == [
            {"key": "t", "value": 5, "rev": 3},
            {"id": 5, "ok": True, "rev": 3},
        ]
        assert await ask(ws, {"action": "get", "key": "e"}) == {"key": "e", "value": 2}
