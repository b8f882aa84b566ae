"""One WebSocket client: its messages in, its replies and updates out through its outbox.

Owns what happens to a client's message between the socket and the service:
parse, execute, queue the reply (an internal error, logged, when handling a
message fails unexpectedly: one message's bug never drops the connection); and
the client's side of subscriptions (updates it is sent, write failures it is
told of) and of its ephemeral keys (deleted when it goes). Knows nothing of
websockets: the connection hands in message payloads and provides the outbox.

Replies go out in the order of the messages they answer. An acknowledgement
waits for its write to reach disk; replies to later messages wait behind it,
in a queue of at most :data:`MAX_WAITING_REPLIES` replies or
:data:`MAX_WAITING_BYTES` bytes (plus the message being handled): past that
the session is :attr:`~ClientSession.backlogged`, and the connection reads
nothing more until the disk catches up. Updates and a subscription's first
values are not replies: they go out at once.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from . import authorize
from .access import Access
from .commands import Auth, Command, RequestId
from .errors import ClientError, StorageError
from .outbox import Outbox
from .permissions import EVERYTHING, Grant
from .protocol import encode_error, parse_message
from .replies import encode_error_reply, encode_plain_reply, encode_reply
from .results import Result
from .service import StoreService
from .writer import WriteResult
from .wsframes import text_frame

__all__ = ["MAX_AUTH_FAILURES", "MAX_WAITING_BYTES", "MAX_WAITING_REPLIES", "ClientSession"]

logger = logging.getLogger("objstore.session")

#: Replies that may wait behind an acknowledgement before the client is read no more.
MAX_WAITING_REPLIES = 1024
#: Bytes of replies that may wait so.
MAX_WAITING_BYTES = 1024 * 1024
#: Unknown tokens one connection may present before it is closed.
MAX_AUTH_FAILURES = 5


class ClientSession:
    """A connected client, as the service's caller; its outbox is the hub's subscriber."""

    __slots__ = (
        "__weakref__",
        "_access",
        "_auth_failures",
        "_execute",
        "_waiting",
        "_waiting_bytes",
        "backlogged",
        "close_connection",
        "grant",
        "messages",
        "narrowed",
        "on_drained",
        "opened",
        "outbox",
        "peer",
        "report_failure",
        "service",
        "subscriber",
    )

    def __init__(
        self,
        service: StoreService,
        outbox: Outbox,
        peer: object,
        grant: Grant = EVERYTHING,
        access: Access | None = None,
    ) -> None:
        self.service = service
        self.outbox = outbox
        #: The hub's subscriber for this client: its outbox.
        self.subscriber = outbox
        #: Replies waiting for an acknowledgement before them; None while there is none.
        self._waiting: deque[bytes | _Acknowledgement] | None = None
        self._waiting_bytes = 0
        #: So many replies wait for an acknowledgement that reading should stop: kept
        #: as it changes, since the connection asks after every message.
        self.backlogged = False
        #: Called once when a backlogged session's waiting replies have gone out.
        self.on_drained: Callable[[], None] | None = None
        #: The client's address as the socket gives it, formatted only for logs.
        self.peer = peer
        self.messages = 0
        self.opened = time.monotonic()
        # Bound once: passed with every set.
        self.report_failure = self.write_failed
        #: What it may do: the grant of its token (or the anonymous one).
        self._access = access
        self._auth_failures = 0
        #: Prefix subscriptions made of the narrower prefixes its token may read.
        self.narrowed: dict[str, tuple[str, ...]] = {}
        #: Closes its connection (code, reason); set by the server.
        self.close_connection: Callable[[int, str], None] | None = None
        self._set_grant(grant)

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
            result = self._execute(self, command)
            if result is not None:
                request_id = command.id
                if request_id is None:
                    reply = encode_plain_reply(result)
                    if reply is not None:
                        self._reply(reply)
                else:
                    self._answer(request_id, result)
        except ClientError as exc:
            if logger.isEnabledFor(logging.DEBUG) and not isinstance(command, Auth):
                logger.debug("%s sent %r: %s", self.address, message[:500], exc)
            self._reply(_error_reply(exc, command))
        except Exception:
            self._failed(command)

    def _execute_granted(self, client: ClientSession, command: Command) -> Result | None:
        return self.service.execute_as(client, self.grant, command)

    def authenticate(self, token: str) -> Grant:
        """Act with the rights of *token* from now on (an ``auth`` message).

        An unknown token is refused and the rights stay as they were; after
        :data:`MAX_AUTH_FAILURES` refusals the connection is closed, so that one
        connection cannot go on guessing.
        """
        grant = EVERYTHING if self._access is None else self._access.grant_for(token)
        if grant is None:
            self._auth_failures += 1
            if self._auth_failures >= MAX_AUTH_FAILURES and self.close_connection is not None:
                self.close_connection(1008, "too many unknown tokens")
            raise authorize.unknown_token()
        self._set_grant(grant)
        logger.info("%s authenticated as %s", self.address, grant.name)
        return grant

    def _set_grant(self, grant: Grant) -> None:
        """Act with *grant*, and hear from the rules when they change it."""
        self.grant = grant
        # A client that may do everything is not checked at all: its messages take the
        # same path as without access control.
        self._execute = self.service.execute if grant.everything else self._execute_granted
        if self._access is not None:
            self._access.hold(self)

    def permissions_changed(self, grant: Grant | None) -> None:
        """The rules changed what its token may do: close the connection, so that every
        subscription stops at once; the client reconnects under the new rules."""
        if self.close_connection is not None:
            self.close_connection(1008, "permissions changed; reconnect")

    def send(self, payload: bytes) -> None:
        """Send *payload* at once, ahead of replies waiting for an acknowledgement."""
        self.outbox.reply(text_frame(payload))

    def _answer(self, request_id: RequestId, result: Result) -> None:
        """Reply to the message *request_id* with *result*, once it is on disk if a write."""
        written = getattr(result, "written", None)
        if written is None or (written.done() and self._waiting is None):
            self._reply(_encoded(request_id, result, written))
            return
        ack = _Acknowledgement(request_id, result, written)
        waiting = self._waiting
        if waiting is None:
            self._waiting = deque((ack,))
        else:
            waiting.append(ack)
            self._check_backlog(waiting)
        written.add_done_callback(self._written)

    def _reply(self, reply: bytes) -> None:
        """Send *reply* after every reply before it."""
        waiting = self._waiting
        if waiting is None:
            self.outbox.reply(text_frame(reply))
        else:
            waiting.append(reply)
            self._waiting_bytes += len(reply)
            self._check_backlog(waiting)

    def _written(self, _: object) -> None:
        """An acknowledged write is on disk: send the replies now ready, in order."""
        waiting = self._waiting
        if waiting is None:
            return
        while waiting:
            reply = waiting[0]
            if isinstance(reply, _Acknowledgement):
                if not reply.written.done():
                    return
                reply = _encoded(reply.request_id, reply.result, reply.written)
            waiting.popleft()
            self.outbox.reply(text_frame(reply))
        self._waiting = None
        self._waiting_bytes = 0
        self.backlogged = False
        drained = self.on_drained
        if drained is not None:
            self.on_drained = None
            drained()

    def _check_backlog(self, waiting: deque[bytes | _Acknowledgement]) -> None:
        if len(waiting) >= MAX_WAITING_REPLIES or self._waiting_bytes >= MAX_WAITING_BYTES:
            self.backlogged = True

    def _failed(self, command: Command | None) -> None:
        """Log the exception being handled, once, and tell the client without its details."""
        if command is None:
            logger.exception("%s: internal error while parsing a message", self.address)
            error = "internal error: could not handle this message; see the server log"
        else:
            action = {"subscribeprefix": "subscribe", "unsubscribeprefix": "unsubscribe"}.get(
                type(command).__name__.lower(), type(command).__name__.lower()
            )  # Get -> "get"
            logger.exception(
                "%s: internal error while handling a %r message", self.address, action
            )
            error = f'internal error: could not handle this "{action}" message; see the server log'
        request_id = getattr(command, "id", None)
        if request_id is None:
            self._reply(encode_error(error))
        else:
            self._reply(encode_error_reply(error, request_id, "internal"))

    def write_failed(self, error: StorageError) -> None:
        """Tell the client that a value it set could not be saved to disk."""
        self.outbox.reply(text_frame(encode_error(error)))

    def close(self, code: int | None, reason: str) -> None:
        """Forget every subscription, delete its ephemeral keys and log the connection's
        one line; it is gone."""
        self.service.hub.drop(self.outbox)
        self._waiting = None
        self.on_drained = None
        self.service.release(self)
        logger.info(
            "%s disconnected after %.1f s and %d messages (close code %s%s)",
            self.address,
            time.monotonic() - self.opened,
            self.messages,
            code,
            f", {reason}" if reason else "",
        )


class _Acknowledgement:
    """A reply waiting for its write to reach disk."""

    __slots__ = ("request_id", "result", "written")

    def __init__(self, request_id: RequestId, result: Result, written: WriteResult) -> None:
        self.request_id = request_id
        self.result = result
        self.written = written


def _encoded(request_id: RequestId, result: Result, written: WriteResult | None) -> bytes:
    """The reply to a message with an id: the result, or the write's storage error."""
    failure = None if written is None else written.result()
    if failure is not None:
        return encode_error_reply(failure, request_id)
    return encode_reply(request_id, result)


def _error_reply(error: ClientError, command: Command | None) -> bytes:
    """The reply to a message refused: with its id and code when it had an id."""
    request_id = error.request_id
    if request_id is None and command is not None:
        request_id = command.id
    if request_id is not None:
        return encode_error_reply(error, request_id)
    if error.coded:
        return encode_error_reply(error, None)
    return encode_error(error)
