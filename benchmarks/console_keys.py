"""The console's key browser with many keys: time to list them, and the page's longest stall.

    python benchmarks/console_keys.py [--keys 100000] [--rate 2000] [--seconds 5]

Starts ``python -m objstore`` on a free loopback port with an empty cache folder,
sets KEYS ephemeral keys from one connection (ephemeral, so that no disk is timed),
opens /test in headless Chromium and reports: the time from opening the page to the
browser listing every key; the time to filter them by a prefix; then, while another
client changes RATE keys a second for SECONDS, the longest task of the page's main
thread (a long task is what a user feels as a freeze) and whether the list kept up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
LONG_TASKS = """
window.longest = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.longest = Math.max(window.longest, entry.duration);
}).observe({ type: "longtask", buffered: true });
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fill(ws: ClientConnection, count: int) -> None:
    for start in range(0, count, 1000):
        ops = [
            {"action": "set", "key": f"k/{i:06d}", "value": {"n": i}, "ephemeral": True}
            for i in range(start, min(count, start + 1000))
        ]
        await ws.send(json.dumps({"action": "batch", "ops": ops, "id": start}))
        reply = json.loads(await ws.recv())
        assert reply.get("ok") is True, reply


async def own(url: str, count: int, filled: threading.Event, done: threading.Event) -> None:
    """Set the keys and hold them (they are ephemeral: they go when this connection does)."""
    async with connect(url, max_size=None) as ws:
        started = time.monotonic()
        await fill(ws, count)
        print(f"{count:,} keys set in {time.monotonic() - started:.2f} s")
        filled.set()
        await asyncio.to_thread(done.wait)


async def churn(url: str, count: int, rate: int, seconds: float) -> int:
    async with connect(url) as ws:
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for _ in range(rate // 20):
                key = f"k/{(sent * 7919) % count:06d}"
                await ws.send(json.dumps({"action": "set", "key": key, "value": {"n": sent}}))
                sent += 1
            await asyncio.sleep(0.05)
        return sent


def measure(chromium: str, port: int, args: argparse.Namespace) -> None:
    """Open the console on the filled store and print what it takes."""
    url = f"ws://127.0.0.1:{port}/ws"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.add_init_script(LONG_TASKS)
        started = time.monotonic()
        page.goto(f"http://127.0.0.1:{port}/test")
        page.wait_for_function(
            f"document.getElementById('browse-count').textContent === '{args.keys:,} keys'",
            timeout=120_000,
        )
        print(f"listed in {time.monotonic() - started:.2f} s after opening the page")
        print(f"longest task while listing: {page.evaluate('window.longest'):.0f} ms")
        page.evaluate("window.longest = 0")
        started = time.monotonic()
        page.fill("#browse-filter", "k/0123")
        page.wait_for_function(
            "document.getElementById('browse-count').textContent.startsWith('100 of')"
        )
        print(f"filtered by a prefix in {(time.monotonic() - started) * 1000:.0f} ms")
        page.fill("#browse-filter", "")
        page.evaluate("window.longest = 0")
        counts: list[int] = []
        changer = threading.Thread(
            target=lambda: counts.append(
                asyncio.run(churn(url, args.keys, args.rate, args.seconds))
            )
        )
        changer.start()
        while changer.is_alive():
            page.wait_for_timeout(100)  # keep Playwright's connection served
        sent = counts[0]
        ended = time.monotonic()
        last = f"k/{((sent - 1) * 7919) % args.keys:06d}"
        page.fill("#browse-filter", last)
        page.wait_for_function(
            f"document.querySelector('#browse-viewport .krow[data-key=\"{last}\"] .v')"
            f"?.textContent === '{{\"n\":{sent - 1}}}'",
            timeout=60_000,
        )
        print(
            f"{sent:,} changes at {args.rate:,}/s for {args.seconds:g} s: longest task "
            f"{page.evaluate('window.longest'):.0f} ms; the last change reached its row "
            f"{time.monotonic() - ended:.2f} s after it was sent"
        )
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    if chromium is None:
        sys.exit("no Chromium on this machine")
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    with tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CACHE_DIR": folder}
        server = subprocess.Popen(
            [sys.executable, "-m", "objstore", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            for line in server.stdout:
                if line.startswith("Press Ctrl+C"):
                    break
            filled, done = threading.Event(), threading.Event()
            owner = threading.Thread(target=lambda: asyncio.run(own(url, args.keys, filled, done)))
            owner.start()
            filled.wait(timeout=600)
            measure(chromium, port, args)
            done.set()
            owner.join()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
