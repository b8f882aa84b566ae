"""Every example of docs/client-python.md runs against a real server and prints what it shows."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).parent.parent / "docs" / "client-python.md"
EXAMPLE = re.compile(r"```python\n(.*?)```\n\n```text\n(.*?)```", re.DOTALL)
EXAMPLES = EXAMPLE.findall(DOC.read_text(encoding="utf-8"))


def test_the_doc_has_its_examples() -> None:
    """Every python block of the doc is followed by its output, and there are six."""
    assert len(EXAMPLES) == DOC.read_text(encoding="utf-8").count("```python") == 6


@pytest.mark.parametrize(("code", "output"), EXAMPLES, ids=range(len(EXAMPLES)))
async def test_example_prints_what_the_doc_shows(ws_url: str, code: str, output: str) -> None:
    """The example, run as a program against a new server, prints the output shown under it."""
    program = code.replace("ws://localhost:3000/ws", ws_url)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        program,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert (stdout.decode(), stderr.decode(), process.returncode) == (output, "", 0)
