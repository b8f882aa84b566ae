"""What the state files cost: a snapshot written and read, journal appends, a reservation.

In a fresh temporary folder (on the file system of --dir): writes a snapshot of
--keys keys (a third with an expiry deadline) and 10,000 history entries, appends
one deadline per key to the journal one call at a time, then one reservation
(flushed to disk), and reads the state back, first timed, then under tracemalloc
for the peak of memory (the state itself, mostly).

Usage: .venv/bin/python benchmarks/statefiles.py [--dir DIR] [--keys 100000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from objstore.statefiles import Deadline, KeyState, Reserve, SavedState, StateFiles

DEADLINE = 1_800_000_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where the temporary folder goes")
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    keys: int = args.keys
    state = SavedState(
        rev=2 * keys,
        base=2 * keys - 10_000,
        keys={f"player:{n}": KeyState(n + 1, None if n % 3 else DEADLINE, n) for n in range(keys)},
        history=[(2 * keys - 10_000 + n, f"player:{n}", n % 7 == 0) for n in range(1, 10_001)],
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        files = StateFiles(folder)
        start = time.perf_counter()
        files.write_snapshot(state)
        written = time.perf_counter() - start
        size = os.path.getsize(os.path.join(folder, ".objstore.meta"))
        start = time.perf_counter()
        for n in range(keys):
            files.append([Deadline(f"player:{n}", DEADLINE + n)])
        appended = time.perf_counter() - start
        start = time.perf_counter()
        files.append([Reserve(4 * keys)])
        reserved = time.perf_counter() - start
        journal = files.journal_size
        files.close()
        start = time.perf_counter()
        StateFiles(folder).read()
        read = time.perf_counter() - start
        tracemalloc.start()
        StateFiles(folder).read()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(
        f"write_snapshot, {keys:,} keys + 10,000 history: {written * 1e3:.0f} ms,"
        f" {size / 1e6:.1f} MB"
    )
    print(
        f"append, {keys:,} single deadlines: {appended / keys * 1e6:.1f} us each,"
        f" journal {journal / 1e6:.1f} MB"
    )
    print(f"append, one reservation (flushed): {reserved * 1e3:.2f} ms")
    print(f"read, snapshot + journal: {read * 1e3:.0f} ms, peak traced memory {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
