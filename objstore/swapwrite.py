"""Rewriting a key's file in two system calls: write its spare, then swap the two names.

Owns the files kept open for recently written keys, and the one operating
system call that makes this atomic: exchanging two names in one step
(``renameat2`` with ``RENAME_EXCHANGE`` on Linux, ``renamex_np`` with
``RENAME_SWAP`` on macOS). Each key's file has a spare beside it, named by
:mod:`objstore.foldernames`; a rewrite puts the new value in the
spare, which is already open, and exchanges the names: the key's file is the
old one or the new one at every moment, and the old one is the next spare.
That is two system calls where a rename-based write takes seven, for the keys
that are written over and over (a player's position, 30 times a second).

Blocking code, run off the event loop by the writer thread; knows nothing of
keys, JSON or asyncio. Files are opened through :mod:`objstore.diskio`, which
refuses symbolic links; a pair whose file was replaced behind its back (its
spare has no name any more) is dropped before it is written. Where the
exchange is missing (Windows, some file systems), :func:`name_exchange` gives
None or the first write says so, and the cache folder writes its other way.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from collections import OrderedDict
from collections.abc import Callable

from .diskio import SymlinkRefused, flush_to_disk, open_file, remove_quietly

__all__ = ["NameExchange", "SwapWriter", "name_exchange"]

#: Exchanges two existing names (file system encoded) in one atomic step; raises OSError.
NameExchange = Callable[[bytes, bytes], None]

_RENAME_EXCHANGE = 2  # linux/fs.h
_RENAME_SWAP = 2  # macOS sys/stdio.h
_AT_FDCWD = -100  # linux/fcntl.h
#: Errors that mean "this system or file system cannot exchange names".
_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP})


def name_exchange() -> NameExchange | None:
    """The system's atomic name exchange, or None where it has none."""
    if sys.platform not in ("linux", "darwin"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if sys.platform == "linux":
            renameat2 = libc.renameat2
        else:
            renamex_np = libc.renamex_np
    except (OSError, AttributeError):  # a C library without it (old glibc, musl)
        return None
    if sys.platform == "linux":
        renameat2.argtypes = [
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_uint,
        ]
        renameat2.restype = ctypes.c_int

        def call(first: bytes, second: bytes) -> int:
            result: int = renameat2(_AT_FDCWD, first, _AT_FDCWD, second, _RENAME_EXCHANGE)
            return result

    else:
        renamex_np.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_uint]
        renamex_np.restype = ctypes.c_int

        def call(first: bytes, second: bytes) -> int:
            result: int = renamex_np(first, second, _RENAME_SWAP)
            return result

    def exchange(first: bytes, second: bytes) -> None:
        if call(first, second) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fsdecode(first), None, os.fsdecode(second))

    return exchange


class _Pair:
    """A key's file and its spare, both open for writing, and their sizes (-1: unknown)."""

    __slots__ = ("live_fd", "live_size", "path", "spare", "spare_fd", "spare_size")

    def __init__(self, path: bytes, spare: bytes, live_fd: int, spare_fd: int) -> None:
        self.path = path
        self.spare = spare
        self.live_fd = live_fd
        self.spare_fd = spare_fd
        self.live_size = -1
        self.spare_size = -1

    def close(self) -> None:
        os.close(self.live_fd)
        os.close(self.spare_fd)


class SwapWriter:
    """Rewrites existing files of one folder by swapping them with their spares.

    At most *capacity* keys keep their two files open, the least recently
    written are closed first. Not thread-safe: one writer thread owns it.
    """

    def __init__(
        self,
        folder: str,
        spare_name: Callable[[str], str],
        exchange: NameExchange,
        capacity: int,
        *,
        sync: bool = False,
    ) -> None:
        """*sync*: flush each new value to disk before it takes the file's name."""
        self._folder = folder
        self._sync = sync
        self._spare_name = spare_name
        self._exchange = exchange
        self._capacity = capacity
        self._pairs: OrderedDict[str, _Pair] = OrderedDict()
        #: False once the file system refused an exchange: every call returns False.
        self.supported = True

    def rewrite(self, name: str, data: bytes) -> bool:
        """Make *data* the content of the existing file *name*; True if done.

        False when this way cannot do it, with nothing changed that matters:
        the file does not exist yet, or the file system cannot exchange names.
        The caller then writes the file its other way. Raises OSError for
        anything else (a full disk), with the file still holding its old content.
        """
        pair = self._pairs.get(name)
        if pair is None:
            if not self.supported or self._capacity <= 0:
                return False
            pair = self._open(name)
            if pair is None:
                return False
        else:
            self._pairs.move_to_end(name)
            if os.fstat(pair.spare_fd).st_nlink == 0:
                # Its file was replaced behind our back (an editor, a sync tool):
                # the spare we hold is nameless now. Start afresh.
                self.forget(name)
                return False
        size = len(data)
        try:
            written = os.pwrite(pair.spare_fd, data, 0)
            while written < size:  # short writes are rare but allowed
                written += os.pwrite(pair.spare_fd, data[written:], written)
            if size < pair.spare_size or pair.spare_size < 0:
                # Cut only what the old content had beyond the new; never to zero
                # first, which makes ext4 flush the file (see folderwrite).
                os.ftruncate(pair.spare_fd, size)
            if self._sync:
                flush_to_disk(pair.spare_fd)
            self._exchange(pair.spare, pair.path)
        except OSError as exc:
            self.forget(name)
            if exc.errno in _UNSUPPORTED:
                self.supported = False
                return False
            if exc.errno == errno.ENOENT:  # a file removed behind our back: start afresh
                return False
            remove_quietly(pair.spare)  # a partial value (a full disk) is of no use
            raise
        pair.live_fd, pair.spare_fd = pair.spare_fd, pair.live_fd
        pair.live_size, pair.spare_size = size, pair.live_size
        return True

    def _open(self, name: str) -> _Pair | None:
        path = os.path.join(self._folder, name)
        spare = os.path.join(self._folder, self._spare_name(name))
        # Neither may be a symbolic link (or have another name): the spare is
        # written in place, and the live file becomes the next spare.
        try:
            live_fd = open_file(path, os.O_WRONLY)
        except (FileNotFoundError, SymlinkRefused):
            return None
        try:
            spare_fd = open_file(spare, os.O_WRONLY | os.O_CREAT)
        except SymlinkRefused:
            os.close(live_fd)
            return None
        except BaseException:
            os.close(live_fd)
            raise
        pair = self._pairs[name] = _Pair(os.fsencode(path), os.fsencode(spare), live_fd, spare_fd)
        while len(self._pairs) > self._capacity:
            _, oldest = self._pairs.popitem(last=False)
            oldest.close()
        return pair

    def forget(self, name: str) -> None:
        """Close the files of *name*, if open."""
        pair = self._pairs.pop(name, None)
        if pair is not None:
            pair.close()

    def close(self) -> None:
        """Close every file kept open."""
        while self._pairs:
            _, pair = self._pairs.popitem()
            pair.close()

    @property
    def open_pairs(self) -> int:
        """Number of keys whose files are kept open."""
        return len(self._pairs)
