"""The cache folder against planted links, a second server and failing writes, on a real server."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import pytest

from objstore.errors import StartupError
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, recv_json

needs_symlinks = pytest.mark.skipif(
    sys.platform == "win32", reason="creating symbolic links needs extra rights on Windows"
)
removes_the_folder = pytest.mark.skipif(
    sys.platform == "win32", reason="the open lock file keeps Windows from removing the folder"
)


async def set_value(server: ObjstoreServer, key: str, value: str) -> int:
    body = f'{{"key": "{key}", "value": "{value}"}}'
    return (await http_request(server.port, "POST", "/set", body)).status


async def wait_for_file(path: Path, content: str, timeout: float = 10) -> None:
    """Wait until *path* holds *content* (the writer retries in the background)."""
    for _ in range(int(timeout / 0.05)):
        if path.is_file() and path.read_text() == content:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never held {content!r}")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the cache folder that a planted link points to."""
    target = tmp_path / "outside.txt"
    target.write_text('"precious"\n')
    return target


# -- symbolic links --------------------------------------------------------------------


@needs_symlinks
async def test_link_to_a_file_outside_is_set_aside_not_loaded_nor_written(
    start_server: StartServer, cache_dir: Path, outside: Path
) -> None:
    """A value file that is a link is renamed *.corrupt (the link itself) with a warning and
    never read; sets of its key leave the file it points to untouched."""
    cache_dir.mkdir()
    (cache_dir / "link.json").symlink_to(outside)
    server = await start_server()
    assert "link" not in server.store
    (aside,) = server.load_report.set_aside
    assert aside[0] == "link.json"
    assert aside[1].endswith(".corrupt")
    assert (cache_dir / aside[1]).is_symlink()
    for n in range(3):
        assert await set_value(server, "link", f"v{n}") == 200
    assert outside.read_text() == '"precious"\n'
    assert (cache_dir / "link.json").read_text() == '"v2"\n'
    assert not (cache_dir / "link.json").is_symlink()


@needs_symlinks
async def test_dangling_link_planted_while_running_creates_nothing_outside(
    server: ObjstoreServer, cache_dir: Path, tmp_path: Path
) -> None:
    """A dangling link put under a key's name while the server runs is replaced, never
    followed: no file appears where it points."""
    target = tmp_path / "created-outside.txt"
    (cache_dir / "dangling.json").symlink_to(target)
    for n in range(3):
        assert await set_value(server, "dangling", f"v{n}") == 200
    assert not target.exists()
    assert (cache_dir / "dangling.json").read_text() == '"v2"\n'


@needs_symlinks
async def test_planted_spare_link_does_not_redirect_writes(
    server: ObjstoreServer, cache_dir: Path, outside: Path
) -> None:
    """A link planted as a key's hidden spare is removed, not written through."""
    assert await set_value(server, "name", "v0") == 200
    (cache_dir / ".name.json.spare").unlink(missing_ok=True)
    (cache_dir / ".name.json.spare").symlink_to(outside)
    for n in range(1, 4):
        assert await set_value(server, "name", f"v{n}") == 200
    assert outside.read_text() == '"precious"\n'
    assert (cache_dir / "name.json").read_text() == '"v3"\n'
    assert not (cache_dir / ".name.json.spare").is_symlink()


async def test_planted_hard_link_does_not_redirect_writes(
    server: ObjstoreServer, cache_dir: Path, outside: Path
) -> None:
    """A hard link to a file outside, planted as a key's spare, is replaced, not written."""
    os.link(outside, cache_dir / ".name.json.spare")
    for n in range(3):
        assert await set_value(server, "name", f"v{n}") == 200
    assert outside.read_text() == '"precious"\n'
    assert (cache_dir / "name.json").read_text() == '"v2"\n'


@needs_symlinks
async def test_cache_folder_may_itself_be_a_link(
    start_server: StartServer, cache_dir: Path, tmp_path: Path
) -> None:
    """The folder given by the user may be a link to the real folder: it is used as given."""
    real = tmp_path / "real"
    real.mkdir()
    cache_dir.symlink_to(real, target_is_directory=True)
    server = await start_server()
    assert await set_value(server, "k", "v") == 200
    assert (real / "k.json").read_text() == '"v"\n'


# -- the lock --------------------------------------------------------------------------


async def test_second_server_on_the_same_folder_is_refused(
    start_server: StartServer, cache_dir: Path
) -> None:
    """While one server runs on a folder, another on it fails to start, naming the folder."""
    await start_server()
    with pytest.raises(StartupError) as caught:
        await start_server()
    assert str(caught.value) == (
        f"the cache folder {cache_dir} is in use by another objstore (process {os.getpid()}); "
        "stop that program or choose another folder with --cache-dir or CACHE_DIR"
    )


async def test_folder_is_free_again_once_the_server_stops(
    start_server: StartServer, cache_dir: Path
) -> None:
    """Stopping a server lets the lock go: the next one starts on the same folder."""
    first = await start_server()
    await first.stop()
    second = await start_server()
    assert second.port > 0


async def test_lock_file_is_not_a_key(start_server: StartServer, cache_dir: Path) -> None:
    """The lock file left by a server is never loaded as a key."""
    first = await start_server()
    await first.stop()
    assert (cache_dir / ".objstore.lock").is_file()
    second = await start_server()
    assert len(second.store) == 0
    assert second.load_report.set_aside == []


# -- failed writes ---------------------------------------------------------------------


@removes_the_folder
async def test_removed_folder_is_created_again_by_the_next_set(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """A set after the folder was removed succeeds and its file is there."""
    shutil.rmtree(cache_dir)
    assert await set_value(server, "k", "v") == 200
    assert (cache_dir / "k.json").read_text() == '"v"\n'


@removes_the_folder
async def test_failed_write_is_retried_once_the_cause_passes(
    server: ObjstoreServer, client: Connect, cache_dir: Path
) -> None:
    """A set that could not be written (a file where the folder should be) is told once to
    the setter and written by itself once the folder can be made again, newest value first."""
    shutil.rmtree(cache_dir)
    cache_dir.write_text("not a folder")
    async with client() as ws:
        await ws.send('{"action": "set", "key": "w", "value": 1}')
        error = await recv_json(ws)
        assert error["error"].startswith('could not save key "w" to ')
        await ws.send('{"action": "set", "key": "w", "value": 2}')
        assert (await recv_json(ws))["error"].startswith('could not save key "w" to ')
        cache_dir.unlink()
        await wait_for_file(cache_dir / "w.json", "2\n")
    await server.store.flush()
    # The folder made again holds the store: its keys and its state files (a new snapshot).
    assert sorted(p.name for p in cache_dir.iterdir() if not p.name.endswith(".spare")) == [
        ".objstore.journal",
        ".objstore.lock",
        ".objstore.meta",
        "w.json",
    ]


async def test_write_that_cannot_succeed_is_reported_at_stop(
    start_server: StartServer, cache_dir: Path
) -> None:
    """A key still unwritten when the server stops is listed in unsaved_keys; one whose
    cause passed is written by the last try."""
    server = await start_server()
    # A folder under a key's file name: a file cannot replace it, for root too.
    (cache_dir / "k.json").mkdir()
    (cache_dir / "saved-later.json").mkdir()
    assert await set_value(server, "k", "v") == 500
    assert await set_value(server, "saved-later", "v") == 500
    (cache_dir / "saved-later.json").rmdir()
    await server.stop()
    assert server.unsaved_keys == ["k"]
    assert (cache_dir / "saved-later.json").read_text() == '"v"\n'
