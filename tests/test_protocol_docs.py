"""docs/protocol.md and the README say what the code does: codes, actions, limits."""

from __future__ import annotations

import re
from pathlib import Path

from objstore import commands
from objstore.errors import ERROR_CODES
from objstore.keyspace import HISTORY_SIZE
from objstore.protocol import ACTIONS
from objstore.session import MAX_WAITING_BYTES, MAX_WAITING_REPLIES

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "docs" / "protocol.md").read_text()
README = (ROOT / "README.md").read_text()


def test_the_spec_lists_exactly_the_error_codes() -> None:
    """The table of codes in section 1.2 is the code's stable set, in order."""
    table = SPEC.split("### 1.2 Error codes", 1)[1].split("###", 1)[0]
    assert re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE) == list(ERROR_CODES)


def test_the_spec_and_the_readme_name_every_action() -> None:
    """Every action the parser accepts has a row in the spec's table of actions."""
    table = SPEC.split("### 1.3 Actions", 1)[1].split("##", 1)[0]
    documented = re.findall(r"^\| `([a-z]+)` \|", table, re.MULTILINE)
    assert sorted(documented) == sorted(ACTIONS)
    for code in ERROR_CODES:
        assert f"`{code}`" in README


def test_the_limits_written_down_are_the_limits() -> None:
    """The limits table of the spec quotes the constants of the code."""
    limits = SPEC.split("## 8. Limits", 1)[1]
    assert f"{commands.MAX_ID_BYTES} UTF-8 bytes" in limits
    assert f"{commands.MAX_BATCH_OPS:,}" in limits
    assert (
        f"{commands.DEFAULT_LIST_LIMIT} by default, {commands.MAX_LIST_LIMIT:,} at most" in limits
    )
    assert f"{commands.MAX_PREFIX_SUBSCRIPTIONS:,}" in limits
    assert f"{commands.MAX_TTL:,} s" in limits
    assert f"last {HISTORY_SIZE:,} changes" in limits
    assert f"{MAX_WAITING_REPLIES:,} replies or {MAX_WAITING_BYTES // 2**20} MiB" in limits


def test_the_readme_links_the_spec() -> None:
    """The README keeps the short version and points to the full one."""
    assert "(docs/protocol.md)" in README
    assert "Status: implemented" in SPEC
