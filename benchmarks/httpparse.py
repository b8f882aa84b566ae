"""Microbenchmark of HTTP/1.1 request parsers: objstore's own, httptools (llhttp) and h11.

    python benchmarks/httpparse.py [--seconds 1.0]

Each parser reads requests from one kept-alive connection, one request per received
chunk (what a client that waits for each answer sends), and turns each into what the
router needs: method, target, a dictionary of lowercase header names, and the body.
Requests per second, best of three runs, for:

* ``GET``: the head wrk sends for ``GET /get/k`` (the same head every time);
* ``GET distinct``: a different key each time (no parsed head can be reused);
* ``POST /set``: a curl-like head with a 40-byte JSON body.

h11 must be told that each answer was sent before it reads the next request, so its
figure includes sending a minimal response (h11 has no parse-only mode). httptools and
h11 are optional: a parser that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from objstore.http11 import RequestReader

Parsed = tuple[str, str, dict[str, str], bytes]

GET = b"GET /get/k HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n"
BODY = b'{"key": "counter", "value": [1, 2, 3, 4]}'
POST = (
    b"POST /set HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(BODY), BODY)
)


def distinct_gets(n: int) -> list[bytes]:
    return [b"GET /get/key%d HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\r\n" % i for i in range(n)]


def objstore_parser() -> Callable[[bytes], Parsed]:
    reader = RequestReader(16 * 1024 * 1024)

    def parse(data: bytes) -> Parsed:
        reader.feed(data)
        request = reader.next_request()
        assert request is not None
        return request.method, request.target, request.headers, request.body

    return parse


def httptools_parser() -> Callable[[bytes], Parsed]:
    import httptools

    class Protocol:
        def __init__(self) -> None:
            self.url = b""
            self.headers: dict[str, str] = {}
            self.body = b""
            self.done: list[Parsed] = []

        def on_message_begin(self) -> None:
            self.headers = {}
            self.body = b""

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            self.done.append(
                (parser.get_method().decode(), self.url.decode(), self.headers, self.body)
            )

    protocol = Protocol()
    parser = httptools.HttpRequestParser(protocol)

    def parse(data: bytes) -> Parsed:
        parser.feed_data(data)
        return protocol.done.pop()

    return parse


def h11_parser() -> Callable[[bytes], Parsed]:
    import h11

    connection = h11.Connection(h11.SERVER)
    response = h11.Response(status_code=200, headers=[("Content-Length", "0")])
    end = h11.EndOfMessage()

    def parse(data: bytes) -> Parsed:
        connection.receive_data(data)
        request = connection.next_event()
        assert isinstance(request, h11.Request)
        body = b""
        while True:
            event = connection.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        headers = {name.decode(): value.decode("latin-1") for name, value in request.headers}
        connection.send(response)
        connection.send(end)
        connection.start_next_cycle()
        return request.method.decode(), request.target.decode(), headers, body

    return parse


PARSERS: dict[str, Callable[[], Callable[[bytes], Parsed]]] = {
    "objstore": objstore_parser,
    "httptools": httptools_parser,
    "h11": h11_parser,
}


def rate(
    make: Callable[[], Callable[[bytes], Parsed]], chunks: list[bytes], seconds: float
) -> float:
    best = 0.0
    for _ in range(3):
        parse = make()
        count = 0
        started = time.perf_counter()
        deadline = started + seconds
        while (now := time.perf_counter()) < deadline:
            for chunk in chunks:
                parse(chunk)
            count += len(chunks)
        best = max(best, count / (now - started))
    return best


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--seconds", type=float, default=1.0)
    args = options.parse_args()
    cases: dict[str, list[bytes]] = {
        "GET": [GET] * 100,
        "GET distinct": distinct_gets(1000),
        "POST /set": [POST] * 100,
    }
    print("| parser | " + " | ".join(f"{case} (requests/s)" for case in cases) + " |")
    print("| --- |" + " --- |" * len(cases))
    for name, make in PARSERS.items():
        try:
            make()
        except ImportError:
            print(f"| {name} | not installed |")
            continue
        figures: list[Any] = [
            f"{rate(make, chunks, args.seconds):,.0f}" for chunks in cases.values()
        ]
        print(f"| {name} | " + " | ".join(figures) + " |")


if __name__ == "__main__":
    main()
