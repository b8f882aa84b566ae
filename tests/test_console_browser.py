"""The /test console in a real browser: headless Chromium driven by Playwright.

The browser is Debian's ``chromium`` (``.ci/run`` installs it when missing), or
Chrome; nothing here downloads one. Without a browser these tests skip, except
where OBJSTORE_REQUIRE_BROWSER=1 (``.ci/run`` sets it), where they fail. The
server runs as ``python -m objstore``, as a user runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from websockets.sync.client import connect

from .helpers import free_port, tls_files

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
BROWSER_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "no Chromium on this machine (apt-get install chromium)"
    if os.environ.get("OBJSTORE_REQUIRE_BROWSER") == "1":
        pytest.fail(message + "; OBJSTORE_REQUIRE_BROWSER=1 requires the browser tests")
    pytest.skip(message)


class Server:
    """``python -m objstore`` on a fixed port, so that it can be restarted on the same one."""

    def __init__(self, cache_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.cache_dir = cache_dir
        self.args = args
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "objstore", "--port", str(self.port), *self.args],
            env={**env, "CACHE_DIR": str(self.cache_dir)},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("Press Ctrl+C"):
                return
        raise AssertionError("the server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # by process id
            self.process.wait(timeout=20)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, key: str, value: object) -> None:
        with connect(f"ws://127.0.0.1:{self.port}/ws") as ws:
            ws.send(json.dumps({"action": "set", "key": key, "value": value}))
            ws.send(json.dumps({"action": "get", "key": key}))
            ws.recv(timeout=5)

    def get(self, key: str) -> object:
        with connect(f"ws://127.0.0.1:{self.port}/ws") as ws:
            ws.send(json.dumps({"action": "get", "key": key}))
            return json.loads(ws.recv(timeout=5))["value"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "cache")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{server.url}/test")
    expect(page.locator("#status")).to_have_text("connected")
    yield page
    context.close()


def subscribe(page: Page, key: str) -> Locator:
    page.fill("#key", key)
    page.click("#subscribe")
    row = page.locator(f'#subscriptions tr[data-key="{key}"]')
    expect(row).to_have_count(1)
    return row


def test_page_connects_to_its_own_server(page: Page, server: Server) -> None:
    """The page connects to the server it came from and says so."""
    expect(page.locator("#status")).to_have_attribute("data-state", "open")
    expect(page.locator("#ws-url")).to_have_text(f"ws://127.0.0.1:{server.port}/ws")


def test_set_from_the_page_shows_in_its_subscription(page: Page) -> None:
    """Subscribe, then set a value from the page: the table shows it."""
    row = subscribe(page, "demo")
    page.fill("#value", '{"level": 3, "name": "Zoë"}')
    page.click("#set")
    expect(row.locator(".value")).to_contain_text('"level": 3')
    expect(row.locator(".value")).to_contain_text('"name": "Zoë"')


def test_set_from_another_client_updates_the_page(page: Page, server: Server) -> None:
    """A value set by another WebSocket client appears in the page's table."""
    row = subscribe(page, "live")
    server.set("live", {"x": 42})
    expect(row.locator(".value")).to_contain_text('"x": 42')
    expect(page.locator("#log .received").last).to_contain_text('"x":42')


def test_invalid_json_is_refused_before_sending(page: Page, server: Server) -> None:
    """Invalid JSON is flagged as it is typed, set is disabled, and nothing is sent."""
    page.fill("#key", "never")
    page.fill("#value", '{"oops": }')
    expect(page.locator("#value-error")).to_contain_text("Invalid JSON")
    expect(page.locator("#value")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#set")).to_be_disabled()
    page.fill("#value", '{"fixed": true}')
    expect(page.locator("#value-error")).to_have_text("")
    expect(page.locator("#set")).to_be_enabled()
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send(json.dumps({"action": "get", "key": "never"}))
        assert json.loads(ws.recv(timeout=5)) == {"key": "never", "value": None}


def test_get_once_shows_the_value(page: Page, server: Server) -> None:
    """Get shows the current value without subscribing."""
    server.set("score", [1, 2, 3])
    page.fill("#key", "score")
    page.click("#get")
    expect(page.locator("#get-result")).to_contain_text("1")
    assert json.loads(page.inner_text("#get-result")) == [1, 2, 3]
    expect(page.locator('#subscriptions tr[data-key="score"]')).to_have_count(0)


def test_reconnects_and_resubscribes_after_a_restart(page: Page, server: Server) -> None:
    """When the server restarts, the page reconnects and its subscriptions still work."""
    row = subscribe(page, "persisted")
    server.stop()
    expect(page.locator("#status")).not_to_have_text("connected")
    server.start()
    expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
    time.sleep(0.3)  # let the page resubscribe
    server.set("persisted", "after restart")
    expect(row.locator(".value")).to_contain_text("after restart")


def test_screenshot_of_a_known_state(page: Page, server: Server) -> None:
    """Saves test-artifacts/console.png: two subscriptions with values, a get, a log."""
    for key, value in (("player-position", {"x": 100, "y": 200}), ("score", 42)):
        server.set(key, value)
        row = subscribe(page, key)
        expect(row.locator(".value")).not_to_contain_text("no value yet")
    page.fill("#key", "score")
    page.click("#get")
    expect(page.locator("#get-result")).to_contain_text("42")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "console-phone.png"), full_page=True)
    assert (ARTIFACTS / "console.png").stat().st_size > 10_000


# -- pages of other websites -----------------------------------------------------------

#: A page of another site (another port of 127.0.0.1) that tries the store three ways:
#: a WebSocket set, a JSON POST (preflighted) and a text/plain POST (sent without one).
OTHER_SITE_PAGE = """<!doctype html><meta charset="utf-8"><title>another site</title><script>
const store = "127.0.0.1:" + new URLSearchParams(location.search).get("port");
const results = {};
const post = (key, type, mode) => fetch("http://" + store + "/set", {
  method: "POST", mode, headers: {"Content-Type": type},
  body: JSON.stringify({key, value: key}),
}).then(async (r) => r.type === "opaque" ? "sent" : r.status + " " + await r.text(),
        (e) => "failed " + e.name);
new Promise((resolve) => {
  const ws = new WebSocket("ws://" + store + "/ws");
  ws.onopen = () => {
    ws.send(JSON.stringify({action: "set", key: "ws", value: "ws"}));
    ws.send(JSON.stringify({action: "get", key: "ws"}));
  };
  ws.onmessage = (event) => { resolve("got " + event.data); ws.close(); };
  ws.onclose = (event) => resolve("closed " + event.code);
}).then(async (ws) => {
  results.ws = ws;
  results.json = await post("json", "application/json");
  results.text = await post("text", "text/plain", "no-cors");
  window.results = results;
});
</script>"""


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[str]:
    """A page served by Python's http.server on another port of 127.0.0.1; its URL."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "index.html").write_text(OTHER_SITE_PAGE)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()  # by process id
        process.wait(timeout=10)


def visit(browser: Browser, url: str) -> dict[str, str]:
    """Open *url* and return what its script found."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("window.results !== undefined", timeout=15_000)
        results: dict[str, str] = page.evaluate("window.results")
        return results
    finally:
        context.close()


def test_other_site_is_refused_by_default(
    browser: Browser, server: Server, other_site: str
) -> None:
    """A page on another port can neither open a WebSocket nor POST /set, and stores nothing."""
    results = visit(browser, f"{other_site}/?port={server.port}")
    assert results == {"ws": "closed 1006", "json": "failed TypeError", "text": "sent"}
    assert [server.get(key) for key in ("ws", "json", "text")] == [None, None, None]


def test_allowed_site_uses_the_store(browser: Browser, tmp_path: Path, other_site: str) -> None:
    """With --allow-origin, that page opens a WebSocket and POSTs JSON; text/plain is 415."""
    server = Server(tmp_path / "cache", "--allow-origin", other_site)
    server.start()
    try:
        results = visit(browser, f"{other_site}/?port={server.port}")
        assert results == {
            "ws": 'got {"key":"ws","value":"ws"}',
            "json": '200 {"key":"json","value":"json"}',
            "text": "sent",
        }
        assert [server.get(key) for key in ("ws", "json", "text")] == ["ws", "json", None]
    finally:
        server.stop()


def test_refused_console_says_why(browser: Browser, tmp_path: Path) -> None:
    """A console opened by a name the server does not allow logs the server's reason.

    A second browser resolves ``my-pc.test`` to 127.0.0.1, as a LAN name resolves
    to the machine; the server accepts that Host (an allowed origin names it) but
    not the console's origin, which has another port.
    """
    server = Server(tmp_path / "cache", "--allow-origin", "http://my-pc.test:1")
    server.start()
    resolving = browser.browser_type.launch(
        executable_path=find_chromium(),
        args=[*BROWSER_FLAGS, "--host-resolver-rules=MAP my-pc.test 127.0.0.1"],
    )
    try:
        page = resolving.new_page()
        page.goto(f"http://my-pc.test:{server.port}/test")
        expect(page.locator("#log .error .text")).to_have_text(
            f"the server refuses this page: origin http://my-pc.test:{server.port} is not "
            f"allowed; start objstore with --allow-origin http://my-pc.test:{server.port} "
            "to allow it",
            timeout=10_000,
        )
        expect(page.locator("#status")).not_to_have_text("connected")
    finally:
        resolving.close()
        server.stop()


def test_console_over_https_uses_wss(browser: Browser, tmp_path: Path) -> None:
    """Served with TLS, the page (and its /client.js) connects over wss:// and sets a value."""
    tls = tls_files(tmp_path / "tls")
    server = Server(tmp_path / "cache", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
    server.start()
    # The test CA is not the browser's: its errors are ignored, as a user would accept it.
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"https://localhost:{server.port}/test")
        expect(page.locator("#status")).to_have_text("connected")
        expect(page.locator("#ws-url")).to_have_text(f"wss://localhost:{server.port}/ws")
        row = subscribe(page, "secure")
        page.fill("#value", '{"over": "tls"}')
        page.click("#set")
        expect(row.locator(".value")).to_contain_text('"over": "tls"')
    finally:
        context.close()
        server.stop()
