"""The entry point's preparations: websockets imported without its package metadata,
and what importing the program made kept from the garbage collector."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

from objstore.__main__ import _LoadedOnUse

#: Modules that only some options need, or that nothing at start uses.
NOT_AT_START = (
    "importlib.metadata",
    "importlib.resources",
    "tempfile",
    "zipfile",
    "csv",
    "email.message",
    "tomllib",
    "prometheus_client",
    "redis",
    "objstore.redislink",
    "objstore.redisstore",
    "objstore.transfer",
    "objstore.transfercli",
)


def python(code: str) -> str:
    """What a fresh interpreter running *code* prints."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, check=True, text=True
    )
    return result.stdout


def test_reading_the_stand_in_reads_the_real_module() -> None:
    """An attribute read from the stand-in is the real module's."""
    stand_in = _LoadedOnUse("importlib.metadata")
    assert stand_in.version is importlib.metadata.version


def test_the_real_module_is_imported_after_websockets() -> None:
    """After websockets is imported, importing importlib.metadata gives the real module."""
    check = (
        "import sys\n"
        "from objstore.__main__ import _import_websockets\n"
        "_import_websockets()\n"
        "import importlib.metadata, websockets\n"
        "print(type(importlib.metadata).__name__, sys.modules['importlib.metadata'].__name__)\n"
        "print(importlib.metadata.version('websockets') == websockets.__version__)\n"
    )
    assert python(check) == "module importlib.metadata\nTrue\n"


def test_the_program_imports_only_what_every_server_needs() -> None:
    """`python -m objstore` imports none of the modules that only some options need."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "objstore", "--version"],
        capture_output=True,
        check=True,
        text=True,
    )
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines()}
    assert "objstore.cli" in imported
    assert sorted(imported.intersection(NOT_AT_START)) == []


def test_the_imported_program_is_kept_from_the_collector() -> None:
    """`python -m objstore` freezes what importing it made, and runs with the collector on."""
    check = (
        "import gc, runpy, sys\n"
        "sys.argv = ['objstore', '--version']\n"
        "try:\n"
        "    runpy.run_module('objstore', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, gc.isenabled(), gc.get_freeze_count() > 20_000)\n"
    )
    assert python(check).splitlines()[-1] == "0 True True"
