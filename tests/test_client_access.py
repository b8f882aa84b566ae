"""The Python clients with access control: a token in the handshake, refusals as
ForbiddenError, an unknown or revoked token ends the client instead of retrying."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import objstore.client
import objstore.client.sync
from objstore.client import ForbiddenError
from objstore.server import ObjstoreServer

from .conftest import StartServer

WRITER = "writer-token-0123456789a"
RULES = f"""
[anonymous]
read = ["public/"]

[tokens.writer]
token = "{WRITER}"
read = ["w/"]
write = ["w/"]
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "perms.toml"
    path.write_text(RULES)
    return path


@pytest.fixture
async def server(start_server: StartServer, rules_file: Path) -> ObjstoreServer:
    return await start_server(auth_file=rules_file)


def url(server: ObjstoreServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def test_a_token_gives_its_rights_and_refusals_are_forbidden_errors(
    server: ObjstoreServer,
) -> None:
    async with objstore.client.connect(url(server), token=WRITER) as store:
        assert await store.set("w/a", 1) == 1
        with pytest.raises(ForbiddenError) as caught:
            await store.set("other", 1)
    assert caught.value.code == "forbidden"
    async with objstore.client.connect(url(server)) as anonymous:
        with pytest.raises(ForbiddenError):
            await anonymous.get("w/a")


async def test_an_unknown_token_fails_at_connect(server: ObjstoreServer) -> None:
    with pytest.raises(ForbiddenError) as caught:
        async with objstore.client.connect(url(server), token="not-a-known-token-0000"):
            pass
    assert "forbidden: unknown token" in str(caught.value)


async def test_a_revoked_token_ends_the_watch_with_forbidden(
    server: ObjstoreServer, rules_file: Path
) -> None:
    """Rules reloaded without the token: the server closes the connection, the client's
    reconnection is refused, and its watch ends with ForbiddenError (no endless retries)."""
    async with objstore.client.connect(url(server), token=WRITER, min_backoff=0.01) as store:
        await store.set("w/a", 1)
        watch = store.watch(prefix="w/")
        seen = [await anext(watch), await anext(watch)]
        assert [change.kind for change in seen] == ["update", "ready"]
        rules_file.write_text(
            RULES.replace("[tokens.writer]", "[tokens.other]").replace(
                WRITER, "another-token-012345678"
            )
        )
        assert server.access.reload()
        with pytest.raises(ForbiddenError):
            await asyncio.wait_for(anext(watch), 10)


async def test_the_sync_client_sends_its_token(server: ObjstoreServer) -> None:
    def run() -> tuple[int, str]:
        with objstore.client.sync.connect(url(server), token=WRITER) as store:
            rev = store.set("w/s", 2)
        try:
            objstore.client.sync.connect(url(server), token="not-a-known-token-0000").open()
        except ForbiddenError as exc:
            return rev, str(exc.code)
        return rev, "connected"

    assert await asyncio.to_thread(run) == (1, "forbidden")
