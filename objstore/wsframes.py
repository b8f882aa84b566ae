"""WebSocket framing of server messages, sans I/O: one encoded frame for every subscriber.

Owns the bytes of a server-to-client frame (RFC 6455, section 5.2). Such frames
are never masked, so the same bytes can be written to every connection: an
update is framed once per set, not once per subscriber. Knows nothing of
sockets, websockets or JSON.
"""

from __future__ import annotations

import struct

__all__ = ["text_frame"]

_TEXT_FIN = 0x81  # FIN bit set, opcode 1 (text)
_SHORT = struct.Struct("!BB")
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, unfragmented text frame holding *payload* (UTF-8)."""
    length = len(payload)
    if length < 126:
        return _SHORT.pack(_TEXT_FIN, length) + payload
    if length < 65536:
        return _MEDIUM.pack(_TEXT_FIN, 126, length) + payload
    return _LONG.pack(_TEXT_FIN, 127, length) + payload
