"""A live counter, as on a dashboard: one program shows it, any other adds to it.

    python examples/counter.py                # shows hits, and every change of it
    python examples/counter.py --incr 1       # adds 1 (atomically) and prints the sum

Many programs may add at once: ``incr`` adds on the server, so no addition is lost.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import objstore.client


async def show(url: str, key: str, count: int | None) -> None:
    async with objstore.client.connect(url) as store:
        value, shown, printed = 0, None, 0
        async for change in store.watch(key=key):
            if change.kind == "update":
                value = 0 if change.deleted else change.value
            # Print at the end of the first snapshot (the key may have no value yet)
            # and at every change after it; never the same number twice in a row.
            if (shown is not None or change.kind == "ready") and value != shown:
                shown = value
                print(f"{key}: {value}", flush=True)
                printed += 1
                if printed == count:
                    return


async def add(url: str, key: str, by: float) -> None:
    async with objstore.client.connect(url) as store:
        print(f"{key}: {await store.incr(key, by=by)}", flush=True)


def number(text: str) -> float:
    """An integer stays an integer (and exact); anything else is a float."""
    try:
        return int(text)
    except ValueError:
        return float(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:3000/ws", help="the store's WebSocket")
    parser.add_argument("--key", default="hits", help="the counter's key (default: hits)")
    parser.add_argument("--incr", type=number, metavar="BY", help="add BY to it, then stop")
    parser.add_argument("--count", type=int, help="stop after showing this many values")
    args = parser.parse_args()
    try:
        if args.incr is None:
            asyncio.run(show(args.url, args.key, args.count))
        else:
            asyncio.run(add(args.url, args.key, args.incr))
    except KeyboardInterrupt:
        pass
    except objstore.client.ObjstoreError as error:  # e.g. no server there: one line, no traceback
        sys.exit(f"error: {error}")
