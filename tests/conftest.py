"""Fixtures: a real objstore server on a free port, in this process, with its own cache folder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.config import Config
from objstore.server import ObjstoreServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser

StartServer = Callable[..., Awaitable[ObjstoreServer]]
Connect = Callable[..., AbstractAsyncContextManager[ClientConnection]]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
async def start_server(cache_dir: Path) -> AsyncIterator[StartServer]:
    """Start servers on port 0 (a free port); every one started is stopped at the end."""
    started: list[ObjstoreServer] = []

    async def start(**overrides: Any) -> ObjstoreServer:
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": 0, "cache_dir": cache_dir}
        settings.update(overrides)
        server = ObjstoreServer(Config(**settings))
        await server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


@pytest.fixture
async def server(start_server: StartServer) -> ObjstoreServer:
    return await start_server()


@pytest.fixture
def ws_url(server: ObjstoreServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


@pytest.fixture
def client(ws_url: str) -> Connect:
    """Open a WebSocket client to the server: ``async with client() as ws: ...``."""

    def open_client(
        path: str = "/ws", **kwargs: Any
    ) -> AbstractAsyncContextManager[ClientConnection]:
        url = ws_url.removesuffix("/ws") + path
        return connect(url, **kwargs)

    return open_client


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (Debian's package, found by find_chromium), one per test module."""
    from playwright.sync_api import sync_playwright

    from .test_console_browser import BROWSER_FLAGS, find_chromium

    executable = find_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=BROWSER_FLAGS)
        yield launched
        launched.close()
