"""Stored values cost their size, not the 4 KiB buffer orjson's results keep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: Encodes 20,000 small values as stored values are encoded, keeps them, and
#: prints how many bytes the process grew by (from /proc, as the system sees it).
ENCODE_AND_KEEP = """
import re
from objstore import jsonvalues

def rss():
    with open("/proc/self/status") as status:
        return int(re.search(r"VmRSS:\\s+(\\d+) kB", status.read()).group(1)) * 1024

values = [{"n": index, "t": "x" * 20} for index in range(20_000)]
before = rss()
kept = [jsonvalues.encode(value) for value in values]
print(rss() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_small_encoded_values_cost_their_size() -> None:
    """20,000 encoded 30-byte values take under 200 bytes each, not 4 KiB."""
    result = subprocess.run(
        [sys.executable, "-c", ENCODE_AND_KEEP],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    grown = int(result.stdout)
    # Each is a 63-byte bytes object (64 with padding) and a list slot: 72 bytes.
    assert grown < 20_000 * 200, f"{grown / 20_000:.0f} bytes per value"
