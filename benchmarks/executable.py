"""Size, start-up time and idle memory of the one-file executable (Linux).

    python benchmarks/executable.py [EXECUTABLE] [--reference PATH/TO/seed-bun/run.sh]

EXECUTABLE defaults to dist/objstore-<os>-<cpu> as build.spec names it. Start-up
is timed from spawning the process to the first completed WebSocket handshake.
"Cold" is the first start with the file dropped from the page cache (when this
process may do that, i.e. as root on Linux; otherwise it says so), "warm" the
median of the starts after it. Memory is the resident set of the whole process
tree (a one-file executable is a bootloader plus the server) after one idle
second. With --reference, the original's Bun server is measured the same way
in the same run, for scale.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
WARM_RUNS = 7


def default_executable() -> Path:
    machine = {"amd64": "x86_64", "aarch64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = {"darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    return ROOT / "dist" / f"objstore-{system}-{machine}{'.exe' if system == 'windows' else ''}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def drop_page_cache(path: Path) -> bool:
    """Evict *path* from the page cache; True if that was possible."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (AttributeError, OSError):
        return False


def tree_rss_kib(pid: int) -> int:
    """Resident memory of *pid* and its children, from /proc, in KiB."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        pending.extend(int(child) for child in children)
    return total


async def wait_for_handshake(port: int, path: str, deadline: float) -> None:
    while True:
        try:
            async with connect(f"ws://127.0.0.1:{port}{path}", open_timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.002)


def start_once(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int]:
    """Seconds from spawn to the first handshake, and idle memory in KiB."""
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        asyncio.run(wait_for_handshake(port, "/ws", started + 30))
        elapsed = time.monotonic() - started
        time.sleep(1)
        return elapsed, tree_rss_kib(process.pid)
    finally:
        os.killpg(process.pid, 15)  # by process group id, never by name
        process.wait(timeout=20)


def measure(label: str, command: list[str], file: Path, env: dict[str, str], cwd: Path) -> None:
    dropped = drop_page_cache(file)
    cold, cold_rss = start_once(command, env, cwd)
    warm = [start_once(command, env, cwd) for _ in range(WARM_RUNS)]
    times = [t for t, _ in warm]
    rss = statistics.median(r for _, r in warm)
    print(
        f"{label:<24} cold {cold * 1000:7.0f} ms{'' if dropped else ' (page cache not dropped)'}"
        f"   warm median {statistics.median(times) * 1000:6.0f} ms (min {min(times) * 1000:.0f})"
        f"   idle memory {rss / 1024:6.1f} MiB (cold run {cold_rss / 1024:.1f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("executable", nargs="?", type=Path, default=default_executable())
    parser.add_argument("--reference", type=Path, help="run.sh of the reference Bun server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        home = Path(work) / "app"
        home.mkdir()
        binary = home / args.executable.name
        shutil.copy2(args.executable, binary)
        size = binary.stat().st_size
        print(
            f"executable               {binary.name}: {size / 1024 / 1024:.1f} MiB ({size} bytes)"
        )
        env = {k: v for k, v in os.environ.items() if k != "CACHE_DIR"}
        measure("objstore executable", [str(binary)], binary, env, Path(work))
        measure(
            "objstore from source",
            [sys.executable, "-m", "objstore"],
            binary,
            {**env, "PYTHONPATH": str(ROOT)},
            Path(work),
        )
        if args.reference:
            ref_env = {**env, "QUIET": "1", "CACHE_DIR": str(Path(work) / "ref-cache")}
            reference = args.reference.resolve()  # the servers start in a temporary folder
            measure("reference (Bun)", ["sh", str(reference)], reference, ref_env, Path(work))


if __name__ == "__main__":
    main()
