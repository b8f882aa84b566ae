"""Splitting received bytes into whole client frames, sans I/O."""

from __future__ import annotations

import struct
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

from objstore.wssplitter import FRAME, MESSAGE_BINARY, MESSAGE_TEXT, REFUSED, FrameSplitter
from tests.helpers import client_frame


def drain(splitter: FrameSplitter, fragmented: int | None = None) -> list[tuple[int, bytes]]:
    items = []
    while (item := splitter.next(fragmented)) is not None:
        items.append(item)
        if item[0] == REFUSED:
            break
    return items


def test_whole_text_and_binary_frames_are_unmasked_messages() -> None:
    """Simple frames come out as messages, unmasked, in order."""
    splitter = FrameSplitter(1000)
    splitter.feed(client_frame(b"hello") + client_frame(b"\x00\x01", opcode=0x2))
    assert drain(splitter) == [(MESSAGE_TEXT, b"hello"), (MESSAGE_BINARY, b"\x00\x01")]
    assert splitter.buffered == 0


def test_other_frames_come_out_as_received() -> None:
    """Pings, fragments and frames with reserved bits are left for websockets, whole."""
    frames = [
        client_frame(b"p", opcode=0x9),
        client_frame(b"part", fin=False),
        client_frame(b"x", rsv=4),
    ]
    splitter = FrameSplitter(1000)
    splitter.feed(b"".join(frames))
    assert drain(splitter) == [(FRAME, frame) for frame in frames]


def test_a_text_frame_inside_a_fragmented_message_goes_to_websockets() -> None:
    """Between the fragments of a message, a whole text frame is not a message of its own."""
    frame = client_frame(b"oops")
    splitter = FrameSplitter(1000)
    splitter.feed(frame)
    assert drain(splitter, fragmented=10) == [(FRAME, frame)]


def test_an_unmasked_frame_is_refused_with_everything_after_it() -> None:
    """A client frame without a mask goes to websockets at once, with the rest."""
    bad = client_frame(b"abc", masked=False)
    splitter = FrameSplitter(1000)
    splitter.feed(client_frame(b"ok") + bad + b"more")
    assert drain(splitter) == [(MESSAGE_TEXT, b"ok"), (REFUSED, bad + b"more")]


def test_a_header_over_the_limit_is_refused_before_its_payload() -> None:
    """A frame announcing more than max_size is refused from its header alone."""
    header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**40) + b"mask"
    splitter = FrameSplitter(1 << 20)
    splitter.feed(header)
    assert splitter.next(None) == (REFUSED, header)


def test_a_continuation_passing_the_limit_is_refused_from_its_header() -> None:
    """A fragment whose running total passes max_size is refused before its payload."""
    header = bytes([0x80, 0x80 | 126]) + struct.pack("!H", 600) + b"mask"
    splitter = FrameSplitter(1000)
    splitter.feed(header)
    assert splitter.next(500) == (REFUSED, header)
    within = FrameSplitter(1000)
    within.feed(header)
    assert within.next(400) is None  # 1000 in all: within the limit, waits for its payload


def test_a_frame_fed_a_byte_at_a_time_comes_out_once_whole() -> None:
    """Pieces of any size make the same frame; nothing comes out before it is whole."""
    payload = bytes(range(256)) * 300
    data = client_frame(payload)
    splitter = FrameSplitter(1 << 20)
    for byte in range(len(data) - 1):
        splitter.feed(data[byte : byte + 1])
        assert splitter.next(None) is None
    assert splitter.buffered == len(data) - 1
    splitter.feed(data[-1:])
    assert splitter.next(None) == (MESSAGE_TEXT, payload)
    assert splitter.buffered == 0


def test_take_all_returns_what_was_not_given_out() -> None:
    """take_all empties the splitter, including a frame still arriving."""
    first, second = client_frame(b"one"), client_frame(b"two" * 100)
    splitter = FrameSplitter(1000)
    splitter.feed(first + second[:50])
    assert splitter.next(None) == (MESSAGE_TEXT, b"one")
    assert splitter.next(None) is None
    splitter.feed(second[50:60])
    assert splitter.take_all() == second[:60]
    assert splitter.buffered == 0


@given(
    st.lists(st.binary(max_size=3000), min_size=1, max_size=5),
    st.lists(st.integers(min_value=1, max_value=4000), max_size=20),
)
def test_any_split_gives_the_same_messages(payloads: list[bytes], cuts: list[int]) -> None:
    """However the stream is cut into received chunks, the messages are the same."""
    data = b"".join(client_frame(p, opcode=0x2) for p in payloads)
    splitter = FrameSplitter(1 << 20)
    received: list[bytes] = []
    pos = 0
    for size in [*cuts, len(data)]:
        if pos >= len(data):
            break
        splitter.feed(data[pos : pos + size])
        pos += size
        received += [payload for kind, payload in drain(splitter) if kind == MESSAGE_BINARY]
    assert received == payloads
    assert splitter.buffered == 0


def test_a_frame_arriving_in_tiny_pieces_costs_about_its_size() -> None:
    """200 KB fed a byte at a time are held in about 200 KB, not an object per piece."""
    data = client_frame(b"x" * 200_000)
    splitter = FrameSplitter(1 << 20)
    tracemalloc.start()
    try:
        for byte in range(len(data) - 1):
            splitter.feed(data[byte : byte + 1])
            assert splitter.next(None) is None
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert splitter.buffered == len(data) - 1
    assert held < 300_000
