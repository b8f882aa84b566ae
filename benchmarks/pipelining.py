"""Server memory under pipelined HTTP requests whose answers are never read.

    python benchmarks/pipelining.py [--requests 20000] [--path /test] [--wait 12]

Starts objstore (``python -m objstore``, from this checkout; set OBJSTORE_LOOP=asyncio
for the standard loop) on a free port of 127.0.0.1, opens one connection with a small
receive buffer, sends the requests at once and never reads. Prints the server's
resident memory (VmRSS from /proc) before, its peak during the first seconds, and
after --wait seconds (past the HTTP timeout of 10 s), and whether the server had
closed the connection by then. Linux only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--requests", type=int, default=20_000)
    options.add_argument("--path", default="/test")
    options.add_argument("--wait", type=float, default=12.0)
    args = options.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        server = subprocess.Popen(
            [sys.executable, "-m", "objstore", "--port", str(port), "--cache-dir", folder],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            time.sleep(0.5)
            before = rss_mib(server.pid)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            data = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() * args.requests
            sent = 0
            peak = before
            started = time.monotonic()
            while time.monotonic() - started < 3:
                if sent < len(data):
                    with contextlib.suppress(BlockingIOError):
                        sent += sock.send(data[sent : sent + 65536])
                peak = max(peak, rss_mib(server.pid))
                time.sleep(0.01)
            time.sleep(max(0.0, args.wait - (time.monotonic() - started)))
            after = rss_mib(server.pid)
            closed = False
            try:  # what is left of the answers, then the end (or a reset)
                while not closed:
                    closed = sock.recv(65536) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed = True
            sock.close()
            print(
                f"loop={os.environ.get('OBJSTORE_LOOP', 'default')} requests={args.requests} "
                f"sent={sent / len(data):.0%} rss_before={before:.1f}MiB peak={peak:.1f}MiB "
                f"growth={peak - before:.1f}MiB after_{args.wait:g}s={after:.1f}MiB "
                f"closed_by_server={closed}"
            )
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
