"""One WebSocket client: its messages in, its replies and updates out through its outbox.

Owns what happens to a client's message between the socket and the service:
parse, execute, queue the reply (an internal error, logged, when handling a
message fails unexpectedly: one message's bug never drops the connection); and
the client's side of subscriptions (updates it is sent, write failures it is
told of). Knows nothing of websockets: the connection hands in message
payloads and provides the outbox.
"""

from __future__ import annotations

import logging
import time

from .errors import ClientError, StorageError
from .outbox import Outbox
from .protocol import Command, encode_error, parse_message
from .service import StoreService
from .wsframes import text_frame

__all__ = ["ClientSession"]

logger = logging.getLogger("objstore.session")


class ClientSession:
    """A connected client, as the service's caller; its outbox is the hub's subscriber."""

    __slots__ = (
        "messages",
        "opened",
        "outbox",
        "peer",
        "report_failure",
        "service",
    )

    def __init__(self, service: StoreService, outbox: Outbox, peer: object) -> None:
        self.service = service
        self.outbox = outbox
        #: The client's address as the socket gives it, formatted only for logs.
        self.peer = peer
        self.messages = 0
        self.opened = time.monotonic()
        # Bound once: passed with every set.
        self.report_failure = self.write_failed

    @property
    def address(self) -> str:
        """The client's address, ``host:port``, for logs."""
        peer = self.peer
        if isinstance(peer, tuple) and len(peer) >= 2:
            host = str(peer[0])
            return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
        return str(peer)

    def receive(self, message: str | bytes) -> None:
        """Handle one message: execute it and queue its reply, or an error reply.

        An unexpected exception (a bug) while parsing or executing the message
        is logged with its traceback and answered with an internal error that
        tells nothing of it; the connection carries on.
        """
        self.messages += 1
        command: Command | None = None
        try:
            command = parse_message(message)
            # The outbox is the client's subscriber: the hub delivers to it directly.
            reply = self.service.execute(self.outbox, command, self.report_failure)
            if reply is not None:
                self.outbox.reply(text_frame(reply))
        except ClientError as exc:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("%s sent %r: %s", self.address, message[:500], exc)
            self.outbox.reply(text_frame(encode_error(exc)))
        except Exception:
            self._failed(command)

    def _failed(self, command: Command | None) -> None:
        """Log the exception being handled, once, and tell the client without its details."""
        if command is None:
            logger.exception("%s: internal error while parsing a message", self.address)
            error = "internal error: could not handle this message; see the server log"
        else:
            action = type(command).__name__.lower()  # Get -> "get"
            logger.exception(
                "%s: internal error while handling a %r message", self.address, action
            )
            error = f'internal error: could not handle this "{action}" message; see the server log'
        self.outbox.reply(text_frame(encode_error(error)))

    def write_failed(self, error: StorageError) -> None:
        """Tell the client that a value it set could not be saved to disk."""
        self.outbox.reply(text_frame(encode_error(str(error))))

    def close(self, code: int | None, reason: str) -> None:
        """Forget every subscription and log the connection's one line; it is gone."""
        self.service.hub.drop(self.outbox)
        logger.info(
            "%s disconnected after %.1f s and %d messages (close code %s%s)",
            self.address,
            time.monotonic() - self.opened,
            self.messages,
            code,
            f", {reason}" if reason else "",
        )
