"""How much CPU one file write costs, each way objstore can write a key's file.

Writes 50 keys round-robin, 200 times each, into a fresh temporary folder (on the
file system of --dir), and prints the CPU time per write of:

- ``swap``: objstore's cache folder where the system can exchange names (the
  spare is written in place and trades names with the key's file);
- ``recycle``: objstore's cache folder without name exchange (Windows, FAT):
  write the spare, link, rename, rename;
- ``truncate``: open with O_TRUNC, write, close, as the original server does
  (not atomic: shown for scale).

Usage: .venv/bin/python benchmarks/filewrites.py [--dir DIR] [--keys 50] [--rounds 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from objstore.cachefolder import CacheFolder

VALUE = b'{"t":12345.678,"n":1234}'


Write = Callable[[str, bytes], None]


def per_write(keys: int, rounds: int, write: Write) -> float:
    names = [f"player-{i}" for i in range(keys)]
    for name in names:  # every key has its file: rewrites are measured
        write(name, VALUE)
    start = time.process_time()
    for _ in range(rounds):
        for name in names:
            write(name, VALUE)
    return (time.process_time() - start) / (keys * rounds) * 1e6


def truncating_writer(folder: Path) -> Write:
    def write(key: str, data: bytes) -> None:
        fd = os.open(folder / f"{key}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.write(fd, data + b"\n")
        finally:
            os.close(fd)

    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="where to make the temporary folder")
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=200)
    opts = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="objstore-filewrites-", dir=opts.dir))
    try:
        results = {}
        for way in ("swap", "recycle"):
            cache = CacheFolder(top / way, swap_names=way == "swap")
            cache.prepare()
            results[way] = per_write(opts.keys, opts.rounds, cache.write)
            cache.close()
        (top / "truncate").mkdir()
        results["truncate"] = per_write(
            opts.keys, opts.rounds, truncating_writer(top / "truncate")
        )
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"CPU µs per write, {opts.keys} keys x {opts.rounds} rewrites, in {top.parent}")
    for way, micros in results.items():
        print(f"  {way:<9} {micros:6.1f}")


if __name__ == "__main__":
    main()
