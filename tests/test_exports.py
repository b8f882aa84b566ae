"""Every module declares __all__, and every name in it exists."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys

import pytest

import objstore

MODULES = [
    info.name
    for info in pkgutil.walk_packages(objstore.__path__, "objstore.")
    if not info.name.endswith("__main__")
]


@pytest.mark.parametrize("name", MODULES)
def test_module_declares_its_surface(name: str) -> None:
    """The module has __all__ and each listed name is defined."""
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list)
    for exported in module.__all__:
        assert hasattr(module, exported), f"{name}.{exported}"


def test_only_the_connection_modules_import_websockets() -> None:
    """The protocol, store and routes know nothing of websockets."""
    importers = []
    for name in MODULES:
        source = importlib.import_module(name).__file__
        assert source is not None
        with open(source, encoding="utf-8") as file:
            text = file.read()
        if "import websockets" in text or "from websockets" in text:
            importers.append(name)
    assert sorted(importers) == [
        "objstore.client._aio",
        "objstore.client.sync",
        "objstore.connection",
        "objstore.server",
        "objstore.wsinternals",
    ]


def test_the_client_imports_nothing_of_the_server() -> None:
    """objstore.client imports only itself, websockets' client side and the standard library."""
    offenders = []
    for name in MODULES:
        if not name.startswith("objstore.client"):
            continue
        source = importlib.import_module(name).__file__
        assert source is not None
        with open(source, encoding="utf-8") as file:
            tree = ast.parse(file.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level > 1 or module.startswith(("objstore", "websockets.asyncio.server")):
                    offenders.append(f"{name}: {module}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{name}: {a.name}" for a in node.names if a.name.startswith("objstore")
                ]
    assert offenders == []


def test_only_the_redis_modules_import_redis_and_only_when_asked() -> None:
    """The redis library is optional (``objstore[redis]``): only the shared store's modules
    import it, and a server on the cache folder runs without it ever being imported."""
    importers = []
    for name in MODULES:
        source = importlib.import_module(name).__file__
        assert source is not None
        with open(source, encoding="utf-8") as file:
            tree = ast.parse(file.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                roots = [(node.module or "").split(".")[0]]
            elif isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            else:
                continue
            if "redis" in roots:
                importers.append(name)
    assert sorted(set(importers)) == ["objstore.redislink", "objstore.redisstore"]
    check = (
        "import sys, objstore.cli, objstore.server\n"
        "loaded = [m for m in sys.modules if m == 'redis' or m.startswith('redis.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
