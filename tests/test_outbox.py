"""The outbox and the frame encoder, sans I/O: recorded writes, no sockets, no loop."""

from __future__ import annotations

import struct
from collections.abc import Callable

from objstore.outbox import CountedFanOut, FlushScheduler, Outbox, deliver_to_all
from objstore.protocol import Update
from objstore.tallies import ServerTallies
from objstore.wsframes import text_frame


class Writer:
    def __init__(self) -> None:
        self.writes: list[list[bytes]] = []

    def write_frames(self, frames: list[bytes]) -> None:
        self.writes.append(list(frames))


def update(key: str, value: bytes) -> Update:
    return Update(key, value)


def frame(key: str, value: bytes) -> bytes:
    """The frame the outbox writes for an update."""
    return text_frame(b'{"key":"%s","value":%s}' % (key.encode(), value))


def make() -> tuple[Outbox, Writer, list[Outbox]]:
    writer, dirty = Writer(), list[Outbox]()
    return Outbox(writer, dirty.append), writer, dirty


def test_frames_of_one_turn_are_written_together_in_order() -> None:
    """Updates and replies queued in one turn go out in one write, in order."""
    outbox, writer, dirty = make()
    outbox.deliver(update("a", b"1"))
    outbox.reply(b"r")
    outbox.deliver(update("a", b"2"))
    assert dirty == [outbox]  # marked once
    outbox.flush()
    assert writer.writes == [[frame("a", b"1"), b"r", frame("a", b"2")]]


def test_flush_without_frames_writes_nothing() -> None:
    """An empty outbox does not write."""
    outbox, writer, _ = make()
    outbox.flush()
    assert writer.writes == []


def test_congested_outbox_keeps_only_the_latest_update_per_key() -> None:
    """While congested, a newer update of a key replaces the held one."""
    outbox, writer, _ = make()
    outbox.pause()
    for n in range(1000):
        outbox.deliver(update("a", str(n).encode()))
    outbox.deliver(update("b", b"1"))
    assert outbox.held == 2
    outbox.resume()
    assert writer.writes == [[frame("a", b"999"), frame("b", b"1")]]
    assert outbox.congested is False


def test_replies_are_never_dropped_while_congested() -> None:
    """Replies held while congested are all written on resume, in order."""
    outbox, writer, _ = make()
    outbox.pause()
    outbox.reply(b"r1")
    outbox.reply(b"r2")
    outbox.resume()
    assert writer.writes == [[b"r1", b"r2"]]


def test_batch_of_the_turn_is_written_before_held_frames() -> None:
    """Frames queued before congestion go out before those held during it."""
    outbox, writer, _ = make()
    outbox.deliver(update("a", b"1"))
    outbox.pause()
    outbox.deliver(update("a", b"2"))
    outbox.resume()
    assert writer.writes == [[frame("a", b"1")], [frame("a", b"2")]]


def test_scheduler_flushes_every_marked_outbox_once_per_turn() -> None:
    """One scheduled callback flushes all outboxes that got frames."""
    callbacks: list[object] = []
    scheduler = FlushScheduler(callbacks.append)
    writers = [Writer(), Writer()]
    outboxes = [Outbox(writer, scheduler) for writer in writers]
    for outbox in outboxes:
        outbox.deliver(update("k", b"1"))
        outbox.deliver(update("k", b"2"))
    assert callbacks == [scheduler.flush]
    scheduler.flush()
    both = [frame("k", b"1"), frame("k", b"2")]
    assert [w.writes for w in writers] == [[both], [both]]


def test_deferred_work_runs_after_the_flush_with_the_budget_renewed() -> None:
    """defer() schedules one flush; the callback runs after the outboxes are written,
    with the turn's spent bytes back at zero."""
    callbacks: list[object] = []
    scheduler = FlushScheduler(callbacks.append)
    writer = Writer()
    outbox = Outbox(writer, scheduler)
    outbox.reply(b"r")
    scheduler.spent = 100_000
    seen: list[tuple[int, int]] = []
    scheduler.defer(lambda: seen.append((len(writer.writes), scheduler.spent)))
    assert callbacks == [scheduler.flush]  # one flush for both
    scheduler.flush()
    assert seen == [(1, 0)]
    scheduler.defer(lambda: None)
    assert callbacks == [scheduler.flush, scheduler.flush]  # a new turn, a new flush


def test_connections_held_back_take_turns() -> None:
    """The connection that went first in a turn goes last in the next: none starves."""
    callbacks: list[object] = []
    scheduler = FlushScheduler(callbacks.append)
    order: list[str] = []

    def connection(name: str) -> Callable[[], None]:
        def resume() -> None:
            order.append(name)
            scheduler.defer(resume)  # it still has messages

        return resume

    for name in "abc":
        scheduler.defer(connection(name))
    for _ in range(3):
        scheduler.flush()
    assert "".join(order) == "abc" + "bca" + "cab"


def test_replies_are_counted_until_the_flush() -> None:
    """An outbox counts the bytes of its replies since its last flush, for flow control."""
    outbox, _, _ = make()
    outbox.reply(b"x" * 10)
    outbox.reply(b"y" * 5)
    assert outbox.replied == 15
    outbox.flush()
    assert outbox.replied == 0


def test_text_frame_lengths() -> None:
    """Frames use the 7-bit, 16-bit and 64-bit length forms at their boundaries."""
    assert text_frame(b"hi") == b"\x81\x02hi"
    assert text_frame(b"x" * 125)[:2] == b"\x81\x7d"
    assert text_frame(b"x" * 126)[:4] == b"\x81\x7e" + struct.pack("!H", 126)
    assert text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + struct.pack("!Q", 65536)


def test_deliver_to_all_queues_like_deliver_on_each_outbox() -> None:
    """The hub's loop batches on outboxes that keep up and conflates on congested ones."""
    dirty: list[Outbox] = []
    writers = [Writer(), Writer()]
    keeping_up, congested = (Outbox(writer, dirty.append) for writer in writers)
    congested.pause()
    for n in range(3):
        deliver_to_all({keeping_up, congested}, update("k", str(n).encode()))
    assert dirty == [keeping_up]  # marked once, on its first frame
    keeping_up.flush()
    congested.resume()
    assert writers[0].writes == [[frame("k", b"0"), frame("k", b"1"), frame("k", b"2")]]
    assert writers[1].writes == [[frame("k", b"2")]]


def test_counted_fan_out_counts_deliveries_and_conflations() -> None:
    """3 updates of one key to 2 outboxes, one congested: 6 delivered, 2 conflated."""
    (quick, writer, _), (slow, _, _) = make(), make()
    slow.pause()
    tallies = ServerTallies()
    fan_out = CountedFanOut(tallies)
    for value in (b"1", b"2", b"3"):
        fan_out.fan_out({quick, slow}, update("k", value))
    assert (tallies.delivered, tallies.conflated) == (6, 2)
    assert slow.held == 1
    quick.flush()
    assert writer.writes == [[frame("k", b"1"), frame("k", b"2"), frame("k", b"3")]]
