"""WebSocket framing, sans I/O: server frames built once for all; client frames located.

Owns the bytes of a frame (RFC 6455, section 5.2). Server-to-client frames are
never masked, so the same bytes can be written to every connection: an update
is framed once per set, not once per subscriber. Client-to-server frames are
located in a stream of bytes, so that the connection can take simple ones
apart itself and leave the rest to websockets. Knows nothing of sockets,
websockets or JSON.
"""

from __future__ import annotations

import struct

__all__ = ["SIMPLE_BINARY", "SIMPLE_TEXT", "frame_extent", "is_masked", "text_frame"]

_TEXT_FIN = 0x81  # FIN bit set, opcode 1 (text)
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")

#: First byte of a whole (FIN, not fragmented) text frame without extension bits.
SIMPLE_TEXT = 0x81
#: First byte of a whole binary frame without extension bits.
SIMPLE_BINARY = 0x82
_MASK_BIT = 0x80


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame holding *payload* (UTF-8)."""
    length = len(payload)
    if length < 126:
        return _SHORT.pack(_TEXT_FIN, length) + payload
    if length < 65536:
        return _MEDIUM.pack(_TEXT_FIN, 126, length) + payload
    return _LONG.pack(_TEXT_FIN, 127, length) + payload


def frame_extent(data: bytes, pos: int) -> tuple[int, int] | None:
    """Where the payload of the frame starting at ``data[pos]`` lies: ``(start, length)``.

    The masking key, when the frame has one, is the 4 bytes before ``start``;
    the frame ends at ``start + length``, which may be past the end of *data*
    while the frame is still arriving. Returns None while the header itself
    is incomplete. Checks nothing else: opcode, flags and limits are the
    caller's to judge.
    """
    available = len(data) - pos
    if available < 2:
        return None
    second = data[pos + 1]
    length = second & 0x7F
    start = pos + 2
    if length == 126:
        if available < 4:
            return None
        length = (data[pos + 2] << 8) | data[pos + 3]
        start = pos + 4
    elif length == 127:
        if available < 10:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 10], "big")
        start = pos + 10
    if second & _MASK_BIT:
        start += 4
        if start > len(data):
            return None
    return start, length


def is_masked(data: bytes, pos: int) -> bool:
    """Whether the frame starting at ``data[pos]`` (header complete) carries a masking key."""
    return bool(data[pos + 1] & _MASK_BIT)
