"""Loading the cache folder at start: every value read, the rest tidied or set aside.

Owns what happens to each entry found in the folder, as
:func:`~objstore.foldernames.classify` names it: value files are read (and
original-style names renamed to canonical ones), files that cannot be read
and symbolic links under the store's names are renamed ``*.corrupt`` with a
warning (a link itself is renamed; what it points to is never read or
touched), leftovers of a crash (and spares and sidecars whose value file is
gone) are removed; the state files (snapshot and journal) are left to
:mod:`objstore.statefiles`, neither read nor removed. Blocking code, run once
before the server listens; knows nothing of asyncio or of writing values.

Speed: a name that :data:`~objstore.keys.PLAIN_NAME` matches (most keys) is
its key without decoding, and those files are read in one pass by
:func:`~objstore.diskio.read_files` (100,000 files in about 0.6 s of CPU on a
small machine, most of it the system's open, read and close).

Memory: the folder's names once (a list of strings), and every value read
whole, as the store then holds it (the file's size: a value file is not cut to
``--max-size``, as before).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from . import jsonvalues
from .diskio import read_file, read_files, remove_quietly, replace
from .errors import ClientError
from .foldernames import classify, file_name, is_hashed, set_aside_name, sidecar_name
from .folderwrite import FolderWriter
from .keys import PLAIN_NAME, validate_key

__all__ = ["LoadReport", "load_folder"]

logger = logging.getLogger("objstore.cache")

#: A plain value file's name cut here is its key (the name without ".json").
_STEM_END = -len(".json")


def _reason(exc: BaseException) -> str:
    """Why a value file cannot be loaded, for the warning that sets it aside."""
    return f"{type(exc).__name__}: {exc}"


@dataclass(slots=True)
class LoadReport:
    """What :func:`load_folder` found."""

    values: dict[str, bytes] = field(default_factory=dict)
    #: Names of files that could not be loaded and were renamed, as ``(old, new)``.
    set_aside: list[tuple[str, str]] = field(default_factory=list)
    #: Original-style names renamed to canonical ones, as ``(old, new)``.
    renamed: list[tuple[str, str]] = field(default_factory=list)
    #: Leftover temporary files (and spares and sidecars without their value file) removed.
    temp_files_removed: int = 0


def load_folder(writer: FolderWriter) -> LoadReport:
    """Read every key's value from *writer*'s folder; set aside what cannot be read; tidy."""
    return _Loader(writer).load()


class _Loader:
    def __init__(self, writer: FolderWriter) -> None:
        self.path = writer.path
        self.writer = writer
        self.report = LoadReport()

    def _join(self, name: str) -> str:
        return os.path.join(self.path, name)

    def load(self) -> LoadReport:
        report = self.report
        plain: list[str] = []
        others: list[str] = []
        links: list[str] = []
        is_plain = PLAIN_NAME.fullmatch
        with os.scandir(self.path) as entries:
            for entry in entries:
                # Never follow a link: a link under one of our names is set aside below.
                # (The entry's type comes with the listing: no stat of each file.)
                if entry.is_file(follow_symlinks=False):
                    name = entry.name
                    (plain if is_plain(name) is not None else others).append(name)
                elif entry.is_symlink() and classify(entry.name).is_ours:
                    links.append(entry.name)
        for name in links:
            self._set_aside(name, "a symbolic link, which objstore never follows")
        # The common case first, in one pass: value files named by their key.
        self._load_plain(plain)
        present: set[str] = set()  # every file's name, listed when first needed

        def listed() -> set[str]:
            if not present:
                present.update(plain, others)
            return present

        legacy: list[tuple[str, str]] = []
        for name in others:
            kind = classify(name)
            if kind.kind == "leftover" or (
                kind.kind in ("spare", "sidecar") and kind.of not in listed()
            ):
                # Left by a crash between writing a file and renaming it, or the
                # spare or sidecar of a file removed since: of no use to any key.
                if remove_quietly(self._join(name)):
                    report.temp_files_removed += 1
            elif kind.kind == "canonical":
                assert kind.key is not None
                self._load_one(kind.key, name)
            elif kind.kind == "hashed":
                key = self._read_sidecar(name)
                if key is not None:
                    self._load_one(key, name)
            elif kind.kind == "legacy":
                assert kind.key is not None
                legacy.append((kind.key, name))
        for key, name in legacy:
            self._migrate_legacy(key, name, listed())
        return report

    def _load_plain(self, names: list[str]) -> None:
        """Load the value files whose key is their name without ".json" (matched by
        :data:`~objstore.keys.PLAIN_NAME`): no name to decode, one open of each."""
        values = self.report.values
        compact = jsonvalues.compact
        for name, data in read_files(self.path, names):
            if isinstance(data, OSError):
                self._set_aside(name, _reason(data))
                continue
            try:
                values[name[:_STEM_END]] = compact(data)
            except (UnicodeDecodeError, ValueError, ClientError) as exc:
                self._set_aside(name, _reason(exc))

    def _load_one(self, key: str, name: str) -> bool:
        try:
            self.report.values[key] = jsonvalues.compact(read_file(self._join(name)))
        except (OSError, UnicodeDecodeError, ValueError, ClientError) as exc:
            self._set_aside(name, _reason(exc))
            return False
        return True

    def _read_sidecar(self, name: str) -> str | None:
        sidecar = sidecar_name(name)
        try:
            return validate_key(read_file(self._join(sidecar)).decode("utf-8"))
        except (OSError, UnicodeDecodeError, ClientError) as exc:
            self._set_aside(name, f"its key file {sidecar} cannot be read ({exc})")
            return None

    def _migrate_legacy(self, key: str, name: str, present: set[str]) -> None:
        """Load a file named the original way (``{key}.json``) and give it its canonical name."""
        canonical = file_name(key)
        if canonical in present and key in self.report.values:
            # Both exist: the newer file holds the latest value.
            if self._mtime(name) <= self._mtime(canonical):
                self._set_aside(name, f"an older copy of {canonical}")
                return
            del self.report.values[key]
            self._set_aside(canonical, f"an older copy of {name}")
        if not self._load_one(key, name):
            return
        try:
            if is_hashed(canonical):
                self.writer.write_atomically(sidecar_name(canonical), key.encode("utf-8"))
            replace(self._join(name), self._join(canonical))
        except OSError as exc:
            logger.warning("could not rename %s to %s: %s", name, canonical, exc)
            return
        self.report.renamed.append((name, canonical))

    def _set_aside(self, name: str, reason: str) -> None:
        """Rename an entry that cannot be loaded so that it is kept but no longer read."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self._aside_name(name, stamp)
        try:
            os.replace(self._join(name), self._join(target))
        except OSError as exc:
            logger.warning("cannot load %s (%s) and cannot rename it: %s", name, reason, exc)
            return
        logger.warning("cannot load %s (%s); renamed it to %s", name, reason, target)
        self.report.set_aside.append((name, target))
        if classify(name).kind == "hashed":
            self._set_sidecar_aside(name, stamp)

    def _set_sidecar_aside(self, name: str, stamp: str) -> None:
        """Keep the sidecar of the set-aside hashed file *name* beside it, so that its key
        stays known (a sidecar without its value file is removed at start)."""
        sidecar = sidecar_name(name)
        if not os.path.lexists(self._join(sidecar)):
            return
        target = self._aside_name(sidecar, stamp)
        try:
            os.replace(self._join(sidecar), self._join(target))
        except OSError as exc:
            logger.warning("could not rename %s to %s: %s", sidecar, target, exc)
            return
        logger.info("renamed %s, the key of %s, to %s", sidecar, name, target)

    def _aside_name(self, name: str, stamp: str) -> str:
        """A free name to set *name* aside under."""
        counter = 1
        target = set_aside_name(name, stamp)
        while os.path.lexists(self._join(target)):
            counter += 1
            target = set_aside_name(name, stamp, counter)
        return target

    def _mtime(self, name: str) -> float:
        try:
            return os.lstat(self._join(name)).st_mtime
        except OSError:
            return 0.0
