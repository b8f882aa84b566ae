"""The console with access control, in headless Chromium against the real program:
a token entered in the page, kept in the tab only, sent in an auth message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from websockets.sync.client import connect

from .test_console_browser import ARTIFACTS, Server

DISPLAY = "display-token-0123456789"
ADMIN = "admin-token-0123456789ab"
RULES = f"""
[tokens.display]
token = "{DISPLAY}"
read = ["scores/"]

[tokens.admin]
token = "{ADMIN}"
read = [""]
write = [""]
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    rules = tmp_path / "perms.toml"
    rules.write_text(RULES)
    server = Server(tmp_path / "cache", "--auth", str(rules))
    server.start()
    with connect(
        f"ws://127.0.0.1:{server.port}/ws", additional_headers={"Authorization": f"Bearer {ADMIN}"}
    ) as ws:
        for key, value in {"scores/a": 1, "scores/b": 2, "secret/s": "shh"}.items():
            ws.send(json.dumps({"action": "set", "key": key, "value": value, "id": key}))
            assert json.loads(ws.recv(timeout=5))["ok"] is True
    yield server
    server.stop()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{server.url}/test")
    expect(page.locator("#status")).to_have_text("connected")
    yield page
    context.close()


def visible_keys(page: Page) -> list[str]:
    rows = page.locator("#browse-viewport .krow:not([hidden])")
    return [rows.nth(i).get_attribute("data-key") or "" for i in range(rows.count())]


def test_without_a_token_the_page_says_listing_needs_one(page: Page) -> None:
    expect(page.locator("#browse-count")).to_have_text("not allowed to list keys")
    expect(page.locator("#log .error").last).to_contain_text(
        "listing keys is not allowed without a token"
    )


def test_a_token_entered_lists_what_it_may_read_and_refuses_the_rest(
    page: Page, server: Server
) -> None:
    page.fill("#token", DISPLAY)
    page.click("#token-use")
    expect(page.locator("#status")).to_have_text("connected")
    expect(page.locator("#browse-count")).to_have_text("2 keys")
    assert visible_keys(page) == ["scores/a", "scores/b"]
    # The token is in the tab's session storage, not in the address.
    assert DISPLAY not in page.url
    assert page.evaluate("sessionStorage.getItem('objstore.token')") == DISPLAY
    # A write it may not make is refused, and the page says so.
    page.fill("#key", "scores/a")
    page.fill("#value", "5")
    page.click("#set")
    expect(page.locator("#log .error").last).to_contain_text(
        'forbidden: token "display" may not do this: writing key "scores/a"'
    )
    with connect(
        f"ws://127.0.0.1:{server.port}/ws", additional_headers={"Authorization": f"Bearer {ADMIN}"}
    ) as ws:
        ws.send(json.dumps({"action": "get", "key": "scores/a"}))
        assert json.loads(ws.recv(timeout=5))["value"] == 1
    # The snippets show where a token goes, never the token.
    snippets = (
        page.locator("#snippet-js").inner_text() + page.locator("#snippet-curl").inner_text()
    )
    assert "YOUR_TOKEN" in snippets
    assert DISPLAY not in snippets
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-token.png"))


def test_an_unknown_token_is_refused_and_not_retried(page: Page) -> None:
    page.fill("#token", "not-a-known-token-000000")
    page.click("#token-use")
    expect(page.locator("#status")).to_have_text("token refused")
    expect(page.locator("#log .error").last).to_contain_text("the server refuses this token")
