"""Several instances, one store: servers on one real Redis, each with its own clients.

Every server here runs in this process on a free port with ``--redis`` pointed
at a real ``redis-server`` (Debian's, on a free loopback port); the clients are
real WebSocket and HTTP clients. Tests that need a process to die start the
program as a subprocess (tests/test_redis_program.py).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.config import Config
from objstore.redisstore import RedisStore
from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import assert_silent, http_request, recv_json
from .realredis import RedisProcess

StartShared = Callable[..., Awaitable[ObjstoreServer]]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis").start()
    yield process
    process.stop()


@pytest.fixture
def start_shared(redis: RedisProcess, start_server: StartServer) -> StartShared:
    """Start servers on the test's Redis (stopped at the end, as start_server's are)."""

    async def start(**overrides: Any) -> ObjstoreServer:
        return await start_server(**{"redis_url": redis.url, **overrides})

    return start


def ws(server: ObjstoreServer) -> Any:
    return connect(f"ws://127.0.0.1:{server.port}/ws")


async def request(client: ClientConnection, **message: Any) -> Any:
    """Send *message* with an id and return the reply to it (skipping updates)."""
    await client.send(json.dumps(message))
    while True:
        reply = await recv_json(client)
        if reply.get("id") == message["id"]:
            return reply


async def test_a_set_on_one_instance_reaches_subscribers_of_another_with_its_revision(
    start_shared: StartShared,
) -> None:
    """A client on B sees a set made on A, with the revision A acknowledged; B reads it."""
    a, b = await start_shared(), await start_shared()
    async with ws(a) as on_a, ws(b) as on_b:
        assert (await request(on_b, action="subscribe", key="score", id=1))["ok"] is True
        ack = await request(on_a, action="set", key="score", value={"n": 1}, id=2)
        assert ack == {"id": 2, "ok": True, "rev": ack["rev"]}
        assert await recv_json(on_b) == {"key": "score", "value": {"n": 1}, "rev": ack["rev"]}
        read = await request(on_b, action="get", key="score", id=3)
        assert (read["value"], read["rev"]) == ({"n": 1}, ack["rev"])


async def test_a_read_after_a_plain_set_sees_it(start_shared: StartShared) -> None:
    """The original protocol's set-then-get on one connection reads the new value, as
    with the file store, though the set went to Redis and back."""
    a = await start_shared()
    async with ws(a) as client:
        for n in range(200):
            await client.send(json.dumps({"action": "set", "key": "k", "value": n}))
        await client.send(json.dumps({"action": "get", "key": "k"}))
        assert await recv_json(client) == {"key": "k", "value": 199}
    answer = await http_request(a.port, "POST", "/set", '{"key": "h", "value": 1}')
    assert answer.status == 200
    assert (await http_request(a.port, "GET", "/get/h")).json() == {"key": "h", "value": 1}


async def test_three_instances_publish_the_same_changes_in_the_same_order(
    start_shared: StartShared,
) -> None:
    """Sets made at once from clients of three instances reach subscribers of each
    instance as the same sequence of (revision, value), revisions rising."""
    servers = [await start_shared() for _ in range(3)]
    async with ws(servers[0]) as w0, ws(servers[1]) as w1, ws(servers[2]) as w2:
        watchers = [w0, w1, w2]
        for number, watcher in enumerate(watchers):
            await request(watcher, action="subscribe", prefix="race/", id=number)
        async with ws(servers[0]) as s0, ws(servers[1]) as s1, ws(servers[2]) as s2:

            async def burst(client: ClientConnection, name: str) -> None:
                for n in range(100):
                    message = {"action": "set", "key": f"race/{n % 5}", "value": f"{name}{n}"}
                    await client.send(json.dumps(message))

            await asyncio.gather(burst(s0, "a"), burst(s1, "b"), burst(s2, "c"))
            seen: list[list[tuple[int, str, Any]]] = []
            for watcher in watchers:
                updates = [await recv_json(watcher) for _ in range(300)]
                seen.append([(u["rev"], u["key"], u["value"]) for u in updates])
    assert seen[0] == seen[1] == seen[2]
    revs = [rev for rev, _, _ in seen[0]]
    assert revs == sorted(revs)
    assert len(set(revs)) == 300


async def test_compare_and_set_races_have_exactly_one_winner_across_instances(
    start_shared: StartShared,
) -> None:
    """Over 2,000 rounds, three clients on three instances set the same key with the same
    ifRev at once: exactly one succeeds each round, the others get conflicts naming the
    winner's revision."""
    servers = [await start_shared() for _ in range(3)]
    async with ws(servers[0]) as c0, ws(servers[1]) as c1, ws(servers[2]) as c2:
        clients = [c0, c1, c2]
        rev = (await request(c0, action="set", key="lock", value=None, id=0))["rev"]
        ids = iter(range(1, 100_000))
        for round_ in range(2000):
            replies = await asyncio.gather(
                *(
                    request(
                        client,
                        action="set",
                        key="lock",
                        value=[round_, n],
                        ifRev=rev,
                        id=next(ids),
                    )
                    for n, client in enumerate(clients)
                )
            )
            winners = [reply for reply in replies if reply.get("ok")]
            assert len(winners) == 1, replies
            rev = winners[0]["rev"]
            for reply in replies:
                if not reply.get("ok"):
                    assert (reply["code"], reply["rev"]) == ("conflict", rev)


async def test_increments_and_patches_from_every_instance_are_all_counted(
    start_shared: StartShared,
) -> None:
    """Three clients on three instances increment one counter 200 times each, and patch
    their own field of one object 100 times each: nothing is lost."""
    servers = [await start_shared() for _ in range(3)]
    async with ws(servers[0]) as c0, ws(servers[1]) as c1, ws(servers[2]) as c2:
        clients = [c0, c1, c2]

        async def work(client: ClientConnection, name: str) -> None:
            for _ in range(200):
                await client.send(json.dumps({"action": "incr", "key": "count"}))
            for n in range(100):
                await request(client, action="patch", key="doc", value={name: n}, id=n)

        await asyncio.gather(*(work(client, f"f{n}") for n, client in enumerate(clients)))
        count = await request(c0, action="get", key="count", id="c")
        doc = await request(c0, action="get", key="doc", id="d")
    assert count["value"] == 600
    assert doc["value"] == {"f0": 99, "f1": 99, "f2": 99}


async def test_float_increments_are_exact_across_instances(start_shared: StartShared) -> None:
    """Increments Redis cannot add exactly (a float) are computed by the instance and still
    counted once each when two instances race."""
    a, b = await start_shared(), await start_shared()
    async with ws(a) as on_a, ws(b) as on_b:

        async def add(client: ClientConnection) -> None:
            for n in range(50):
                await request(client, action="incr", key="f", by=0.5, id=n)

        await asyncio.gather(add(on_a), add(on_b))
        assert (await request(on_a, action="get", key="f", id="g"))["value"] == 50.0


async def test_a_batch_is_all_or_none_across_instances(start_shared: StartShared) -> None:
    """A batch whose last op's ifRev fails (the key was changed on another instance)
    changes nothing; with the right revision every op applies, in order."""
    a, b = await start_shared(), await start_shared()
    async with ws(a) as on_a, ws(b) as on_b:
        first = await request(on_a, action="set", key="x", value=1, id=1)
        await request(on_b, action="set", key="x", value=2, id=2)
        batch = [
            {"action": "set", "key": "y", "value": "new"},
            {"action": "incr", "key": "n"},
            {"action": "set", "key": "x", "value": 3, "ifRev": first["rev"]},
        ]
        refused = await request(on_a, action="batch", ops=batch, id=3)
        assert (refused["code"], refused["op"], refused["value"]) == ("conflict", 2, 2)
        assert (await request(on_b, action="get", key="y", id=4))["value"] is None
        batch[2]["ifRev"] = refused["rev"]
        done = await request(on_a, action="batch", ops=batch, id=5)
        assert [r["rev"] for r in done["results"]] == [
            done["rev"] - 2,
            done["rev"] - 1,
            done["rev"],
        ]
        assert (await request(on_b, action="get", key="n", id=6))["value"] == 1


async def test_a_key_expires_once_for_every_instance_within_a_second(
    start_shared: StartShared, redis: RedisProcess
) -> None:
    """100 keys with a ttl of a second, three instances: each subscriber (one per instance)
    is told of each expiry once, not before its deadline, and within a second of it."""
    servers = [await start_shared() for _ in range(3)]
    async with ws(servers[0]) as w0, ws(servers[1]) as w1, ws(servers[2]) as w2:
        watchers = [w0, w1, w2]
        for number, watcher in enumerate(watchers):
            await request(watcher, action="subscribe", prefix="tmp/", id=number)

        async def collect(watcher: ClientConnection) -> dict[str, float]:
            expired: dict[str, float] = {}
            while len(expired) < 100:
                update = await recv_json(watcher, timeout=5)
                if update.get("expired"):
                    assert update["key"] not in expired
                    expired[update["key"]] = time.time()
            return expired

        collectors = [asyncio.create_task(collect(watcher)) for watcher in watchers]
        deadlines = {}
        async with ws(servers[1]) as setter:
            for n in range(100):
                await request(setter, action="set", key=f"tmp/{n}", value=n, ttl=1, id=n)
                deadlines[f"tmp/{n}"] = time.time() + 1
        for expired in await asyncio.gather(*collectors):
            for key, at in expired.items():
                late = at - deadlines[key]
                assert -0.1 <= late <= 1.0, (key, late)
        for watcher in watchers:
            await assert_silent(watcher, 0.5)
    log: Any = await asyncio.to_thread(_expiry_entries, redis)
    assert log == 100


def _expiry_entries(redis: RedisProcess) -> int:
    import redis as redis_library

    client = redis_library.Redis(port=redis.port)
    try:
        entries: Any = client.xrange("{objstore}:log")
        return len([entry for entry in entries if b"x" in entry[1]])
    finally:
        client.close()


async def test_ephemeral_keys_go_with_their_connection_for_every_instance(
    start_shared: StartShared,
) -> None:
    """A presence key set on A is seen on B, marked ephemeral, and deleted for B's
    subscribers when its connection to A closes."""
    a, b = await start_shared(), await start_shared()
    async with ws(b) as on_b:
        await request(on_b, action="subscribe", prefix="here/", id=1)
        async with ws(a) as on_a:
            await request(on_a, action="set", key="here/ann", value=True, ephemeral=True, id=2)
            update = await recv_json(on_b)
            assert (update["key"], update.get("ephemeral")) == ("here/ann", True)
        gone = await recv_json(on_b)
        assert (gone["key"], gone["deleted"]) == ("here/ann", True)


async def test_a_client_resumes_on_another_instance_without_gaps(
    start_shared: StartShared,
) -> None:
    """A client that leaves A at revision R and subscribes on B with since=R gets exactly
    the changes after R."""
    a, b = await start_shared(), await start_shared()
    async with ws(a) as on_a:
        await request(on_a, action="subscribe", prefix="p/", id=1)
        last = (await request(on_a, action="set", key="p/1", value=1, id=2))["rev"]
    async with ws(a) as writer:
        await request(writer, action="set", key="p/2", value=2, id=3)
        await request(writer, action="set", key="p/1", value=11, id=4)
        await request(writer, action="delete", key="p/2", id=5)
    async with ws(b) as on_b:
        message = {"action": "subscribe", "prefix": "p/", "since": last, "id": 6}
        await on_b.send(json.dumps(message))
        first, second, third = [await recv_json(on_b) for _ in range(3)]
    assert (first["key"], first["value"]) == ("p/1", 11)
    assert (second["key"], second["deleted"]) == ("p/2", True)
    assert third == {"id": 6, "ok": True, "rev": third["rev"], "reset": False}


async def test_the_feed_catches_up_after_its_connection_is_killed(
    start_shared: StartShared, redis: RedisProcess
) -> None:
    """While one client writes 2,000 distinct keys through A, Redis drops every client
    connection twice (CLIENT KILL): B's subscriber still gets every revision once, in
    order, and every acknowledged write is in the store."""
    import redis as redis_library

    a, b = await start_shared(), await start_shared()
    admin = redis_library.Redis(port=redis.port)
    acknowledged: dict[str, int] = {}
    try:
        async with ws(b) as on_b, ws(a) as on_a:
            start = (await request(on_b, action="subscribe", prefix="f/", id="s"))["rev"]

            async def write() -> None:
                for n in range(2000):
                    reply = await request(on_a, action="set", key=f"f/{n}", value=n, id=n)
                    if reply.get("ok"):
                        acknowledged[f"f/{n}"] = reply["rev"]
                    else:
                        assert reply["code"] == "storage", reply

            async def kill() -> None:
                for _ in range(2):
                    await asyncio.sleep(0.3)
                    await asyncio.to_thread(admin.client_kill_filter, _type="normal", skipme=True)

            await asyncio.gather(write(), kill())
            received: list[int] = []
            # A write refused with "storage" may still have been made (its reply was what
            # the killed connection lost): B gets it too. So wait for the acknowledged
            # ones, not for as many updates as there were acknowledgements.
            wanted = set(acknowledged.values())
            while not wanted <= set(received):
                update = await recv_json(on_b, timeout=10)
                received.append(update["rev"])
                assert update["value"] == int(update["key"][2:])
    finally:
        admin.close()
    assert received == sorted(received)
    assert len(set(received)) == len(received)
    assert set(acknowledged.values()) <= set(received)
    assert received[0] > start
    assert len(acknowledged) > 1500


async def test_while_redis_is_down_writes_fail_reads_serve_and_it_recovers(
    start_shared: StartShared, redis: RedisProcess
) -> None:
    """Redis stopped: a write fails with code storage (and is not applied), a read answers
    what the instance knew, /readyz says not ready; Redis back (same data, AOF): writes
    work again by themselves and clients of both instances see them."""
    a, b = await start_shared(), await start_shared()
    async with ws(a) as on_a, ws(b) as on_b:
        await request(on_a, action="set", key="kept", value="before", id=1)
        await request(on_b, action="subscribe", key="kept", id=2)
        await asyncio.to_thread(redis.stop)
        failed = await request(on_a, action="set", key="kept", value="during", id=3)
        assert failed["code"] == "storage"
        assert "Redis store cannot be reached" in failed["error"]
        read = await request(on_a, action="get", key="kept", id=4)
        assert read["value"] == "before"
        await asyncio.sleep(1)
        ready = await http_request(a.port, "GET", "/readyz")
        assert ready.status == 503
        assert ready.json()["reason"] == "the Redis store cannot be reached; retrying"
        await asyncio.to_thread(redis.start)
        deadline = time.monotonic() + 10
        while True:
            reply = await request(on_a, action="set", key="kept", value="after", id=5)
            if reply.get("ok"):
                break
            assert time.monotonic() < deadline, reply
            await asyncio.sleep(0.2)
        update = await recv_json(on_b, timeout=5)
        assert (update["value"], update["rev"]) == ("after", reply["rev"])
        deadline = time.monotonic() + 5
        while (await http_request(a.port, "GET", "/readyz")).status != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_a_flushed_store_closes_connections_so_clients_start_afresh(
    start_shared: StartShared, redis: RedisProcess
) -> None:
    """FLUSHALL (or a failover that lost the store) replaces the store under the
    instances: their WebSocket clients are closed with 1012 to reconnect and resubscribe,
    and the instances serve the new store."""
    import redis as redis_library

    a = await start_shared()
    async with ws(a) as client:
        await request(client, action="set", key="old", value=1, id=1)
        admin = redis_library.Redis(port=redis.port)
        try:
            await asyncio.to_thread(admin.flushall)
            await asyncio.to_thread(
                admin.execute_command, "HSET", "{objstore}:meta", "rev", 1, "epoch", "new"
            )
        finally:
            admin.close()
        await asyncio.wait_for(client.wait_closed(), 10)
        assert client.close_code == 1012
    async with ws(a) as client:
        assert (await request(client, action="get", key="old", id=2))["value"] is None


async def test_it_stops_at_once_even_right_after_starting(
    redis: RedisProcess, tmp_path: Path
) -> None:
    """Stopped just after it started (a restart by a service manager), it does not wait for
    its blocked read of the store's log: it stops within a second, ten times in a row."""
    for _ in range(10):
        server = ObjstoreServer(Config(port=0, cache_dir=tmp_path / "unused", redis_url=redis.url))
        await server.start()
        started = time.monotonic()
        await server.stop()
        assert time.monotonic() - started < 1.0


async def test_rest_if_match_conflicts_are_412_with_the_current_etag(
    start_shared: StartShared,
) -> None:
    """PUT with a stale If-Match, decided by Redis, answers as on the file store: 412 and
    the ETag of the revision the key is at."""
    a, b = await start_shared(), await start_shared()
    first = await http_request(a.port, "PUT", "/keys/k", "1")
    second = await http_request(b.port, "PUT", "/keys/k", "2")
    stale = await http_request(
        a.port, "PUT", "/keys/k", "3", headers={"If-Match": first.headers["etag"]}
    )
    assert stale.status == 412
    assert stale.headers["etag"] == second.headers["etag"]
    assert stale.json()["value"] == 2


async def test_a_conflict_hides_the_value_from_a_token_that_may_not_read_it(
    start_shared: StartShared, tmp_path: Path
) -> None:
    """A token that may write sensors/ but not read it gets a conflict decided by Redis
    without the key's value, as on the file store."""
    rules = tmp_path / "perms.toml"
    rules.write_text(
        '[tokens.sensor]\ntoken = "sensor-token-0123456789"\nwrite = ["sensors/"]\n'
        '[tokens.admin]\ntoken = "admin-token-0123456789ab"\nread = [""]\nwrite = [""]\n'
    )
    a = await start_shared(auth_file=rules)
    admin = {"Authorization": "Bearer admin-token-0123456789ab"}
    sensor = {"Authorization": "Bearer sensor-token-0123456789"}
    async with connect(f"ws://127.0.0.1:{a.port}/ws", additional_headers=admin) as owner:
        await request(owner, action="set", key="sensors/t", value="secret", id=1)
    async with connect(f"ws://127.0.0.1:{a.port}/ws", additional_headers=sensor) as writer:
        reply = await request(writer, action="set", key="sensors/t", value=1, ifRev=0, id=2)
    assert reply["code"] == "conflict"
    assert "value" not in reply
    assert reply["rev"] > 0


async def test_a_client_resumes_on_an_instance_started_after_it_left(
    start_shared: StartShared,
) -> None:
    """An instance that starts reads the recent history from the store's log: a client
    resumes on it from a revision it saw elsewhere, without a reset."""
    a = await start_shared()
    async with ws(a) as on_a:
        last = (await request(on_a, action="set", key="q/1", value=1, id=1))["rev"]
        await request(on_a, action="set", key="q/2", value=2, id=2)
    c = await start_shared()
    async with ws(c) as on_c:
        message = {"action": "subscribe", "prefix": "q/", "since": last, "id": 3}
        await on_c.send(json.dumps(message))
        update, done = await recv_json(on_c), await recv_json(on_c)
    assert (update["key"], update["value"]) == ("q/2", 2)
    assert done["reset"] is False


async def test_redis_restarted_mid_burst_and_away_for_seconds_leaves_no_stale_value(
    start_shared: StartShared, redis: RedisProcess
) -> None:
    """Writers on two instances keep setting 50 keys while Redis restarts (a clean stop,
    its append-only file kept) and then stays away for 10 s: writes fail with storage
    meanwhile; afterwards every instance, and every subscriber, holds exactly what Redis
    holds, and every acknowledged write survived or was overwritten."""
    a, b = await start_shared(), await start_shared()
    stop = asyncio.Event()
    acknowledged: dict[str, int] = {}

    async def write(server: ObjstoreServer, name: str) -> None:
        async with ws(server) as client:
            n = 0
            while not stop.is_set():
                key = f"w/{n % 50}"
                reply = await request(client, action="set", key=key, value=f"{name}{n}", id=n)
                if reply.get("ok"):
                    acknowledged[key] = max(acknowledged.get(key, 0), reply["rev"])
                else:
                    assert reply["code"] == "storage", reply
                    await asyncio.sleep(0.05)
                n += 1

    async with ws(b) as watcher:
        await request(watcher, action="subscribe", prefix="w/", id="s")
        writers = [asyncio.create_task(write(a, "a")), asyncio.create_task(write(b, "b"))]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(redis.start)
        await asyncio.sleep(0.5)
        await asyncio.to_thread(redis.stop)
        await asyncio.sleep(10)
        await asyncio.to_thread(redis.start)
        await asyncio.sleep(1)
        stop.set()
        await asyncio.gather(*writers)
        await asyncio.sleep(0.5)
        seen = await _latest_of_each_key(watcher)
    truth = await asyncio.to_thread(_stored, redis)
    assert len(truth) == 50
    for server in (a, b):
        for key, (rev, value) in truth.items():
            assert server.storage.revision(key) == rev
            assert json.loads(server.storage.get(key) or b"null") == value
    assert seen == truth
    for key, rev in acknowledged.items():
        assert truth[key][0] >= rev


async def _latest_of_each_key(watcher: ClientConnection) -> dict[str, tuple[int, Any]]:
    """(revision, value) of the last update of each key, read until a second of silence."""
    seen: dict[str, tuple[int, Any]] = {}
    while True:
        try:
            update = await recv_json(watcher, timeout=1)
        except TimeoutError:
            return seen
        if "key" in update:
            seen[update["key"]] = (update["rev"], update["value"])


def _stored(redis: RedisProcess) -> dict[str, tuple[int, Any]]:
    """(revision, value) of every key, as Redis holds them."""
    import redis as redis_library

    admin = redis_library.Redis(port=redis.port)
    try:
        values: Any = admin.hgetall("{objstore}:v")
        revs: Any = admin.hgetall("{objstore}:r")
    finally:
        admin.close()
    return {key.decode(): (int(revs[key]), json.loads(value)) for key, value in values.items()}


async def test_metrics_count_the_shared_store(start_shared: StartShared) -> None:
    """/metrics of an instance on Redis reports the store's keys and bytes, the sets its
    feed applied, and no write waiting once they are answered."""
    a, b = await start_shared(), await start_shared()
    async with ws(a) as client:
        await request(client, action="set", key="m", value="12345", id=1)
    page = (await http_request(b.port, "GET", "/metrics")).body.decode()
    assert "objstore_keys 1.0" in page
    assert "objstore_stored_bytes 7.0" in page
    assert "objstore_sets_total 1.0" in page
    assert "objstore_pending_writes 0.0" in page


async def test_a_store_that_lost_changes_makes_every_instance_start_afresh(
    start_shared: StartShared, redis: RedisProcess
) -> None:
    """A store whose revision went back (a failover that lost the last writes: simulated
    by rewinding the counter and dropping the log, then cutting the connections) is told
    from the one before by the instance that notices; it gives the store a new epoch, and
    every instance, also one whose connection never dropped, closes its clients with 1012
    so that they start afresh."""
    import redis as redis_library

    a, b = await start_shared(), await start_shared()
    async with ws(a) as on_a, ws(b) as on_b:
        for n in range(5):
            await request(on_a, action="set", key=f"k{n}", value=n, id=n)
        await request(on_b, action="get", key="k4", id="g")
        admin = redis_library.Redis(port=redis.port)
        try:
            await asyncio.to_thread(admin.execute_command, "HSET", "{objstore}:meta", "rev", 2)
            await asyncio.to_thread(admin.delete, "{objstore}:log")
            # Only a's connections are cut: b must learn of it by itself.
            assert isinstance(a.storage, RedisStore)
            name = f"objstore-{a.storage.instance}".encode()
            clients: Any = await asyncio.to_thread(admin.client_list)
            for connection in clients:
                if connection["name"].encode() == name:
                    await asyncio.to_thread(admin.client_kill_filter, _id=connection["id"])
        finally:
            admin.close()
        for client in (on_a, on_b):
            await asyncio.wait_for(client.wait_closed(), 10)
            assert client.close_code == 1012


async def test_an_entry_of_the_log_it_cannot_read_is_logged_and_the_store_read_again(
    start_shared: StartShared, redis: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry objstore did not write (another program wrote to the log) is logged
    with its ID; the instance reads the store again and goes on following it."""
    import redis as redis_library

    a = await start_shared()
    async with ws(a) as client, ws(a) as watcher:
        await request(watcher, action="subscribe", key="after", id=0)
        rev = (await request(client, action="set", key="before", value=1, id=1))["rev"]
        admin = redis_library.Redis(port=redis.port)
        try:
            await asyncio.to_thread(admin.execute_command, "HINCRBY", "{objstore}:meta", "rev", 1)
            await asyncio.to_thread(
                admin.execute_command, "XADD", "{objstore}:log", f"{rev + 1}-0", "junk", "1"
            )
        finally:
            admin.close()
        ack = await request(client, action="set", key="after", value=2, id=2)
        assert ack["rev"] == rev + 2
        assert await recv_json(watcher) == {"key": "after", "value": 2, "rev": rev + 2}
        assert (await request(client, action="get", key="after", id=3))["value"] == 2
    assert f"entry {rev + 1}-0 of the store's log is not one objstore wrote" in caplog.text
