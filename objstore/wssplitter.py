"""Received WebSocket bytes split into whole client frames, sans I/O.

Owns the receive buffer of an upgraded connection and the decision, frame by
frame, of who reads it: a whole masked text or binary frame within the size
limit is unmasked here and given out as a message; any other whole frame
(ping, pong, close, fragments, reserved bits) is given out as it is, for
websockets to parse; and a header that websockets will refuse (unmasked, or
over the size limit, counting the fragments already received of the message
it continues) is given out at once with everything after it, without waiting
for its payload, so that websockets fails the connection before the payload
is buffered. Knows nothing of sockets, asyncio or what a message means.

Memory: bytes are held only while a frame is incomplete. A frame whose header
has arrived is collected in one growing buffer and copied out once, when it
is whole, so a frame arriving in many small pieces costs about its own size
(not its size times the number of pieces, nor an object per piece). A frame is at most the size
limit (``--max-size``) plus its 14-byte header, since longer ones are refused
from the header.
"""

from __future__ import annotations

from typing import Final

from .wsframes import SIMPLE_BINARY, SIMPLE_TEXT, frame_extent, is_masked
from .wsinternals import apply_mask

__all__ = ["FRAME", "MESSAGE_BINARY", "MESSAGE_TEXT", "REFUSED", "FrameSplitter"]

#: A whole text message, unmasked: handle it.
MESSAGE_TEXT: Final = 1
#: A whole binary message, unmasked: handle it.
MESSAGE_BINARY: Final = 2
#: A whole frame of another kind, as received: websockets parses it.
FRAME: Final = 3
#: Bytes that websockets will refuse, and everything after them: hand them to it,
#: and from then on every byte received; the splitter gives out nothing more.
REFUSED: Final = 4

_SIMPLE_KINDS: Final = {SIMPLE_TEXT: MESSAGE_TEXT, SIMPLE_BINARY: MESSAGE_BINARY}
_MASK_BIT: Final = 0x80
#: The second byte of a masked frame whose length needs 16 or 64 more bits.
_LONG_HEADER: Final = 0x80 | 126


class FrameSplitter:
    """Splits the bytes one client sends into whole frames, in order."""

    __slots__ = ("_arriving", "_data", "_need", "_pos", "max_size")

    def __init__(self, max_size: int | None) -> None:
        #: Longest message accepted, in bytes; None for no limit.
        self.max_size = max_size
        #: Received bytes, read up to ``_pos``.
        self._data = b""
        self._pos = 0
        #: A frame still arriving, once its length (``_need``) is known; else None.
        self._arriving: bytearray | None = None
        self._need = 0

    @property
    def buffered(self) -> int:
        """Bytes received and not given out yet."""
        arriving = self._arriving
        return len(self._data) - self._pos + (0 if arriving is None else len(arriving))

    def feed(self, data: bytes) -> None:
        """Add bytes received from the client."""
        arriving = self._arriving
        if arriving is not None:
            arriving += data
            if len(arriving) >= self._need:
                self._data = bytes(arriving)
                self._arriving = None
        elif self._pos < len(self._data):
            # What is left is less than a frame header: copying it is cheap.
            self._data = self._data[self._pos :] + data
            self._pos = 0
        else:
            self._data = data
            self._pos = 0

    def take_all(self) -> bytes:
        """Every byte received and not given out yet; the splitter is empty afterwards."""
        rest = self._data[self._pos :]
        if self._arriving is not None:
            rest += self._arriving
            self._arriving = None
        self._data = b""
        self._pos = 0
        return rest

    def next(self, fragmented_size: int | None) -> tuple[int, bytes] | None:
        """The next whole frame as ``(kind, bytes)``, or None until more bytes arrive.

        *fragmented_size* is the size of the fragmented message in progress, as
        websockets counts it (None between messages): a text or binary frame is
        only a message of its own between messages, and a continuation frame is
        refused once the total would pass the limit. For :data:`MESSAGE_TEXT`
        and :data:`MESSAGE_BINARY` the bytes are the unmasked payload; for
        :data:`FRAME` and :data:`REFUSED`, the bytes as received.
        """
        if self._arriving is not None:
            return None
        data = self._data
        pos = self._pos
        size = len(data)
        if size - pos >= 6 and data[pos + 1] < _LONG_HEADER and data[pos + 1] & _MASK_BIT:
            # The common header, a short masked frame, read here: a call less.
            start = pos + 6
            length = data[pos + 1] & 0x7F
        else:
            extent = frame_extent(data, pos)
            if extent is None:
                return None  # the header is still arriving
            start, length = extent
            if not is_masked(data, pos):
                return self._refuse(data, pos)
        limit = self.max_size
        if limit is not None and (
            length > limit or (fragmented_size is not None and fragmented_size + length > limit)
        ):
            return self._refuse(data, pos)
        end = start + length
        if end > size:
            # The payload is still arriving: collect it, to be joined once whole.
            self._arriving = bytearray(data[pos:])
            self._need = end - pos
            self._data = b""
            self._pos = 0
            return None
        self._pos = end
        kind = _SIMPLE_KINDS.get(data[pos]) if fragmented_size is None else None
        if kind is None:
            return FRAME, data[pos:end]
        return kind, apply_mask(data[start:end], data[start - 4 : start])

    def _refuse(self, data: bytes, pos: int) -> tuple[int, bytes]:
        self._data = b""
        self._pos = 0
        return REFUSED, data[pos:]
