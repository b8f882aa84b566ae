"""Moving a store between a cache folder and Redis: ``objstore import`` and ``export``.

Owns the two moves and what they refuse. :func:`export_store` reads the whole
store from Redis (a :class:`~objstore.redisstore.RedisStore`'s copy, taken at
one revision) and writes it into a new cache folder through the file store
(:class:`~objstore.store.Store`), so that names, atomic writes and the state
files with deadlines are the file store's own. :func:`import_folder` reads a
cache folder without changing it (:func:`~objstore.folderread.read_folder`,
which uses the line functions of :mod:`objstore.statelines` rather than the
server's loader, which would take the lock, write state files and rename or
remove files) and writes every key into Redis with the store's WRITE script,
in batches, so that each key gets a revision and a log entry and the
subscribers of running instances are told. No argument parsing
(:mod:`objstore.transfercli` does it); knows nothing of the wire protocol.

What moves: every permanent key's value and its deadline (a key with a time
to live keeps the time it has left). Ephemeral keys (presence) belong to live
connections and are not exported, only counted. Keys whose deadline has
passed are skipped both ways. Revisions do not move: the keys take the next
revisions of the target store, as if written there.

Memory: both hold the whole store once, like a server does. An export holds
Redis's copy and the file store's key space, which share the values' bytes;
an import holds the folder's values and, once written, the instance's copy
of the Redis store (sharing them too), plus at most :data:`IN_FLIGHT` batches
of at most :data:`BATCH_OPS` operations and about :data:`BATCH_BYTES` each.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .errors import StartupError, StorageError
from .folderlock import FolderInUse
from .folderread import FolderContent, read_folder
from .redisscripts import Op
from .store import Store

if TYPE_CHECKING:
    from .redisstore import RedisStore, WriteOutcome

__all__ = [
    "BATCH_BYTES",
    "BATCH_OPS",
    "IN_FLIGHT",
    "TransferRefused",
    "TransferReport",
    "export_store",
    "import_folder",
]

#: Operations in one WRITE script at most (one atomic step of Redis).
BATCH_OPS: Final = 256
#: Bytes of values in one WRITE script, past which a batch ends early (one op at least).
BATCH_BYTES: Final = 4 * 1024 * 1024
#: Batches sent and not yet answered, at most.
IN_FLIGHT: Final = 8


class TransferRefused(StartupError):
    """An import or export that cannot be done as asked; the message says what to do."""


@dataclass(slots=True)
class TransferReport:
    """What a move did: keys and bytes of values moved, keys skipped, time taken."""

    keys: int = 0
    bytes: int = 0
    #: Keys whose deadline had passed, skipped.
    expired: int = 0
    #: Ephemeral keys, not exported.
    ephemeral: int = 0
    #: Import: keys that the Redis store already held and were replaced.
    replaced: int = 0
    #: Import: files of the folder that could not be read, each with the reason.
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, moved: str) -> str:
        """One line: *moved* (like ``imported ... into ...``) with the counts."""
        line = f"{moved}: {_count(self.keys, 'key')} ({_count(self.bytes, 'byte')})"
        skipped = []
        if self.replaced:
            skipped.append(f"{self.replaced:,} of them replaced")
        if self.ephemeral:
            skipped.append(
                f"{_count(self.ephemeral, 'ephemeral key')} left out (presence of live "
                "connections)"
            )
        if self.expired:
            skipped.append(f"{_count(self.expired, 'expired key')} skipped")
        if self.unreadable:
            skipped.append(f"{_count(len(self.unreadable), 'unreadable file')} skipped")
        if skipped:
            line += "; " + ", ".join(skipped)
        return f"{line}; took {self.seconds:.2f} s"


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- export -------------------------------------------------------------------------------


async def export_store(url: str, folder: Path) -> TransferReport:
    """Write the whole Redis store at *url* into the new cache folder *folder*.

    Raises :class:`TransferRefused` when *folder* holds anything (an export
    never mixes with older files) or could not be written, StartupError when
    Redis cannot be reached.
    """
    started = time.monotonic()
    _check_empty(folder)
    from .redisstore import RedisStore

    redis = RedisStore(url)
    await redis.start()
    try:
        report = await _export(redis, folder)
    finally:
        await redis.close()
    report.seconds = time.monotonic() - started
    return report


def _check_empty(folder: Path) -> None:
    try:
        with os.scandir(folder) as entries:
            found = sum(1 for _ in entries)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise TransferRefused(
            f"cannot export to {folder}: it is a file; give a new or empty folder"
        ) from None
    except OSError as exc:
        raise TransferRefused(
            f"cannot export to {folder}: {exc.strerror or exc}; give a new or empty folder"
        ) from None
    if found:
        raise TransferRefused(
            f"cannot export to {folder}: it is not empty ({found:,} "
            f"{'entry' if found == 1 else 'entries'}); give a new or empty folder, so that "
            "the export does not mix with older files"
        )


async def _export(redis: RedisStore, folder: Path) -> TransferReport:
    report = TransferReport()
    store = Store(folder)
    store.open()
    now = _now_ms()
    mirror = redis.mirror
    # No await in this loop: the copy is read at one revision, the feed waits.
    for key, value in mirror.items():
        expires, ephemeral = mirror.details(key)
        if ephemeral:
            report.ephemeral += 1
        elif expires is not None and expires <= now:
            report.expired += 1
        else:
            ttl = None if expires is None else (expires - now) / 1000
            store.write(key, value, ttl=ttl)
            report.keys += 1
            report.bytes += len(value)
    unsaved = await store.close()
    if unsaved:
        raise TransferRefused(
            f"could not write {_count(len(unsaved), 'key')} to {folder} (see the errors "
            "above); free space or choose another folder, remove this one and export again"
        )
    return report


# -- import -------------------------------------------------------------------------------


async def import_folder(url: str, folder: Path, *, overwrite: bool = False) -> TransferReport:
    """Write every key of the cache folder *folder* into the Redis store at *url*.

    *folder* is only read. Refuses (:class:`TransferRefused`) a Redis store
    that already holds keys unless *overwrite*, which replaces keys of the same
    name and keeps the others; and a folder that is missing, unreadable or in
    use by a running objstore. StartupError when Redis cannot be reached.
    """
    started = time.monotonic()
    _check_folder(folder)
    from .redisstore import RedisStore

    redis = RedisStore(url)
    await redis.start()
    try:
        held = len(redis)
        if held and not overwrite:
            raise TransferRefused(
                f"the Redis store at {redis.url} already holds {_count(held, 'key')}; add "
                "--overwrite to replace keys of the same name and keep the others, or "
                "import into an empty store"
            )
        content = await asyncio.to_thread(_read, folder)
        report = TransferReport(unreadable=content.unreadable)
        report.replaced = sum(1 for key in content.values if key in redis)
        await _import(redis, content, report)
    finally:
        await redis.close()
    report.seconds = time.monotonic() - started
    return report


def _check_folder(folder: Path) -> None:
    if not folder.is_dir():
        raise TransferRefused(
            f"cannot import {folder}: no such folder; give the cache folder of a file "
            "store (its --cache-dir)"
        )


def _read(folder: Path) -> FolderContent:
    try:
        return read_folder(str(folder))
    except FolderInUse as exc:
        holder = "a running objstore" if exc.pid is None else f"objstore (process {exc.pid})"
        raise TransferRefused(
            f"cannot import {folder}: it is in use by {holder}; stop it first, so that "
            "the import reads a folder that does not change"
        ) from None
    except OSError as exc:
        raise TransferRefused(
            f"cannot import {folder}: {exc.strerror or exc}; give a readable cache folder"
        ) from None


async def _import(redis: RedisStore, content: FolderContent, report: TransferReport) -> None:
    """Send the keys in batches, at most IN_FLIGHT unanswered, and wait for every one."""
    waiting: deque[tuple[asyncio.Future[WriteOutcome], int, int]] = deque()
    values = content.values
    expires = content.expires
    batch: list[Op] = []
    size = 0

    async def settle(limit: int) -> None:
        while len(waiting) > limit:
            future, keys, count = waiting.popleft()
            try:
                outcome = await future
            except StorageError as exc:
                raise TransferRefused(
                    f"the import stopped after {_count(report.keys, 'key')}: {exc}; run it "
                    "again with --overwrite"
                ) from None
            if outcome.kind != "ok":
                raise TransferRefused(
                    f"the Redis store answered {outcome.kind!r} to a write of the import "
                    f"after {_count(report.keys, 'key')}; run it again with --overwrite"
                )
            report.keys += keys
            report.bytes += count

    def send() -> None:
        nonlocal batch, size
        waiting.append((redis.write(batch), len(batch), size))
        batch, size = [], 0

    now = _now_ms()
    for number, key in enumerate(sorted(values)):
        if number % BATCH_OPS == 0:
            now = _now_ms()
        value = values[key]
        deadline = expires.get(key)
        if deadline is not None and deadline <= now:
            report.expired += 1
            continue
        ttl_ms = None if deadline is None else deadline - now
        batch.append(Op(key, "s", value, ttl_ms=ttl_ms))
        size += len(value)
        if len(batch) >= BATCH_OPS or size >= BATCH_BYTES:
            send()
            await settle(IN_FLIGHT - 1)
    if batch:
        send()
    await settle(0)
