"""``GET /events`` in a real browser: an ``EventSource`` of headless Chromium (Playwright).

The same browser and skip rules as tests/test_console_browser.py: Debian's
``chromium`` (or Chrome) by its path, nothing downloaded; without one the test
skips, unless OBJSTORE_REQUIRE_BROWSER=1. The server runs as ``python -m objstore``.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from playwright.sync_api import Browser, Request

from .test_console_browser import Server

#: Opens an EventSource of the prefix p/ on the page and keeps what it dispatches.
OPEN_EVENT_SOURCE = """() => {
  window.received = [];
  window.opened = 0;
  const source = new EventSource("/events?prefix=p/");
  for (const type of ["reset", "update", "ready"]) {
    source.addEventListener(type, (e) => window.received.push([type, e.data, e.lastEventId]));
  }
  source.onopen = () => { window.opened += 1; };
  window.source = source;
}"""


def rest(server: Server, method: str, key: str, value: object = None) -> int:
    """A REST write to *server*; its status."""
    body = None if value is None else json.dumps(value).encode()
    request = urllib.request.Request(f"{server.url}/keys/{key}", body, method=method)
    with urllib.request.urlopen(request, timeout=10) as answer:
        status: int = answer.status
        return status


def update(key: str, value: object, rev: int, **more: bool) -> list[str]:
    data = {"key": key, "value": value, "rev": rev, **more}
    return ["update", json.dumps(data, separators=(",", ":")), str(rev)]


def ready(rev: int) -> list[str]:
    return ["ready", f'{{"rev":{rev}}}', str(rev)]


def test_event_source_resumes_across_a_restart_without_a_reset(
    browser: Browser, tmp_path: Path
) -> None:
    """An EventSource gets the snapshot and live updates, and after a clean restart on the
    same port resumes by itself (Last-Event-ID) with only what changed while it was away."""
    cache = tmp_path / "cache"
    server = Server(cache)
    server.start()
    context = browser.new_context()
    try:
        rest(server, "PUT", "p/a", {"n": 1})
        rest(server, "PUT", "q/x", 0)
        page = context.new_page()
        page.set_default_timeout(15_000)
        requests: list[Request] = []
        page.on("request", lambda r: requests.append(r) if "/events" in r.url else None)
        page.goto(f"{server.url}/test")
        page.evaluate(OPEN_EVENT_SOURCE)
        page.wait_for_function("window.received.length === 2")
        rest(server, "PUT", "p/b", "live")
        page.wait_for_function("window.received.length === 3")
        assert page.evaluate("window.received") == [
            update("p/a", {"n": 1}, 1),
            ready(2),
            update("p/b", "live", 3),
        ]

        server.stop()
        page.wait_for_function("window.source.readyState === EventSource.CONNECTING")
        # Changes made while the page's server is away, by another server on the same
        # folder (and another port), so that they come before the page reconnects.
        away = Server(cache)
        away.start()
        try:
            rest(away, "PUT", "p/c", [3])
            assert rest(away, "DELETE", "p/a") == 204
            rest(away, "PUT", "q/y", 1)
        finally:
            away.stop()
        server.start()

        page.wait_for_function("window.received.length === 6", timeout=20_000)
        assert page.evaluate("window.received")[3:] == [
            update("p/c", [3], 4),
            update("p/a", None, 5, deleted=True),
            ready(6),
        ]
        assert page.evaluate("[window.opened, window.source.readyState]") == [2, 1]
        # The first request and the reconnection that was answered (those tried while
        # the server was down failed, and their headers are not all known).
        answered = [r for r in requests if r.failure is None]
        assert [r.all_headers().get("last-event-id") for r in answered] == [None, "3"]
    finally:
        context.close()
        server.stop()
