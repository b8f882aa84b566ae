"""Who is online: each copy puts itself under ``online/`` and prints the list as it changes.

    python examples/presence.py --name alice

``online/alice`` is an ephemeral key: it lives as long as this program's connection.
Stop the program (Ctrl+C, kill -9, a pulled cable) and every other copy sees alice
leave, without anyone deleting anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

import objstore.client


async def main(url: str, name: str, seconds: float | None) -> None:
    async with objstore.client.connect(url) as store:
        online: set[str] = set()
        shown: list[str] | None = None
        ready = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                async for change in store.watch(prefix="online/"):
                    if change.kind == "reset":  # resumed too late: the whole list follows
                        online.clear()
                    elif change.kind == "ready":  # the end of a (re)subscription's snapshot
                        ready = True
                        if name not in online:  # first start, or a reconnection ended our key
                            since = {"since": time.time()}
                            await store.set(f"online/{name}", since, ephemeral=True)
                    elif change.key is not None:  # an update: someone came or went
                        who = change.key.removeprefix("online/")
                        if change.deleted:
                            online.discard(who)
                        else:
                            online.add(who)
                    if ready and name in online and sorted(online) != shown:
                        shown = sorted(online)
                        print("online:", ", ".join(shown), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:3000/ws", help="the store's WebSocket")
    parser.add_argument("--name", required=True, help="who you are, e.g. alice")
    parser.add_argument("--seconds", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    try:
        asyncio.run(main(args.url, args.name, args.seconds))
    except KeyboardInterrupt:
        pass
    except objstore.client.ObjstoreError as error:  # e.g. no server there: one line, no traceback
        sys.exit(f"error: {error}")
