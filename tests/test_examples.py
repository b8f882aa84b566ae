"""The programs of examples/, run against a real server the way their README runs them.

The Python examples run as subprocesses (``python examples/NAME.py --url ...``) with
this checkout on PYTHONPATH; the cursor page runs in headless Chromium, opened from
disk as its README says. They need the clients (``objstore.client`` and
``GET /client.js``): where those are missing these tests skip, except where
OBJSTORE_REQUIRE_BROWSER=1 (``.ci/run``), where they fail.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from websockets.asyncio.client import ClientConnection

from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import free_port, http_request, recv_json
from .test_console_browser import BROWSER_FLAGS, find_chromium

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
REQUIRED = os.environ.get("OBJSTORE_REQUIRE_BROWSER") == "1"


@pytest.fixture(autouse=True)
def python_client() -> None:
    """Skip where ``objstore.client`` is missing, unless CI requires these tests."""
    if REQUIRED:
        importlib.import_module("objstore.client")
    else:
        pytest.importorskip("objstore.client")


class Example:
    """``python examples/NAME.py ARGS``: its stdout read line by line, stopped at the end."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self, timeout: float = 10) -> str:
        assert self.process.stdout is not None
        data = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert data, "the example ended without printing the line expected"
        return data.decode().rstrip("\n")

    async def exit_code(self, timeout: float = 10) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def errors(self, timeout: float = 10) -> str:
        assert self.process.stderr is not None
        return (await asyncio.wait_for(self.process.stderr.read(), timeout)).decode()


Run = Callable[..., Awaitable[Example]]


@pytest.fixture
async def run(ws_url: str) -> AsyncIterator[Run]:
    """Start an example against the test server: ``await run("counter", "--count", "2")``."""
    started: list[asyncio.subprocess.Process] = []

    async def start(name: str, *args: str) -> Example:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(EXAMPLES / f"{name}.py"),
            "--url",
            ws_url,
            *args,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        return Example(process)

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()  # by process id
            await process.wait()


async def request(ws: ClientConnection, message: dict[str, object]) -> dict[str, object]:
    """Send *message* with an id on a raw WebSocket and return its reply."""
    await ws.send(json.dumps({**message, "id": 1}))
    reply: dict[str, object] = await recv_json(ws)
    assert reply.get("ok") is True, reply
    return reply


# -- presence.py --------------------------------------------------------------------------


async def test_presence_lists_who_comes_and_goes(run: Run, client: Connect) -> None:
    """presence.py lists itself, then another connection's ephemeral key, then its leaving."""
    alice = await run("presence", "--name", "alice", "--seconds", "60")
    assert await alice.line() == "online: alice"
    async with client() as bob:
        await request(bob, {"action": "set", "key": "online/bob", "value": 1, "ephemeral": True})
        assert await alice.line() == "online: alice, bob"
    assert await alice.line() == "online: alice"


async def test_presence_key_goes_when_the_program_stops(run: Run, client: Connect) -> None:
    """presence.py --seconds stops by itself with 0, and its ephemeral key goes with it."""
    alice = await run("presence", "--name", "alice", "--seconds", "1")
    assert await alice.line() == "online: alice"
    assert await alice.exit_code() == 0
    async with client() as ws:
        reply = await request(ws, {"action": "get", "key": "online/alice"})
    assert reply["value"] is None


async def test_presence_comes_back_after_a_server_restart(
    run: Run, server: ObjstoreServer, start_server: StartServer, client: Connect
) -> None:
    """presence.py puts its ephemeral key back once it has reconnected to a restarted server."""
    alice = await run("presence", "--name", "alice", "--seconds", "60")
    assert await alice.line() == "online: alice"
    port = server.port
    await server.stop()  # a clean stop ends every ephemeral key
    await start_server(port=port)
    async with client() as ws:
        await ws.send(json.dumps({"action": "subscribe", "key": "online/alice", "id": 1}))
        update = await recv_json(ws)
        while update.get("value") is None:  # the reply, before alice has reconnected
            update = await recv_json(ws, timeout=15)
    assert update["key"] == "online/alice"
    assert update["ephemeral"] is True


# -- counter.py ---------------------------------------------------------------------------


async def test_counter_shows_every_increment(run: Run) -> None:
    """counter.py shows 0, then the sum after each counter.py --incr, and stops at --count."""
    dashboard = await run("counter", "--count", "3")
    assert await dashboard.line() == "hits: 0"
    for by, total in (("2", "hits: 2"), ("5", "hits: 7")):
        adder = await run("counter", "--incr", by)
        assert await adder.line() == total
        assert await adder.exit_code() == 0
        assert await dashboard.line() == total
    assert await dashboard.exit_code() == 0


async def test_counter_starts_from_the_stored_value(run: Run, client: Connect) -> None:
    """counter.py shows the counter's current value first, under --key."""
    async with client() as ws:
        await request(ws, {"action": "set", "key": "visits", "value": 41})
    dashboard = await run("counter", "--key", "visits", "--count", "1")
    assert await dashboard.line() == "visits: 41"
    assert await dashboard.exit_code() == 0


# -- sensor.py ----------------------------------------------------------------------------


async def test_sensor_readings_expire_after_it_stops(run: Run, client: Connect) -> None:
    """sensor.py --count 3 sends three readings with a ttl; then its key expires."""
    async with client() as ws:
        await request(ws, {"action": "subscribe", "prefix": "sensors/"})
        args = ("--name", "attic", "--count", "3", "--interval", "0.05", "--ttl", "0.5")
        sensor = await run("sensor", *args)
        for _ in range(3):
            assert re.fullmatch(
                r"sensors/attic: -?\d+\.\d °C \(revision \d+\)", await sensor.line()
            )
            update = await recv_json(ws)
            assert sorted(update) == ["expires", "key", "rev", "value"]
            assert update["key"] == "sensors/attic"
            assert sorted(update["value"]) == ["at", "celsius"]
            assert 499 <= update["expires"] - update["value"]["at"] * 1000 < 1000
        assert await sensor.exit_code() == 0
        expiry = await recv_json(ws)
    deletion = {"key": "sensors/attic", "value": None, "rev": update["rev"] + 1}
    assert expiry == {**deletion, "deleted": True, "expired": True}


async def test_sensor_without_a_server_says_so_in_one_line(run: Run) -> None:
    """sensor.py with no server at --url prints one error line, no traceback, and exits 1."""
    url = f"ws://127.0.0.1:{free_port()}/ws"
    sensor = await run("sensor", "--url", url, "--count", "1")
    assert await sensor.exit_code() == 1
    errors = await sensor.errors()
    assert errors.startswith(f"error: cannot connect to {url}: ")
    assert errors.endswith("; check that objstore runs there\n")
    assert errors.count("\n") == 1


# -- cursors.html -------------------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    executable = find_chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=BROWSER_FLAGS)
        yield browser
        await browser.close()


@pytest.fixture
async def cursor_server(start_server: StartServer) -> ObjstoreServer:
    """A server that lets pages opened from disk in (``--allow-origin null``), with /client.js."""
    server = await start_server(allow_origins=("null",))
    answer = await http_request(server.port, "GET", "/client.js")
    if answer.status == 404 and not REQUIRED:
        pytest.skip("this server has no /client.js yet")
    assert answer.status == 200
    return server


async def open_cursors(
    browser: Browser,
    server: ObjstoreServer,
    base: str | None = None,
    status: str | re.Pattern[str] = "open",
) -> tuple[Page, str]:
    """cursors.html in a window of its own, opened from disk or from *base* (a web server
    of the folder); the page and its cursor's id, once its status is *status*."""
    page = await (await browser.new_context(viewport={"width": 800, "height": 600})).new_page()
    page.set_default_timeout(10_000)
    where = (EXAMPLES / "cursors.html").as_uri() if base is None else f"{base}/cursors.html"
    await page.goto(f"{where}?server=ws://127.0.0.1:{server.port}/ws")
    await expect(page.locator("#status")).to_have_text(status)
    me = await page.locator("body").get_attribute("data-me")
    assert me or status != "open"
    return page, me or ""


async def test_cursor_pages_see_each_other(
    browser: Browser, cursor_server: ObjstoreServer
) -> None:
    """Two cursor pages each draw the other's cursor where its mouse is."""
    ann, ann_id = await open_cursors(browser, cursor_server)
    bob, bob_id = await open_cursors(browser, cursor_server)
    await ann.mouse.move(300, 200)
    await bob.mouse.move(120, 450)
    on_bob = bob.locator(f'.cursor[data-id="{ann_id}"]')
    on_ann = ann.locator(f'.cursor[data-id="{bob_id}"]')
    await expect(on_bob).to_have_css("left", "300px")
    await expect(on_bob).to_have_css("top", "200px")
    await expect(on_ann).to_have_css("left", "120px")
    await expect(on_ann).to_have_css("top", "450px")
    await expect(ann.locator(".cursor")).to_have_count(1)  # not its own


async def test_cursor_goes_when_its_page_closes(
    browser: Browser, cursor_server: ObjstoreServer
) -> None:
    """A cursor page that closes disappears from the other page (its key was ephemeral)."""
    ann, ann_id = await open_cursors(browser, cursor_server)
    bob, _ = await open_cursors(browser, cursor_server)
    await ann.mouse.move(300, 200)
    await expect(bob.locator(f'.cursor[data-id="{ann_id}"]')).to_have_count(1)
    await ann.context.close()
    await expect(bob.locator(".cursor")).to_have_count(0)


@pytest.fixture
async def examples_site() -> AsyncIterator[str]:
    """The folder served as its README says (``python -m http.server``), on a free port."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        "127.0.0.1",
        "--directory",
        str(EXAMPLES),
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()  # by its pid
        await process.wait()


async def test_cursor_pages_served_by_a_web_server_of_an_allowed_origin(
    browser: Browser, start_server: StartServer, examples_site: str
) -> None:
    """Served from another origin, the page works once that origin is allowed, and
    is refused (and says so) while it is not."""
    refused = await start_server()
    page, _ = await open_cursors(
        browser,
        refused,
        examples_site,
        status=re.compile(re.escape(f"objstore --allow-origin {examples_site})?")),
    )
    await page.context.close()
    await refused.stop()
    server = await start_server(allow_origins=(examples_site,))
    ann, ann_id = await open_cursors(browser, server, examples_site)
    bob, _ = await open_cursors(browser, server, examples_site)
    await ann.mouse.move(210, 140)
    on_bob = bob.locator(f'.cursor[data-id="{ann_id}"]')
    await expect(on_bob).to_have_css("left", "210px")
    await expect(on_bob).to_have_css("top", "140px")
