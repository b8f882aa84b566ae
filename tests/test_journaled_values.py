"""Acknowledged values in the journal: acknowledged before their files, back after kill -9.

Real programs killed by process id (kill -9) while values are in the journal and not yet
in their files, then started again on the same folder; the files are read back.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from objstore.foldernames import JOURNAL_NAME, file_name

from .helpers import http_request, recv_json
from .test_program import Launcher, Program
from .test_revisions_restart import ask, source, url

__all__ = ["source"]  # the fixture, shared

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="signals")


def stored(cache: Path, key: str) -> Any:
    """The value in *key*'s file, or None without one."""
    path = cache / file_name(key)
    return json.loads(path.read_bytes()) if path.exists() else None


async def get(ws: ClientConnection, key: str) -> Any:
    return (await ask(ws, {"action": "get", "key": key, "id": "g"}))["value"]


async def kill(program: Program) -> None:
    await asyncio.to_thread(program.kill)


async def test_acknowledged_sets_are_back_after_kill_9_before_their_files(
    source: Launcher, tmp_path: Path
) -> None:
    """Sets acknowledged a moment before kill -9, before any file was written, are back
    after the restart, and their files hold them."""
    program = source.start(tmp_path)
    cache = source.default_cache(tmp_path)
    async with connect(url(program)) as ws:
        for number in range(50):
            reply = await ask(
                ws, {"action": "set", "key": f"k{number % 5}", "value": number, "id": number}
            )
            assert reply["ok"] is True
        await kill(program)
    assert [stored(cache, f"k{n}") for n in range(5)] == [None] * 5  # files gather for 1 s
    program = source.start(tmp_path)
    assert [stored(cache, f"k{n}") for n in range(5)] == [45, 46, 47, 48, 49]
    async with connect(url(program)) as ws:
        assert [await get(ws, f"k{n}") for n in range(5)] == [45, 46, 47, 48, 49]


async def test_an_acknowledged_delete_is_not_undone_by_kill_9(
    source: Launcher, tmp_path: Path
) -> None:
    """A delete acknowledged before kill -9 stays done, though its file was still there."""
    program = source.start(tmp_path)
    cache = source.default_cache(tmp_path)
    async with connect(url(program)) as ws:
        await ask(ws, {"action": "set", "key": "k", "value": 1, "id": 1})
    assert (
        await http_request(program.port, "POST", "/set", '{"key": "k", "value": 2}')
    ).status == 200
    assert stored(cache, "k") == 2  # POST /set answers once the file holds the value
    async with connect(url(program)) as ws:
        assert (await ask(ws, {"action": "delete", "key": "k", "id": 2}))["ok"] is True
        await kill(program)
    program = source.start(tmp_path)
    assert stored(cache, "k") is None
    async with connect(url(program)) as ws:
        assert await get(ws, "k") is None


async def test_a_plain_set_after_an_acknowledged_one_is_not_undone_by_the_journal(
    source: Launcher, tmp_path: Path
) -> None:
    """A plain set written to its file after an acknowledged set of the same key wins after
    kill -9: the journal never brings back a value older than the file's."""
    program = source.start(tmp_path)
    cache = source.default_cache(tmp_path)
    async with connect(url(program)) as ws:
        await ask(ws, {"action": "set", "key": "k", "value": "acked", "id": 1})
        await ws.send(json.dumps({"action": "set", "key": "k", "value": "plain"}))
        deadline = time.monotonic() + 10
        while stored(cache, "k") != "plain":  # written within 0.1 s
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await kill(program)
    program = source.start(tmp_path)
    assert stored(cache, "k") == "plain"
    async with connect(url(program)) as ws:
        assert await get(ws, "k") == "plain"


async def test_a_large_value_after_an_acknowledged_one_is_not_undone_by_the_journal(
    source: Launcher, tmp_path: Path
) -> None:
    """A value too large for the journal, acknowledged once its file is written, wins over
    the smaller value acknowledged from the journal before it, after kill -9."""
    program = source.start(tmp_path)
    cache = source.default_cache(tmp_path)
    big = "x" * 40_000
    async with connect(url(program)) as ws:
        await ask(ws, {"action": "set", "key": "k", "value": "small", "id": 1})
        assert (await ask(ws, {"action": "set", "key": "k", "value": big, "id": 2}))["ok"]
        assert stored(cache, "k") == big
        await kill(program)
    program = source.start(tmp_path)
    assert stored(cache, "k") == big
    async with connect(url(program)) as ws:
        assert await get(ws, "k") == big


async def test_values_acknowledged_across_a_fold_of_the_journal_are_back_after_kill_9(
    source: Launcher, tmp_path: Path
) -> None:
    """The journal is folded into a snapshot every 16 MiB; values acknowledged on both sides
    of folds, whose files were not written yet, are carried and back after kill -9."""
    program = source.start(tmp_path)
    cache = source.default_cache(tmp_path)
    payload = "y" * 30_000  # 1,200 sets of 30 KB: two folds
    async with connect(url(program)) as ws:
        for number in range(1200):
            value = {"n": number, "pad": payload}
            message = {"action": "set", "key": f"k{number % 7}", "value": value, "id": number}
            await ws.send(json.dumps(message))
        replies = [await recv_json(ws) for _ in range(1200)]
        assert all(reply["ok"] is True for reply in replies)
        await kill(program)
    with (cache / JOURNAL_NAME).open("rb") as journal:
        assert json.loads(journal.readline())["journal"] >= 3  # begun at 1, folded twice
    program = source.start(tmp_path)
    expected = [max(range(n, 1200, 7)) for n in range(7)]
    assert [stored(cache, f"k{n}")["n"] for n in range(7)] == expected
    assert (cache / JOURNAL_NAME).stat().st_size < 1024  # begun anew at the start
    async with connect(url(program)) as ws:
        assert [(await get(ws, f"k{n}"))["n"] for n in range(7)] == expected


async def test_a_journaled_value_whose_file_cannot_be_written_stops_the_start_and_is_kept(
    source: Launcher, tmp_path: Path
) -> None:
    """A value the journal brings back whose file cannot be written (a folder in its way)
    stops the start with a message naming the key; the journal is kept, and once the
    obstacle is gone the value comes back."""
    program = source.start(tmp_path)
    cache = source.default_cache(tmp_path)
    async with connect(url(program)) as ws:
        await ask(ws, {"action": "set", "key": "k", "value": 7, "id": 1})
        await kill(program)
    (cache / file_name("k")).mkdir()
    result = source.run(tmp_path, "--port", "0")
    assert result.returncode != 0
    assert 'could not save key "k"' in result.stdout + result.stderr
    (cache / file_name("k")).rmdir()
    program = source.start(tmp_path)
    assert stored(cache, "k") == 7
