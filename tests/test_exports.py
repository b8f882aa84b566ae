"""Every module declares __all__, and every name in it exists."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import objstore

MODULES = [
    info.name
    for info in pkgutil.iter_modules(objstore.__path__, "objstore.")
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
        "objstore.connection",
        "objstore.server",
        "objstore.wsinternals",
    ]
