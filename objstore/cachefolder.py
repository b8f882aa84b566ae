"""The cache folder on disk: one JSON file per key, written atomically, loaded at startup.

Owns file I/O only: the atomic write of one value, reading every value back,
setting aside files that cannot be read, removing leftover temporary files and
renaming files of the original server to their canonical names. Blocking code,
meant to run off the event loop; knows nothing of asyncio, subscribers or the
wire protocol. File names come from :mod:`objstore.keys`.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import jsonvalues
from .errors import ClientError, StartupError, StorageError, describe
from .fdlimit import current_open_file_limit
from .keys import file_name, is_hashed, parse_file_name, sidecar_name, validate_key
from .swapwrite import SwapWriter, name_exchange

__all__ = ["CacheFolder", "LoadReport"]

logger = logging.getLogger("objstore.cache")

_TEMP_SUFFIX = ".tmp"
_SPARE_SUFFIX = ".spare"
_OLD_SUFFIX = ".old"
_REWRITE_FLAGS = os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0)
_SET_ASIDE_SUFFIX = ".corrupt"
_MAX_KEPT_OPEN = 1024


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
_PID = os.getpid()
_temp_numbers = itertools.count()


@dataclass(slots=True)
class LoadReport:
    """What :meth:`CacheFolder.load` found."""

    values: dict[str, bytes] = field(default_factory=dict)
    #: Names of files that could not be loaded and were renamed, as ``(old, new)``.
    set_aside: list[tuple[str, str]] = field(default_factory=list)
    #: Original-style names renamed to canonical ones, as ``(old, new)``.
    renamed: list[tuple[str, str]] = field(default_factory=list)
    #: Leftover temporary files removed.
    temp_files_removed: int = 0


class CacheFolder:
    """A folder of ``{file name}.json`` files, one per key, each holding the value itself."""

    def __init__(self, path: Path, *, swap_names: bool = True) -> None:
        """*swap_names* False writes every file the way of systems without a name exchange."""
        self.path = path
        exchange = name_exchange() if swap_names else None
        #: Rewrites hot keys by swapping names, where the system can (see swapwrite).
        self._swapper = (
            None
            if exchange is None
            else SwapWriter(str(path), _spare_name, exchange, _files_kept_open())
        )

    def close(self) -> None:
        """Close the files kept open for fast rewrites; writes after this reopen them."""
        if self._swapper is not None:
            self._swapper.close()

    def prepare(self) -> None:
        """Create the folder if missing and check that files can be written in it.

        Raises :class:`~objstore.errors.StartupError` with the fix when it cannot.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = self._create_temp("write-check")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise StartupError(
                f"cannot write to the cache folder {self.path}: {reason}; "
                "choose a writable folder with --cache-dir or CACHE_DIR"
            ) from None

    # -- writing -----------------------------------------------------------------------

    def write(self, key: str, data: bytes) -> None:
        """Replace the file of *key* with *data* atomically.

        The data goes to another file in the same folder, which then replaces
        the old file in one ``os.replace``: a crash at any moment leaves the old
        file or the new one, never a torn one. Raises
        :class:`~objstore.errors.StorageError`.
        """
        name = file_name(key)
        try:
            if is_hashed(name):
                sidecar = self.path / sidecar_name(name)
                if not sidecar.exists():
                    self._write_atomically(sidecar.name, key.encode("utf-8"))
            data += b"\n"
            swapper = self._swapper
            if swapper is None or not swapper.rewrite(name, data):
                self._write_recycling(name, data)
        except OSError as exc:
            raise StorageError(
                f"could not save key {describe(key)} to {self.path / name}: {exc.strerror or exc}"
            ) from exc

    def _write_recycling(self, name: str, data: bytes) -> None:
        """Write atomically, reusing the previous file's inode for the next write.

        The way of systems without a name exchange, and of a key's first write
        everywhere (a swap needs two files).

        Creating a file per write and deleting the replaced one makes the file
        system allocate and free an inode each time, which was a third of the
        server's CPU time under a game-like load. Instead each key keeps a
        spare, ``.{name}.spare``: the value is written into the spare, the
        current file gets a second name (``.{name}.old``, a hard link), the
        spare replaces the current file, and the old file becomes the next
        spare. Every step leaves the key's file whole; ``.old`` files left by a
        crash are removed at startup. Where hard links are not supported
        (FAT drives), the spare is simply not kept.
        """
        path = os.path.join(self.path, name)
        spare = os.path.join(self.path, _spare_name(name))
        old = os.path.join(self.path, f".{name}{_OLD_SUFFIX}")
        fd = os.open(spare, _REWRITE_FLAGS, 0o666)
        try:
            # Overwrite, then cut to length: truncating to zero first would make
            # ext4 flush the file when it is closed (its replace-by-truncate
            # safeguard), which costs a disk write per set.
            os.ftruncate(fd, len(data))
        except BaseException:
            os.close(fd)
            raise
        _write_file(fd, data)
        try:
            os.link(path, old)
            kept = True
        except FileNotFoundError:  # the key's first file
            kept = False
        except FileExistsError:  # left by a crash between two of these steps
            os.unlink(old)
            os.link(path, old)
            kept = True
        except OSError:  # no hard links on this file system
            kept = False
        _replace(spare, path)
        if kept:
            _replace(old, spare)

    def _write_atomically(self, name: str, data: bytes) -> None:
        fd, temp = self._create_temp(name)
        try:
            _write_file(fd, data)
            _replace(temp, os.path.join(self.path, name))
        except BaseException:
            _remove_quietly(temp)
            raise

    def _create_temp(self, name: str) -> tuple[int, str]:
        """A new, unique temporary file beside *name*, open for writing.

        Cheaper than tempfile.mkstemp (no random names, no chmod): the process
        id and a counter make the name unique, and O_EXCL makes sure of it. Its
        mode is that of any new file (0o666 less the umask).
        """
        while True:
            temp = os.path.join(self.path, f".{name}.{_PID}-{next(_temp_numbers)}{_TEMP_SUFFIX}")
            try:
                return os.open(temp, _CREATE_FLAGS, 0o666), temp
            except FileExistsError:
                continue  # left by an earlier process with the same id

    # -- loading -----------------------------------------------------------------------

    def load(self) -> LoadReport:
        """Read every key's value; set aside what cannot be read; tidy leftovers."""
        report = LoadReport()
        names = [entry.name for entry in os.scandir(self.path) if entry.is_file()]
        present = set(names)
        legacy: list[tuple[str, str]] = []
        for name in names:
            if name.startswith(".") and name.endswith((_TEMP_SUFFIX, _OLD_SUFFIX)):
                # Left by a crash between writing a temporary file and renaming it.
                if _remove_quietly(self.path / name):
                    report.temp_files_removed += 1
                continue
            parsed = parse_file_name(name)
            if parsed.kind == "canonical":
                assert parsed.key is not None
                self._load_one(report, parsed.key, name)
            elif parsed.kind == "hashed":
                key = self._read_sidecar(report, name)
                if key is not None:
                    self._load_one(report, key, name)
            elif parsed.kind == "legacy":
                assert parsed.key is not None
                legacy.append((parsed.key, name))
        for key, name in legacy:
            self._migrate_legacy(report, key, name, present)
        return report

    def _load_one(self, report: LoadReport, key: str, name: str) -> bool:
        try:
            text = _read(os.path.join(self.path, name)).decode("utf-8")
            report.values[key] = jsonvalues.encode(jsonvalues.decode(text))
        except (OSError, UnicodeDecodeError, ValueError, ClientError) as exc:
            self._set_aside(report, name, f"{type(exc).__name__}: {exc}")
            return False
        return True

    def _read_sidecar(self, report: LoadReport, name: str) -> str | None:
        sidecar = sidecar_name(name)
        try:
            return validate_key((self.path / sidecar).read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ClientError) as exc:
            self._set_aside(report, name, f"its key file {sidecar} cannot be read ({exc})")
            return None

    def _migrate_legacy(self, report: LoadReport, key: str, name: str, present: set[str]) -> None:
        """Load a file named the original way (``{key}.json``) and give it its canonical name."""
        canonical = file_name(key)
        if canonical in present and key in report.values:
            # Both exist: the newer file holds the latest value.
            if _mtime(self.path / name) <= _mtime(self.path / canonical):
                self._set_aside(report, name, f"an older copy of {canonical}")
                return
            del report.values[key]
            self._set_aside(report, canonical, f"an older copy of {name}")
        if not self._load_one(report, key, name):
            return
        try:
            if is_hashed(canonical):
                self._write_atomically(sidecar_name(canonical), key.encode("utf-8"))
            _replace(self.path / name, self.path / canonical)
        except OSError as exc:
            logger.warning("could not rename %s to %s: %s", name, canonical, exc)
            return
        report.renamed.append((name, canonical))

    def _set_aside(self, report: LoadReport, name: str, reason: str) -> None:
        """Rename a file that cannot be loaded so that it is kept but no longer read."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = f"{name}.{stamp}{_SET_ASIDE_SUFFIX}"
        counter = 1
        while (self.path / target).exists():
            counter += 1
            target = f"{name}.{stamp}-{counter}{_SET_ASIDE_SUFFIX}"
        try:
            os.replace(self.path / name, self.path / target)
        except OSError as exc:
            logger.warning("cannot load %s (%s) and cannot rename it: %s", name, reason, exc)
            return
        logger.warning("cannot load %s (%s); renamed it to %s", name, reason, target)
        report.set_aside.append((name, target))


def _spare_name(name: str) -> str:
    """The spare kept beside a key's file, to be written next (hidden, never loaded)."""
    return f".{name}{_SPARE_SUFFIX}"


def _files_kept_open() -> int:
    """How many keys may keep their two files open: 1,024, fewer under a low open-file limit.

    A sixteenth of the limit at most, so that files never take the room of clients.
    """
    limit = current_open_file_limit()
    return _MAX_KEPT_OPEN if limit is None else min(_MAX_KEPT_OPEN, limit // 16)


def _replace(source: str | Path, target: str | Path) -> None:
    # On Windows a reader (an editor, an antivirus scan) holding the target open
    # makes os.replace fail for a moment; a few short retries ride that out.
    attempts = 5 if sys.platform == "win32" else 1
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))


def _write_file(fd: int, data: bytes) -> None:
    """Write all of *data* to the open file *fd*, then close it."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _read(path: str) -> bytes:
    """The whole content of a file, with less overhead than pathlib (100,000 files at start)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _remove_quietly(path: str | Path) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
