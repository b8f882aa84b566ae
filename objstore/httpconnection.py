"""The I/O of a connection in HTTP mode: transport, clock and timer around a KeepAlive.

Owns what the sans-I/O keep-alive machine cannot do itself: reading the
clock, writing answers, pausing and resuming the transport's reading, the one
timer of the connection, and the task of an answer that is not ready at once.
The connection (:mod:`objstore.connection`) owns one of these while it is in
HTTP mode and hands it every callback of its transport. Knows nothing of
websockets, nor of routes: answers come from the handler it is given.

Memory per connection while a client sends requests without reading the
answers: the transport's write buffer up to its high-water mark (64 KiB on
asyncio and uvloop), plus the one answer that passed it, plus the reader's
buffer (see :mod:`objstore.http11`); past that the connection stops reading,
and it is aborted if its client takes nothing for the HTTP timeout.

Streams: an answer with an :class:`~objstore.eventstream.EventStream` is a
head without Content-Length, then the stream's events until the connection
closes. From then on the connection is the stream's: what the client sends is
read and dropped (so that its closing is seen), the keep-alive timeouts no
longer apply, the one timer serves the stream's heartbeat and stall deadline,
and stopping the server ends the stream.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from .eventstream import EventStream
from .http import HttpRequest, HttpResponse
from .http11 import CONTINUE, Close, KeepAlive, Request, serialize_response, serialize_stream_head
from .protocol import encode_error
from .repeatanswers import RepeatAnswers

__all__ = ["HttpHandler", "HttpMode"]

logger = logging.getLogger("objstore.http")

#: Answers a plain HTTP request: an answer now, or an awaitable of one.
HttpHandler = Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse] | None]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON = "application/json"


class HttpMode:
    """Serves kept-alive HTTP requests on one transport until it closes or upgrades."""

    __slots__ = (
        "_answers",
        "_ended",
        "_handler",
        "_head",
        "_local_host",
        "_loop",
        "_machine",
        "_mark_dirty",
        "_reading",
        "_stall_timeout",
        "_stream",
        "_task",
        "_timer",
        "_timer_at",
        "_transport",
        "_upgrade",
        "_whole",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        handler: HttpHandler,
        *,
        max_body: int,
        timeout: float,
        upgrade: Callable[[Request], None],
        ended: Callable[[], None],
        mark_dirty: Callable[[EventStream], None],
        stall_timeout: float,
        answers: RepeatAnswers | None = None,
    ) -> None:
        """Start serving; *upgrade* takes a WebSocket upgrade request, *ended* is called once.

        *answers* keeps the answers the handler marks as reusable, and answers
        requests received again, byte for byte, without the handler.

        A stream is flushed at the end of the turn through *mark_dirty*, and
        closed once its socket has not drained for *stall_timeout* seconds.
        """
        self._transport = transport
        self._loop = loop
        self._handler = handler
        self._upgrade = upgrade
        self._ended: Callable[[], None] | None = ended
        self._machine = KeepAlive(max_body, timeout, loop.time())
        self._answers = answers
        #: The bytes received, while they may be one whole request and nothing more.
        self._whole: bytes | None = None
        self._mark_dirty = mark_dirty
        self._stall_timeout = stall_timeout
        self._reading = True
        #: The request being answered is a HEAD: its answer is sent without its body.
        self._head = False
        #: The stream being sent, once its head is written.
        self._stream: EventStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        sockname = transport.get_extra_info("sockname")
        self._local_host = str(sockname[0]) if isinstance(sockname, tuple) and sockname else ""
        self._update()

    @property
    def streaming(self) -> bool:
        """True once the connection is an event stream's (Server-Sent Events)."""
        return self._stream is not None

    # -- the transport's callbacks, passed on by the connection ------------------------

    def data_received(self, data: bytes) -> None:
        """Bytes from the client: answer every complete request that may be answered now."""
        if self._stream is not None:
            return  # a stream answers no more requests: what comes is dropped
        machine = self._machine
        now = self._loop.time()
        answers = self._answers
        if answers is not None and machine.idle:
            # The same bytes as a request answered before, on a connection waiting for
            # a request: the same answer, if what it was made from has not changed.
            answer = answers.lookup(data, self._local_host)
            if answer is not None:
                self._transport.write(answer)
                machine.answered_whole(now)
                return
            self._whole = data
        machine.receive_data(data, now)
        self._serve(now)
        self._whole = None

    def eof_received(self) -> bool:
        """The client is done sending: answer what it sent, then close."""
        if self._stream is not None:
            self._stream.close()  # the client is leaving: the stream ends
            return True
        self._machine.receive_eof()
        self._serve(self._loop.time())
        return True  # the transport stays open for the answers; _close() closes it

    def connection_lost(self) -> None:
        """The connection is gone: stop the timer, any answer being made, any stream."""
        if self._stream is not None:
            self._stream.lost()
        self._machine.close_when_idle()
        self._end()
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def pause_writing(self) -> None:
        """The transport's buffer is full: take no more requests until it drains."""
        if self._stream is not None:
            self._stream.pause_writing(self._loop.time())
        else:
            self._machine.pause_writing(self._loop.time())
        self._update()

    def resume_writing(self) -> None:
        """The transport's buffer drained: go on with requests already received."""
        now = self._loop.time()
        if self._stream is not None:
            self._stream.resume_writing(now)
            self._update()
            return
        self._machine.resume_writing(now)
        self._serve(now)

    def close_when_idle(self) -> None:
        """Close at once if no answer is being made, else once it is written; end a stream."""
        if self._stream is not None:
            self._stream.close()
            return
        self._machine.close_when_idle()
        self._serve(self._loop.time())

    # -- serving -----------------------------------------------------------------------

    def _serve(self, now: float) -> None:
        machine = self._machine
        while (event := machine.next_event()) is not None:
            if type(event) is Request:
                if event.is_upgrade:
                    self._end()
                    self._upgrade(event)
                    return
                request = HttpRequest(
                    event.method, event.target, False, event.body, event.headers, self._local_host
                )
                self._head = event.method == "HEAD"
                try:
                    answer = self._handler(request)
                except Exception:
                    # A bug in a route answers 500, never drops the connection unanswered.
                    logger.exception("HTTP request %s %.200s failed", event.method, event.target)
                    answer = _internal_error()
                # The router answers None only to upgrade requests, which never come here.
                assert answer is not None
                if not isinstance(answer, HttpResponse):
                    # Answered later (POST /set waits for the disk); reading stops meanwhile.
                    self._task = self._loop.create_task(self._answer_later(answer))
                    break
                if answer.stream is not None:
                    self._start_stream(answer, answer.stream, now)
                    return
                data = self._write(answer)
                if (
                    answer.reuse is not None
                    and self._whole is not None
                    and machine.keep_alive
                    and not self._head
                    and not machine.buffered
                ):
                    # The bytes received were this request and nothing more.
                    assert self._answers is not None
                    self._answers.remember(self._whole, self._local_host, data, answer.reuse)
                self._whole = None
                machine.answer_written(now)
            elif event is CONTINUE:
                # curl waits for this before sending bodies over 1 KiB.
                self._transport.write(_CONTINUE)
            else:
                assert isinstance(event, Close)
                self._close(event)
                return
        self._update()

    def _write(self, response: HttpResponse) -> bytes:
        data = serialize_response(
            response.status,
            response.body,
            response.content_type,
            response.headers,
            self._machine.keep_alive,
        )
        if self._head and response.body:
            # The head a GET would get, Content-Length included, and never a body
            # (RFC 9110, 9.3.2): whatever the route, a HEAD answer ends at its head.
            data = data[: -len(response.body)]
        self._transport.write(data)
        return data

    async def _answer_later(self, answer: Awaitable[HttpResponse]) -> None:
        try:
            response = await answer
        except Exception:
            logger.exception("HTTP request failed")
            response = _internal_error()
        self._task = None
        if self._ended is None:
            # The connection was lost meanwhile.
            if response.stream is not None:
                response.stream.lost()
            return
        now = self._loop.time()
        if response.stream is not None:
            self._start_stream(response, response.stream, now)
            return
        self._write(response)
        self._machine.answer_written(now)
        self._serve(now)

    def _start_stream(self, response: HttpResponse, stream: EventStream, now: float) -> None:
        """Write the head, then hand the transport to *stream*; the machine is done with."""
        assert not response.body, "a streamed answer has no body"
        self._stream = stream
        transport = self._transport
        transport.write(
            serialize_stream_head(response.status, response.content_type, response.headers)
        )
        stream.start(transport, self._mark_dirty, stall_timeout=self._stall_timeout, now=now)
        if self._machine.writing_paused:
            stream.pause_writing(now)
        self._update()

    def _update(self) -> None:
        """Read or not as the machine wants; make sure the timer fires by its deadline."""
        machine = self._machine
        stream = self._stream
        # A stream reads (and drops) what comes, to see its client leave.
        wants_data = stream is not None or machine.wants_data
        if wants_data is not self._reading and self._ended is not None:
            self._reading = wants_data
            if wants_data:
                self._transport.resume_reading()
            else:
                self._transport.pause_reading()
        deadline = machine.deadline if stream is None else stream.deadline
        # The timer is moved only when the deadline comes sooner: when it fires
        # early it looks again (a deadline moved later is the common case).
        if deadline is not None and deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._timer_fired)

    def _timer_fired(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self._ended is None:
            return
        if self._stream is not None:
            self._stream.expire(self._loop.time())
            self._update()
            return
        if self._machine.expire(self._loop.time()):
            self._close(None)
            return
        self._update()

    def _close(self, event: Close | None) -> None:
        error = event.error if event is not None else None
        if error is not None:
            code = "too_large" if error.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE else None
            body = encode_error(str(error), code or "invalid_message")
            self._transport.write(serialize_response(error.status, body, _JSON, [], False))
        stuck = self._machine.writing_paused
        self._end()
        if stuck:
            # Its client takes nothing: closing would wait for it to read, forever.
            self._transport.abort()
        else:
            self._transport.close()

    def _end(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ended = self._ended
        if ended is not None:
            self._ended = None
            ended()


def _internal_error() -> HttpResponse:
    """The answer to a request that a bug in objstore kept from being answered."""
    return HttpResponse(
        HTTPStatus.INTERNAL_SERVER_ERROR, encode_error("internal error; see the server log")
    )
