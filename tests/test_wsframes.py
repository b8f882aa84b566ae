"""Locating client frames in a byte stream, sans I/O."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from objstore.wsframes import frame_extent, is_masked
from tests.helpers import client_frame


def test_short_masked_frame() -> None:
    """A 7-bit length frame: payload after the 2-byte header and 4-byte mask."""
    data = client_frame(b"hello")
    assert frame_extent(data, 0) == (6, 5)
    assert is_masked(data, 0)


def test_16_and_64_bit_lengths() -> None:
    """The extended length forms move the payload start by 2 and 8 bytes."""
    assert frame_extent(client_frame(b"x" * 300), 0) == (8, 300)
    assert frame_extent(client_frame(b"x" * 3, length_form=127), 0) == (14, 3)


def test_unmasked_frame_has_no_key() -> None:
    """Without the mask bit the payload follows the length at once."""
    data = client_frame(b"abc", masked=False)
    assert frame_extent(data, 0) == (2, 3)
    assert not is_masked(data, 0)


def test_frame_at_an_offset() -> None:
    """Positions are absolute: a second frame is found where the first ends."""
    first, second = client_frame(b"one"), client_frame(b"two" * 50)
    data = first + second
    start, length = frame_extent(data, len(first)) or (0, 0)
    assert (start, length) == (len(first) + 8, 150)


def test_incomplete_headers_are_none() -> None:
    """Every cut inside a header gives None; the payload may be missing."""
    for payload, header in ((b"x", 6), (b"x" * 300, 8), (b"x" * 70000, 14)):
        data = client_frame(payload)
        for cut in range(header):
            assert frame_extent(data[:cut], 0) is None
        assert frame_extent(data[:header], 0) == (header, len(payload))


def test_declared_length_is_read_without_the_payload() -> None:
    """A header announcing a huge payload is readable at once, so it can be refused early."""
    header = bytes([0x81, 0x80 | 127]) + struct.pack("!Q", 2**40) + b"mask"
    assert frame_extent(header, 0) == (14, 2**40)


@given(st.lists(st.binary(max_size=70000), min_size=1, max_size=4))
def test_frames_in_a_stream_are_found_one_after_another(payloads: list[bytes]) -> None:
    """Walking a stream frame by frame finds every frame's payload and ends at the end."""
    frames = [client_frame(p) for p in payloads]
    data = b"".join(frames)
    pos, lengths = 0, []
    while pos < len(data):
        extent = frame_extent(data, pos)
        assert extent is not None
        start, length = extent
        lengths.append(length)
        pos = start + length
    assert pos == len(data)
    assert lengths == [len(p) for p in payloads]
