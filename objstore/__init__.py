"""objstore: a realtime key-value store with pub/sub over WebSocket.

Read a ``set`` from socket to disk by module name: :mod:`objstore.server`
(socket) -> :mod:`objstore.protocol` -> :mod:`objstore.service` ->
:mod:`objstore.store` (and :mod:`objstore.writer`, :mod:`objstore.cachefolder`)
-> :mod:`objstore.hub` -> sockets.
"""

__all__ = ["__version__"]

#: The one place the version is written; pyproject.toml and the executables read it.
__version__ = "0.1.0"
