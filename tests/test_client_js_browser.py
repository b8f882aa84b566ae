"""The JavaScript client (``GET /client.js``) imported by a page in headless Chromium.

The same browser and skip rules as tests/test_console_browser.py: Debian's
``chromium`` (or Chrome) by its path, nothing downloaded; without one the test
skips, unless OBJSTORE_REQUIRE_BROWSER=1. The server runs as ``python -m objstore``.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Browser

from .test_console_browser import Server

#: Imports the client as a module, writes and reads a key, and watches p/ with for-await.
USE_CLIENT = """async () => {
  const { connect, ConflictError } = await import("/client.js");
  const store = await connect(`ws://${location.host}/ws`);
  window.store = store;
  const rev = await store.set("p/a", { n: 1 });
  const value = await store.get("p/a");
  let conflict = null;
  try {
    await store.set("p/a", 2, { ifRev: rev + 1 });
  } catch (error) {
    conflict = [error instanceof ConflictError, error.code, error.rev];
  }
  window.changes = [];
  (async () => {
    for await (const change of store.watch({ prefix: "p/" })) {
      window.changes.push([change.kind, change.key, change.value, change.rev]);
    }
  })();
  return { rev, value, conflict };
}"""


def test_page_imports_client_and_sets_gets_watches(browser: Browser, tmp_path: Path) -> None:
    """A page of the server imports /client.js; set, get, a conflict and a watch work."""
    server = Server(tmp_path / "cache")
    server.start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{server.url}/test")
        assert page.evaluate(USE_CLIENT) == {
            "rev": 1,
            "value": {"n": 1},
            "conflict": [True, "conflict", 1],
        }
        page.wait_for_function("window.changes.length === 2")
        server.set("p/b", "live")
        server.set("q/x", "elsewhere")
        server.set("p/c", "again")
        page.wait_for_function("window.changes.length === 4")
        assert page.evaluate("window.changes") == [
            ["update", "p/a", {"n": 1}, 1],
            ["ready", None, None, 1],
            ["update", "p/b", "live", 2],
            ["update", "p/c", "again", 4],
        ]
        page.evaluate("window.store.close()")
    finally:
        context.close()
        server.stop()
