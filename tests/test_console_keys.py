"""The console's key browser and editor in a real browser: headless Chromium, a real server.

The browser lists every key of the store live (a prefix watch of ``""``), filters by
prefix and renders only the rows in view; the editor sets, patches and deletes, with a
TTL, as ephemeral, or compare-and-set. Other clients here are raw WebSocket clients
speaking protocol 2. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from websockets.sync.client import ClientConnection, connect

from .test_console_browser import ARTIFACTS, Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "cache")
    server.start()
    yield server
    server.stop()


class Other:
    """Another client of the store: protocol 2 requests with ids, one at a time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 0

    def request(self, **message: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({**message, "id": self.next_id}))
        while True:
            reply: dict[str, Any] = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == self.next_id:
                return reply

    def fill(self, count: int, key: str = "k/{:05d}") -> None:
        """Set *count* keys, a thousand per batch."""
        for start in range(0, count, 1000):
            ops = [
                {"action": "set", "key": key.format(i), "value": {"n": i}}
                for i in range(start, min(count, start + 1000))
            ]
            assert self.request(action="batch", ops=ops)["ok"] is True


@pytest.fixture
def other(server: Server) -> Iterator[Other]:
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        yield Other(ws)


def open_console(browser: Browser, server: Server, errors: list[str] | None = None) -> Page:
    """Open /test, wait until it lists the store; uncaught errors go to *errors*."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    if errors is not None:
        page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{server.url}/test")
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#browse-count")).not_to_contain_text("loading")
    return page


def assert_no_errors(errors: list[str]) -> None:
    assert errors == [], f"the page threw: {errors}"


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    errors: list[str] = []
    page = open_console(browser, server, errors)
    yield page
    page.context.close()
    assert_no_errors(errors)


def row(page: Page, key: str) -> Locator:
    return page.locator(f'#browse-viewport .krow[data-key="{key}"]:not([hidden])')


def select(page: Page, key: str) -> Locator:
    """Filter the browser down to *key* and select its row."""
    page.fill("#browse-filter", key)
    found = row(page, key)
    found.click()
    expect(page.locator("#key")).to_have_value(key)
    return found


def test_lists_and_filters_ten_thousand_keys(
    browser: Browser, server: Server, other: Other
) -> None:
    """10,000 keys are all listed, a prefix filter narrows them, and few rows are drawn."""
    other.fill(10_000)
    started = time.monotonic()
    page = open_console(browser, server)
    listed = time.monotonic() - started
    try:
        expect(page.locator("#browse-count")).to_have_text("10,000 keys")
        expect(page.locator("#browse-viewport .krow:not([hidden])").first).to_have_attribute(
            "data-key", "k/00000"
        )
        page.fill("#browse-filter", "k/001")
        expect(page.locator("#browse-count")).to_have_text("100 of 10,000 keys")
        expect(page.locator("#browse-viewport .krow:not([hidden])").first).to_have_attribute(
            "data-key", "k/00100"
        )
        expect(row(page, "k/00100").locator(".v")).to_have_text('{"n":100}')
        drawn = page.locator("#browse-viewport .krow").count()
        assert drawn < 40, f"{drawn} rows drawn for a 24rem list"
        page.locator("#browse-viewport").evaluate("(node) => { node.scrollTop = 1500; }")
        expect(page.locator("#browse-viewport .krow:not([hidden])").first).to_have_attribute(
            "data-key", "k/00150"
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "console-10000-keys.png"))
        print(f"10,000 keys listed {listed:.2f} s after the page was opened")
    finally:
        page.context.close()


def time_of_day(page: Page, ms: int) -> str:
    """*ms* since the epoch as the page shows a time of today, in the browser's zone."""
    shown: str = page.evaluate("(ms) => new Date(ms).toTimeString().slice(0, 8)", ms)
    return shown


def test_listed_rows_show_the_servers_time_of_change(
    browser: Browser, server: Server, other: Other
) -> None:
    """Keys listed from the snapshot get their time of last change from the server,
    asked only for the rows in view, also after scrolling."""
    other.fill(300)
    listed = other.request(action="keys", details=True, prefix="k/", limit=300)["keys"]
    changed = {entry["key"]: entry["changed"] for entry in listed}
    page = open_console(browser, server)
    try:
        expect(row(page, "k/00000").locator(".t")).to_have_text(
            time_of_day(page, changed["k/00000"])
        )
        page.locator("#browse-viewport").evaluate("(node) => { node.scrollTop = 250 * 30; }")
        # The rows are drawn again on the next frame after the scroll: wait for it.
        first_key = page.wait_for_function(
            """() => {
                const first = document.querySelector("#browse-viewport .krow:not([hidden])");
                const key = first && first.getAttribute("data-key");
                return key && key > "k/00200" ? key : null;
            }"""
        ).json_value()
        key = str(first_key)
        expect(row(page, key).locator(".t")).to_have_text(time_of_day(page, changed[key]))
    finally:
        page.context.close()


def test_arrow_keys_move_the_selection(page: Page, other: Other) -> None:
    """Down and Up in the list select the next and previous rows and load them."""
    for key in ("a", "b", "c"):
        other.request(action="set", key=key, value=key)
    expect(page.locator("#browse-count")).to_have_text("3 keys")
    page.focus("#browse-viewport")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#key")).to_have_value("a")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#key")).to_have_value("c")
    expect(row(page, "c")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#key")).to_have_value("b")
    expect(page.locator("#value")).to_have_value('"b"')


def test_change_by_another_client_updates_its_row(page: Page, other: Other) -> None:
    """A key set by another client appears in the browser, then its row follows its changes."""
    other.request(action="set", key="live", value={"x": 1})
    found = row(page, "live")
    expect(found.locator(".v")).to_have_text('{"x":1}')
    rev = other.request(action="set", key="live", value={"x": 42})["rev"]
    expect(found.locator(".v")).to_have_text('{"x":42}')
    expect(found.locator(".r")).to_have_text(str(rev))
    expect(found.locator(".t")).to_have_text(re.compile(r"^\d\d:\d\d:\d\d$"))
    expect(page.locator("#browse-count")).to_have_text("1 key")


def test_delete_asks_for_confirmation_then_removes_the_row(
    page: Page, server: Server, other: Other
) -> None:
    """Delete asks first; Cancel keeps the key, Delete removes it and its row."""
    other.request(action="set", key="doomed", value=1)
    select(page, "doomed")
    page.click("#delete")
    expect(page.locator("#delete-question")).to_contain_text('Delete "doomed"?')
    page.click("#delete-no")
    expect(page.locator("#delete-confirm")).to_be_hidden()
    assert server.get("doomed") == 1
    page.click("#delete")
    page.click("#delete-yes")
    expect(page.locator("#write-result")).to_have_text('Deleted "doomed".')
    expect(row(page, "doomed")).to_have_count(0)
    assert server.get("doomed") is None


def test_delete_by_another_client_removes_the_row(page: Page, other: Other) -> None:
    """A key deleted by another client leaves the browser."""
    other.request(action="set", key="a", value=1)
    other.request(action="set", key="b", value=2)
    expect(page.locator("#browse-count")).to_have_text("2 keys")
    other.request(action="delete", key="a")
    expect(row(page, "a")).to_have_count(0)
    expect(page.locator("#browse-count")).to_have_text("1 key")
    expect(row(page, "b")).to_have_count(1)


def test_expiry_removes_the_row(page: Page, other: Other) -> None:
    """A key that expires leaves the browser, and the log says it expired."""
    other.request(action="set", key="brief", value="soon gone", ttl=0.5)
    expect(row(page, "brief")).to_have_count(1)
    expect(row(page, "brief")).to_have_count(0, timeout=5_000)
    expect(page.locator("#log .received").last).to_contain_text('"expired":true')


def test_set_with_ttl_counts_down_and_expires(page: Page, server: Server) -> None:
    """A set with a TTL from the console shows its countdown, then the row goes."""
    page.fill("#key", "timer")
    page.fill("#value", '"tick"')
    page.fill("#ttl", "3")
    page.click("#set")
    expect(page.locator("#write-result")).to_contain_text("expires in 3 s")
    expect(row(page, "timer").locator(".ttl")).to_have_text("3s")
    expect(row(page, "timer").locator(".ttl")).to_have_text("1s", timeout=5_000)
    expect(row(page, "timer")).to_have_count(0, timeout=5_000)
    assert server.get("timer") is None


def test_ephemeral_set_shows_a_badge(page: Page, server: Server) -> None:
    """An ephemeral set from the console is badged, and a later plain set drops the badge."""
    page.fill("#key", "online/me")
    page.fill("#value", "true")
    page.check("#ephemeral")
    page.click("#set")
    expect(row(page, "online/me").locator(".badge")).to_have_text("ephemeral")
    server.set("online/me", "kept")
    expect(row(page, "online/me").locator(".v")).to_have_text('"kept"')
    expect(row(page, "online/me").locator(".badge")).to_have_count(0)


def test_patch_merges_into_the_value(page: Page, server: Server, other: Other) -> None:
    """Patch merges the editor's object into the stored value and shows the result."""
    other.request(action="set", key="doc", value={"a": 1, "b": 2})
    select(page, "doc")
    page.fill("#value", '{"b": null, "c": 3}')
    page.click("#patch")
    expect(page.locator("#write-result")).to_contain_text('Patched "doc"')
    assert json.loads(page.input_value("#value")) == {"a": 1, "c": 3}
    assert server.get("doc") == {"a": 1, "c": 3}


def test_compare_and_set_shows_the_conflict(page: Page, server: Server, other: Other) -> None:
    """A compare-and-set after another client's change is refused and shows their value."""
    loaded = other.request(action="set", key="score", value=1)["rev"]
    select(page, "score")
    expect(page.locator("#cas-rev")).to_have_text(str(loaded))
    theirs = other.request(action="set", key="score", value=2)["rev"]
    page.check("#cas")
    page.fill("#value", "100")
    page.click("#set")
    expect(page.locator("#conflict")).to_be_visible()
    expect(page.locator("#conflict-text")).to_contain_text(
        f'"score" is at revision {theirs}, not {loaded}'
    )
    expect(page.locator("#conflict-value")).to_have_text("2")
    assert server.get("score") == 2
    page.click("#conflict-load")
    expect(page.locator("#value")).to_have_value("2")
    expect(page.locator("#cas-rev")).to_have_text(str(theirs))
    page.fill("#value", "100")
    page.click("#set")
    expect(page.locator("#write-result")).to_contain_text('Set "score" at revision')
    assert server.get("score") == 100


def test_prefix_watch_shows_changes_under_it(page: Page, other: Other) -> None:
    """Watch prefix adds a row that shows each change of a key under the prefix."""
    page.fill("#key", "player/")
    page.click("#watch-prefix")
    watch = page.locator('#subscriptions tr[data-prefix="player/"]')
    expect(watch).to_have_count(1)
    time.sleep(0.3)  # let the watch subscribe
    other.request(action="set", key="player/ann", value={"x": 4})
    other.request(action="set", key="elsewhere", value=0)
    expect(watch.locator(".value")).to_contain_text('player/ann = {"x":4}')
    other.request(action="delete", key="player/ann")
    expect(watch.locator(".value")).to_contain_text("player/ann = (deleted)")


def test_snippets_follow_the_selection(page: Page, server: Server, other: Other) -> None:
    """Selecting a key shows client and curl code for it, a prefix watch for the prefix."""
    other.request(action="set", key="cfg/x", value=1)
    select(page, "cfg/x")
    expect(page.locator("#snippet-js")).to_contain_text(f'from "{server.url}/client.js"')
    expect(page.locator("#snippet-js")).to_contain_text('store.watch({ key: "cfg/x" })')
    expect(page.locator("#snippet-python")).to_contain_text("store.watch(key=KEY)")
    expect(page.locator("#snippet-curl")).to_contain_text(
        f"curl -X PUT '{server.url}/keys/cfg%2Fx'"
    )
    expect(page.locator("#snippet-curl")).to_contain_text(
        f"curl -N '{server.url}/events?key=cfg%2Fx'"
    )
    page.fill("#key", "cfg/")
    page.click("#watch-prefix")
    expect(page.locator("#snippet-target")).to_have_text('the prefix "cfg/"')
    expect(page.locator("#snippet-curl")).to_contain_text(
        f"curl -N '{server.url}/events?prefix=cfg%2F'"
    )


def test_reconnect_after_a_restart_resumes(page: Page, server: Server) -> None:
    """After a clean restart the key list resumes from its revision (no reload) and stays live."""
    server.set("kept", 1)
    server.set("other", 2)
    expect(page.locator("#browse-count")).to_have_text("2 keys")
    server.stop()
    expect(page.locator("#status")).not_to_have_text("connected")
    expect(page.locator("#log .info").last).to_contain_text("disconnected; reconnecting")
    server.start()
    expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
    expect(page.locator("#resume-note")).to_contain_text("resumed at revision")
    expect(page.locator("#browse-count")).to_have_text("2 keys")
    server.set("kept", "after restart")
    expect(row(page, "kept").locator(".v")).to_have_text('"after restart"')


def test_reconnect_after_a_crash_reloads_and_says_so(
    page: Page, server: Server, other: Other
) -> None:
    """After kill -9 the server cannot resume the list: the page reloads every key and says so."""
    other.request(action="set", key="kept", value=1)
    other.request(action="set", key="gone", value=2)
    expect(page.locator("#browse-count")).to_have_text("2 keys")
    rev = int(row(page, "kept").locator(".r").inner_text())
    # Acknowledged from the journal; killed once the journal says the file holds it, so
    # that the restart takes the folder's word for the key.
    journal = server.cache_dir / ".objstore.journal"
    deadline = time.monotonic() + 10
    while b'{"k":"gone","file":true}' not in journal.read_bytes():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.process is not None
    server.process.kill()  # by process id
    server.process.wait(timeout=10)
    expect(page.locator("#status")).not_to_have_text("connected")
    (server.cache_dir / "gone.json").unlink()
    server.start()
    expect(page.locator("#status")).to_have_text("connected", timeout=20_000)
    expect(page.locator("#resume-note")).to_contain_text("reloaded 1 key at revision")
    expect(page.locator("#browse-count")).to_have_text("1 key")
    expect(row(page, "gone")).to_have_count(0)
    expect(row(page, "kept").locator(".r")).not_to_have_text(str(rev))
    # The new revision's time is not known, and the row says so rather than guess.
    expect(row(page, "kept").locator(".t")).to_have_text("—")
    expect(row(page, "kept").locator(".t")).to_have_attribute("title", re.compile("not known"))


def test_screenshot_of_the_key_browser(page: Page, server: Server, other: Other) -> None:
    """Saves test-artifacts/console-keys.png (and a phone-sized one): keys, a TTL, a badge."""
    for i, name in enumerate(("ann", "bob", "cy")):
        other.request(action="set", key=f"player/{name}", value={"x": i * 10, "y": i})
    other.request(action="set", key="score", value=42)
    page.fill("#key", "online/me")
    page.fill("#value", '{"since": 1700000000}')
    page.check("#ephemeral")
    page.click("#set")
    page.uncheck("#ephemeral")
    page.fill("#key", "session/abc")
    page.fill("#value", '"token"')
    page.fill("#ttl", "600")
    page.click("#set")
    expect(row(page, "session/abc").locator(".ttl")).to_contain_text("m")
    row(page, "player/bob").click()
    page.wait_for_timeout(1600)  # let the highlights fade
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-keys.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "console-keys-phone.png"), full_page=True)
    assert (ARTIFACTS / "console-keys.png").stat().st_size > 10_000


def test_another_clients_deadline_and_presence_show_in_the_browser(
    browser: Browser, server: Server, other: Other
) -> None:
    """A TTL and an ephemeral key set by another client, before and after the page opened,
    show their countdown and badge: the server tells them with the values."""
    other.request(action="set", key="early", value=1, ttl=120)
    errors: list[str] = []
    page = open_console(browser, server, errors)
    expect(row(page, "early").locator(".ttl")).to_have_text(re.compile(r"^(1m 5\d|2m 00)s$"))
    other.request(action="set", key="online/ann", value=True, ephemeral=True)
    expect(row(page, "online/ann").locator(".badge")).to_have_text("ephemeral")
    other.request(action="set", key="early", value=2)
    expect(row(page, "early").locator(".ttl")).to_have_text("")
    page.context.close()
    assert_no_errors(errors)
