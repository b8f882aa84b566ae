"""The event stream, sans I/O: recorded writes, a list for the turn's flush, times as numbers."""

from __future__ import annotations

import pytest

from objstore.eventstream import PING, EventStream, format_event
from objstore.hub import Hub
from objstore.outbox import Outbox, deliver_rev_to_all, deliver_to_all
from objstore.protocol import Update


class Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.ended: str | None = None

    def write(self, data: bytes, /) -> None:
        assert self.ended is None, "written after the end"
        self.writes.append(data)

    def close(self) -> None:
        self.ended = "closed"

    def abort(self) -> None:
        self.ended = "aborted"


def event(key: str, value: str, rev: int) -> bytes:
    """The event a stream writes for an update."""
    return (
        f'id: {rev}\nevent: update\ndata: {{"key":"{key}","value":{value},"rev":{rev}}}\n\n'
    ).encode()


def started(
    stream: EventStream | None = None, *, stall_timeout: float = 60.0, now: float = 0.0
) -> tuple[EventStream, Transport, list[EventStream]]:
    stream = stream or EventStream(heartbeat=15.0)
    transport, dirty = Transport(), list[EventStream]()
    stream.start(transport, dirty.append, stall_timeout=stall_timeout, now=now)
    return stream, transport, dirty


def closes_counted(stream: EventStream) -> list[None]:
    calls: list[None] = []
    stream.on_close = lambda: calls.append(None)
    return calls


def test_an_update_is_one_event_with_its_revision_as_id() -> None:
    """deliver() formats id, event and data (the revision form) exactly."""
    stream, transport, _ = started()
    stream.deliver(Update("a/b", b'{"x":4}', 30))
    stream.flush()
    assert transport.writes == [
        b'id: 30\nevent: update\ndata: {"key":"a/b","value":{"x":4},"rev":30}\n\n'
    ]


def test_a_deletion_is_sent_in_the_revision_form() -> None:
    """A deleted key's event carries value null and deleted true."""
    stream, transport, _ = started()
    stream.deliver(Update("k", None, 31))
    stream.flush()
    assert transport.writes == [
        b'id: 31\nevent: update\ndata: {"key":"k","value":null,"rev":31,"deleted":true}\n\n'
    ]


def test_events_of_one_turn_are_written_together_in_order() -> None:
    """Updates and other events of one turn go out in one write, in order; marked once."""
    stream, transport, dirty = started()
    stream.deliver(Update("a", b"1", 1))
    stream.send("ready", b'{"rev":1}', 1)
    stream.deliver(Update("a", b"2", 2))
    assert dirty == [stream]
    stream.flush()
    ready = b'id: 1\nevent: ready\ndata: {"rev":1}\n\n'
    assert transport.writes == [event("a", "1", 1) + ready + event("a", "2", 2)]


def test_flush_without_events_writes_nothing() -> None:
    """An empty stream does not write."""
    stream, transport, _ = started()
    stream.flush()
    assert transport.writes == []


def test_send_without_id_has_no_id_line() -> None:
    """An event sent without an id leaves the client's last event id as it was."""
    assert format_event("reset", b'{"key":"k"}') == b'event: reset\ndata: {"key":"k"}\n\n'


def test_send_splits_data_into_one_line_each() -> None:
    """LF, CR and CRLF in data each start a new data line; a trailing break is kept."""
    assert format_event("note", b"a\nb\r\nc\rd\n") == (
        b"event: note\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
    )


def test_send_with_empty_data_still_makes_an_event() -> None:
    """Empty data is one empty data line, which a client dispatches (no data line: none)."""
    assert format_event("ready", b"", 5) == b"id: 5\nevent: ready\ndata: \n\n"


@pytest.mark.parametrize("name", ["", "a\nb", "a\rb"])
def test_event_names_on_one_line_only(name: str) -> None:
    """An event name that is empty or holds a line break is refused."""
    with pytest.raises(ValueError, match="invalid event name"):
        format_event(name, b"")


def test_events_before_start_wait_conflated_and_go_out_at_start() -> None:
    """Before it is started a stream holds one update per key and every other event."""
    stream = EventStream()
    stream.send("reset", b"{}")
    for rev in range(1, 101):
        stream.deliver(Update("a", str(rev).encode(), rev))
    stream.send("ready", b"{}", 100)
    assert stream.held == 3
    stream, transport, dirty = started(stream)
    assert dirty == [stream]
    stream.flush()
    assert transport.writes == [
        b"event: reset\ndata: {}\n\n"
        + b'id: 100\nevent: update\ndata: {"key":"a","value":100,"rev":100}\n\n'
        + b"id: 100\nevent: ready\ndata: {}\n\n"
    ]


def test_congested_stream_keeps_the_latest_update_per_key_in_revision_order() -> None:
    """While congested a newer update replaces the held one of its key and goes last."""
    stream, transport, _ = started()
    stream.pause_writing(1.0)
    stream.deliver(Update("a", b"1", 1))
    stream.deliver(Update("b", b"2", 2))
    stream.deliver(Update("a", b"3", 3))
    assert (stream.congested, stream.held) == (True, 2)
    stream.resume_writing(2.0)
    assert transport.writes == [event("b", "2", 2) + event("a", "3", 3)]
    assert (stream.congested, stream.held) == (False, 0)


def test_other_events_are_never_conflated() -> None:
    """Events sent while congested are all written on resume, in order with the updates."""
    stream, transport, _ = started()
    stream.pause_writing(1.0)
    stream.send("x", b"1")
    stream.deliver(Update("a", b"1", 1))
    stream.send("x", b"2")
    stream.resume_writing(2.0)
    assert transport.writes == [
        b"event: x\ndata: 1\n\n" + event("a", "1", 1) + b"event: x\ndata: 2\n\n"
    ]


def test_batch_of_the_turn_is_written_before_held_events() -> None:
    """Events queued before congestion go out before those held during it."""
    stream, transport, _ = started()
    stream.deliver(Update("a", b"1", 1))
    stream.pause_writing(1.0)
    stream.deliver(Update("a", b"2", 2))
    stream.resume_writing(2.0)
    assert transport.writes == [event("a", "1", 1), event("a", "2", 2)]


def test_heartbeat_when_nothing_was_written_since_the_last_tick() -> None:
    """A tick writes a ping only when the interval before it was silent."""
    stream, transport, _ = started(now=100.0)
    assert stream.deadline == 115.0
    stream.expire(114.9)
    assert transport.writes == []
    stream.expire(115.0)
    assert transport.writes == [PING]
    assert stream.deadline == 130.0
    stream.deliver(Update("a", b"1", 1))
    stream.flush()
    stream.expire(130.0)
    assert transport.writes == [PING, event("a", "1", 1)]
    stream.expire(145.0)
    assert transport.writes == [PING, event("a", "1", 1), PING]


def test_no_heartbeat_while_congested() -> None:
    """A congested stream does not add pings to a buffer nobody reads."""
    stream, transport, _ = started(now=0.0)
    stream.pause_writing(1.0)
    stream.expire(15.0)
    assert transport.writes == []


def test_stalled_stream_is_aborted_once_and_closes_once() -> None:
    """A stream congested for the stall timeout is aborted, and on_close is called once."""
    stream, transport, _ = started(stall_timeout=5.0, now=0.0)
    calls = closes_counted(stream)
    stream.pause_writing(10.0)
    assert stream.deadline == 15.0
    stream.expire(14.9)
    assert (transport.ended, calls) == (None, [])
    stream.expire(15.0)
    assert (transport.ended, calls, stream.closed) == ("aborted", [None], True)
    assert stream.deadline is None
    stream.lost()
    stream.close()
    assert calls == [None]


def test_draining_in_time_cancels_the_stall() -> None:
    """A stream that drains before its stall timeout goes on, with the heartbeat's deadline."""
    stream, transport, _ = started(stall_timeout=5.0, now=0.0)
    stream.pause_writing(1.0)
    stream.resume_writing(5.9)
    assert stream.deadline == 15.0
    stream.expire(7.0)
    assert (transport.ended, stream.closed) == (None, False)


def test_close_writes_what_is_queued_then_closes() -> None:
    """close() flushes the turn's events, closes the transport and calls on_close once."""
    stream, transport, _ = started()
    calls = closes_counted(stream)
    stream.deliver(Update("a", b"1", 1))
    stream.close()
    stream.close()
    assert (transport.writes, transport.ended, calls) == ([event("a", "1", 1)], "closed", [None])


def test_close_while_congested_aborts() -> None:
    """A congested stream is aborted on close: closing would wait for a client that never reads."""
    stream, transport, _ = started()
    stream.pause_writing(1.0)
    stream.close()
    assert transport.ended == "aborted"


def test_lost_calls_on_close_once_and_nothing_is_written_after() -> None:
    """Once the connection is lost, on_close has been called once and events are dropped."""
    stream, transport, _ = started()
    calls = closes_counted(stream)
    stream.lost()
    stream.lost()
    stream.deliver(Update("a", b"1", 1))
    stream.send("x", b"")
    stream.flush()
    stream.expire(100.0)
    assert (transport.writes, calls, stream.held) == ([], [None], 0)


def test_closed_before_start_closes_the_transport_at_start() -> None:
    """A stream its route closed before the head went out ends as soon as it starts."""
    stream = EventStream()
    calls = closes_counted(stream)
    stream.close()
    stream, transport, _ = started(stream)
    assert (transport.ended, transport.writes, calls) == ("closed", [], [None])


def test_hub_fan_out_reaches_streams_and_outboxes_alike() -> None:
    """The server's fan-out of the revision form hands an event stream its own deliver."""

    class Writer:
        def __init__(self) -> None:
            self.frames: list[bytes] = []

        def write_frames(self, frames: list[bytes]) -> None:
            self.frames += frames

    hub = Hub(fan_out=deliver_to_all, fan_out_rev=deliver_rev_to_all)
    stream, transport, _ = started()
    writer = Writer()
    outbox = Outbox(writer, lambda _: None)
    hub.subscribe_rev(stream, "k")
    hub.subscribe_rev(outbox, "k")
    update = Update("k", b"1", 7)
    assert hub.publish(update) == 2
    stream.flush()
    outbox.flush()
    assert (transport.writes, writer.frames) == ([event("k", "1", 7)], [update.rev_ws_frame])
