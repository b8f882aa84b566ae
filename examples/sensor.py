"""A sensor that sends a reading every few seconds, each with a time to live.

    python examples/sensor.py --name kitchen --interval 2

Each reading replaces ``sensors/kitchen`` and lives ``--ttl`` seconds (three
intervals by default): while the sensor runs its key is always there, and once it
stops (unplugged, crashed) the key expires by itself and watchers are told
(``"expired": true``). The readings are made up: a temperature that drifts.
Watch them with ``curl -N 'http://localhost:3000/events?prefix=sensors/'``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

import objstore.client


async def main(url: str, name: str, interval: float, ttl: float, count: int | None) -> None:
    celsius = 20.0
    sent = 0
    async with objstore.client.connect(url) as store:
        while True:
            celsius += random.uniform(-0.5, 0.5)
            reading = {"celsius": round(celsius, 1), "at": round(time.time(), 3)}
            rev = await store.set(f"sensors/{name}", reading, ttl=ttl)
            print(f"sensors/{name}: {reading['celsius']} °C (revision {rev})", flush=True)
            sent += 1
            if sent == count:
                return
            await asyncio.sleep(interval)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:3000/ws", help="the store's WebSocket")
    parser.add_argument("--name", default="kitchen", help="the sensor's name (default: kitchen)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between readings")
    parser.add_argument("--ttl", type=float, help="seconds each reading lives (3 intervals)")
    parser.add_argument("--count", type=int, help="stop after sending this many readings")
    args = parser.parse_args()
    try:
        ttl = args.ttl if args.ttl is not None else 3 * args.interval
        asyncio.run(main(args.url, args.name, args.interval, ttl, args.count))
    except KeyboardInterrupt:
        pass
    except objstore.client.ObjstoreError as error:  # e.g. no server there: one line, no traceback
        sys.exit(f"error: {error}")
