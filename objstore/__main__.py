"""Entry point of ``python -m objstore`` and of the frozen executable.

Owns what must happen before objstore's modules are imported, for a faster
start; knows nothing of the server.
"""

import gc
import importlib
import sys
import types
from typing import Any

__all__: list[str] = []

_METADATA = "importlib.metadata"


class _LoadedOnUse(types.ModuleType):
    """Stands in for a module that is imported but not used: the real one is loaded
    (and takes its place in ``sys.modules``) when an attribute is first read."""

    def __getattr__(self, name: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def _import_websockets() -> None:
    """Import websockets without loading :mod:`importlib.metadata`.

    websockets' version module imports it at load, to use it only in a development
    checkout of websockets; loading it also loads ``email``, ``csv``, ``zipfile`` and
    ``importlib.resources``: 10 ms of the executable's start. A stand-in answers
    that one import; it is taken out of ``sys.modules`` right after, so whoever
    imports the module later (the redis library asks it for versions) gets the
    real one, and so would websockets if it read the stand-in.
    ``tests/test_wsinternals.py`` checks that websockets still does not read it.
    """
    if _METADATA in sys.modules:
        return
    stand_in = _LoadedOnUse(_METADATA)
    sys.modules[_METADATA] = stand_in
    try:
        import websockets  # noqa: F401
    finally:
        if sys.modules.get(_METADATA) is stand_in:
            del sys.modules[_METADATA]


if __name__ == "__main__":
    # Importing the program makes some 30,000 objects that live as long as it does,
    # and next to no garbage: the collector would run about 50 times meanwhile, for
    # nothing (4 to 5 ms). Frozen, it never looks at them again.
    gc.disable()
    _import_websockets()

    from objstore.cli import main

    gc.freeze()
    gc.enable()
    sys.exit(main())
