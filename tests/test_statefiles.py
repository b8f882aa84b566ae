"""The snapshot and journal of the store's state, on real files."""

from __future__ import annotations

import json
import logging
import os
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from objstore.folderload import load_folder
from objstore.foldernames import JOURNAL_NAME, META_NAME, temp_name
from objstore.folderwrite import FolderWriter
from objstore.statefiles import Deadline, KeyState, Reserve, SavedState, StateFiles
from objstore.statelines import MAX_LINE_BYTES

needs_symlinks = pytest.mark.skipif(
    sys.platform == "win32", reason="creating symbolic links needs extra rights on Windows"
)

ODD_KEYS = ["line\nbreak", 'quote"d', "back\\slash", "café ☕", "\x00\x1f", "\u2028"]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[StateFiles]:
    """State files of an empty folder."""
    state_files = StateFiles(str(tmp_path))
    yield state_files
    state_files.close()


def sample() -> SavedState:
    return SavedState(
        rev=42,
        clean=True,
        base=39,
        keys={"a": KeyState(40, None, 123), "b": KeyState(42, 1_700_000_000_000, None)},
        history=[(40, "a", False), (41, "gone", True), (42, "b", False)],
    )


def write_lines(path: Path, *lines: object) -> None:
    """Write JSON lines (str items are written as they are)."""
    text = "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in lines)
    path.write_text(text, encoding="utf-8")


def reread(tmp_path: Path) -> SavedState:
    state_files = StateFiles(str(tmp_path))
    try:
        return state_files.read()
    finally:
        state_files.close()


def set_aside(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".corrupt"))


def test_missing_files_read_as_a_new_folder(files: StateFiles) -> None:
    """A folder without state files (new, or the original server's) starts clean at 0."""
    assert files.read() == SavedState(rev=0, clean=True, generation=0, base=0)


def test_snapshot_round_trip(files: StateFiles, tmp_path: Path) -> None:
    """A snapshot reads back as written, under the generation write_snapshot returned."""
    generation = files.write_snapshot(sample())
    expected = sample()
    expected.generation = generation
    assert reread(tmp_path) == expected


def test_odd_keys_round_trip_one_line_each(files: StateFiles, tmp_path: Path) -> None:
    """Keys with newlines, quotes and non-ASCII read back whole, one line per key."""
    state = SavedState(rev=9, keys={k: KeyState(n + 1) for n, k in enumerate(ODD_KEYS)})
    state.history = [(n + 1, k, False) for n, k in enumerate(ODD_KEYS)]
    files.write_snapshot(state)
    files.append([Deadline(k, 5) for k in ODD_KEYS])
    read = reread(tmp_path)
    assert (list(read.keys), [k for _, k, _ in read.history]) == (ODD_KEYS, ODD_KEYS)
    assert [s.expires for s in read.keys.values()] == [5] * len(ODD_KEYS)
    meta = (tmp_path / META_NAME).read_bytes()
    assert meta.count(b"\n") == 1 + 2 * len(ODD_KEYS)


def test_new_journal_holds_only_its_header(files: StateFiles, tmp_path: Path) -> None:
    """write_snapshot begins a journal of the snapshot's generation, with nothing in it."""
    generation = files.write_snapshot(sample())
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b'{"journal":%d}\n' % generation
    assert files.journal_size == len((tmp_path / JOURNAL_NAME).read_bytes())


def test_generations_grow(files: StateFiles) -> None:
    """Each snapshot gets a generation past the last."""
    assert [files.write_snapshot(sample()) for _ in range(3)] == [1, 2, 3]


def test_generation_passes_those_found_on_disk(tmp_path: Path) -> None:
    """A new object writes past the generations already in the folder, even without read()."""
    write_lines(
        tmp_path / META_NAME, {"meta": 1, "rev": 1, "clean": True, "journal": 7, "base": 0}
    )
    write_lines(tmp_path / JOURNAL_NAME, {"journal": 9})
    files = StateFiles(str(tmp_path))
    try:
        assert files.write_snapshot(SavedState()) == 10
    finally:
        files.close()


def test_reservation_raises_rev_and_makes_unclean(files: StateFiles, tmp_path: Path) -> None:
    """A reservation in the journal moves the counter past it; the stop was not clean."""
    files.write_snapshot(sample())
    files.append([Reserve(1_000_042)])
    read = reread(tmp_path)
    assert (read.rev, read.clean) == (1_000_042, False)


def test_lower_reservation_never_lowers_rev(files: StateFiles, tmp_path: Path) -> None:
    """A reservation below the snapshot's counter leaves it as it is."""
    files.write_snapshot(sample())
    files.append([Reserve(5)])
    assert reread(tmp_path).rev == 42


def test_deadlines_replay_onto_keys(files: StateFiles, tmp_path: Path) -> None:
    """Deadlines set, clear and add expiry times; the last for a key counts."""
    files.write_snapshot(sample())
    files.append([Deadline("a", 7), Deadline("b", None), Deadline("new", 8)])
    files.append([Deadline("a", 9), Deadline("never", None)])
    read = reread(tmp_path)
    assert read.keys == {
        "a": KeyState(40, 9, 123),
        "b": KeyState(42, None, None),
        "new": KeyState(0, 8, None),
    }
    assert read.clean is False


def test_stale_journal_deadlines_are_ignored(files: StateFiles, tmp_path: Path) -> None:
    """A journal of an earlier snapshot (a crash between the two files) is not replayed."""
    files.write_snapshot(sample())
    files.append([Deadline("a", 7)])
    old_journal = (tmp_path / JOURNAL_NAME).read_bytes()
    generation = files.write_snapshot(sample())
    (tmp_path / JOURNAL_NAME).write_bytes(old_journal)
    expected = sample()
    expected.generation = generation
    assert reread(tmp_path) == expected


def test_stale_journal_reservations_still_count(files: StateFiles, tmp_path: Path) -> None:
    """A stale journal's reservations raise the counter, so that revisions never go back."""
    files.write_snapshot(sample())
    files.append([Reserve(1_000_000)])
    old_journal = (tmp_path / JOURNAL_NAME).read_bytes()
    files.write_snapshot(sample())
    (tmp_path / JOURNAL_NAME).write_bytes(old_journal)
    read = reread(tmp_path)
    assert (read.rev, read.clean) == (1_000_000, True)


def test_torn_last_line_is_skipped_with_one_warning(
    files: StateFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A record cut short by a crash is skipped, named by file and line; the rest is kept."""
    files.write_snapshot(sample())
    files.append([Reserve(100), Deadline("a", 7)])
    files.close()
    with open(tmp_path / JOURNAL_NAME, "ab") as journal:
        journal.write(b'{"reserve": 2000')
    with caplog.at_level(logging.WARNING, logger="objstore.cache"):
        read = reread(tmp_path)
    assert (read.rev, read.keys["a"].expires) == (100, 7)
    assert [r.getMessage() for r in caplog.records] == [
        f"{JOURNAL_NAME}: line 4 cannot be read; skipped it"
    ]


def test_many_bad_lines_are_warned_about_in_a_few_warnings(
    files: StateFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten bad lines are named one by one, the rest counted in one warning."""
    files.write_snapshot(sample())
    files.close()
    with open(tmp_path / JOURNAL_NAME, "ab") as journal:
        journal.write(b"garbage\n" * 1000)
    with caplog.at_level(logging.WARNING, logger="objstore.cache"):
        reread(tmp_path)
    assert len(caplog.records) == 11
    assert (
        caplog.records[-1].getMessage() == f"{JOURNAL_NAME}: 990 more lines skipped or corrected"
    )


def test_garbled_header_is_set_aside(tmp_path: Path) -> None:
    """A snapshot with a garbled header is renamed; the state is unclean, past the journal."""
    (tmp_path / META_NAME).write_bytes(b'{"meta": 1, "rev": \n{"k": "a", "r": 1}\n')
    write_lines(tmp_path / JOURNAL_NAME, {"journal": 3}, {"reserve": 77})
    read = reread(tmp_path)
    assert read == SavedState(rev=77, clean=False, base=77)
    assert [n.startswith(META_NAME + ".") for n in set_aside(tmp_path)] == [True]
    assert not (tmp_path / META_NAME).exists()


def test_garbled_journal_header_keeps_its_reservations(files: StateFiles, tmp_path: Path) -> None:
    """A journal with a garbled header still raises the counter; its deadlines do not count."""
    generation = files.write_snapshot(sample())
    files.close()
    write_lines(tmp_path / JOURNAL_NAME, "{garbled", {"reserve": 500}, {"k": "a", "x": 1})
    read = reread(tmp_path)
    assert (read.rev, read.clean, read.keys["a"].expires, read.generation) == (
        500,
        False,
        None,
        generation,
    )


def test_missing_snapshot_beside_a_journal_is_unclean(tmp_path: Path) -> None:
    """A journal without its snapshot: nothing is known but the reservations."""
    write_lines(tmp_path / JOURNAL_NAME, {"journal": 3}, {"reserve": 12})
    assert reread(tmp_path) == SavedState(rev=12, clean=False, base=12)


def test_bad_key_lines_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Key and history lines with invalid keys or wrong types are skipped, the others kept."""
    write_lines(
        tmp_path / META_NAME,
        {"meta": 1, "rev": 10, "clean": True, "journal": 1, "base": 0},
        {"k": "", "r": 1, "x": None, "c": None},
        {"k": 5, "r": 1, "x": None, "c": None},
        {"k": "x" * 1025, "r": 1, "x": None, "c": None},
        {"k": "bool", "r": True, "x": None, "c": None},
        {"k": "neg", "r": -1, "x": None, "c": None},
        {"k": "crc", "r": 1, "x": None, "c": 2**32},
        {"k": "str", "r": 1, "x": "soon", "c": None},
        '{"k": "\\ud800", "r": 1, "x": null, "c": null}',
        {"k": "ok", "r": 3, "x": 4, "c": 5},
        {"h": 2, "k": "ok", "d": "no"},
        {"h": 3, "k": "ok", "d": False},
        {"h": 3, "k": "again", "d": False},
        {"h": 11, "k": "ahead", "d": False},
        [1, 2],
    )
    with caplog.at_level(logging.WARNING, logger="objstore.cache"):
        read = reread(tmp_path)
    assert (read.keys, read.history) == ({"ok": KeyState(3, 4, 5)}, [(3, "ok", False)])
    assert [r.getMessage() for r in caplog.records][:2] == [
        f"{META_NAME}: line 2 cannot be read; skipped it",
        f"{META_NAME}: line 3 cannot be read; skipped it",
    ]
    assert len(caplog.records) == 10 + 1  # the first ten, then a count


def test_key_revision_past_the_counter_raises_it(tmp_path: Path) -> None:
    """A key line newer than the header's counter moves the counter, and the state is unclean."""
    write_lines(
        tmp_path / META_NAME,
        {"meta": 1, "rev": 10, "clean": True, "journal": 1, "base": 0},
        {"k": "a", "r": 20, "x": None, "c": None},
    )
    read = reread(tmp_path)
    assert (read.rev, read.clean, read.keys) == (20, False, {"a": KeyState(20)})


def test_history_keeps_the_newest_and_moves_the_base(tmp_path: Path) -> None:
    """Past the history limit the oldest entries go, and the base rises past them."""
    state = SavedState(rev=100, history=[(n, f"k{n}", False) for n in range(1, 101)])
    StateFiles(str(tmp_path)).write_snapshot(state)
    files = StateFiles(str(tmp_path), history_limit=10)
    read = files.read()
    files.close()
    assert (read.base, [h[0] for h in read.history]) == (90, list(range(91, 101)))


def test_overlong_line_is_skipped(files: StateFiles, tmp_path: Path) -> None:
    """A line past the bound is skipped unread; the lines after it count."""
    files.write_snapshot(sample())
    files.close()
    with open(tmp_path / JOURNAL_NAME, "ab") as journal:
        journal.write(b'{"reserve": ' + b"1" * MAX_LINE_BYTES + b"}\n")
        journal.write(b'{"reserve": 300}\n')
    assert reread(tmp_path).rev == 300


def test_large_journal_is_read_line_by_line(files: StateFiles, tmp_path: Path) -> None:
    """A 12 MB journal (one 10 MB line, 2 MB of records) is read in well under 1 MiB."""
    files.write_snapshot(sample())
    files.close()
    with open(tmp_path / JOURNAL_NAME, "ab") as journal:
        journal.write(b"x" * 10_000_000 + b"\n")
        journal.write(b'{"reserve": 1000000}\n' * 100_000)
        journal.write(b'{"reserve": 2000000}\n')
    tracemalloc.start()
    try:
        read = reread(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (read.rev, peak < 1 << 20) == (2_000_000, True)


def test_append_before_a_snapshot_is_refused(files: StateFiles) -> None:
    """Records go only into a journal this object began."""
    with pytest.raises(RuntimeError, match="write a snapshot"):
        files.append([Reserve(1)])


def test_reservations_are_flushed_to_disk(
    files: StateFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append with a reservation is flushed; one with only deadlines is not."""
    files.write_snapshot(sample())
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = (tmp_path / JOURNAL_NAME).stat().st_ino
    files.append([Deadline("a", 1)])
    assert synced == []
    files.append([Deadline("a", 2), Reserve(2_000_000)])
    assert synced == [journal]


def test_appends_grow_the_journal_size(files: StateFiles, tmp_path: Path) -> None:
    """Records are appended as compact lines, and journal_size counts the bytes."""
    files.write_snapshot(sample())
    files.append([Reserve(1_000_000), Deadline("a", None)])
    journal = b'{"journal":1}\n{"reserve":1000000}\n{"k":"a","x":null}\n'
    assert (tmp_path / JOURNAL_NAME).read_bytes() == journal
    assert files.journal_size == len(journal)


def test_read_counts_the_journal_size(files: StateFiles, tmp_path: Path) -> None:
    """After a read, journal_size is the size of the journal found."""
    files.write_snapshot(sample())
    files.append([Reserve(1_000_000)])
    other = StateFiles(str(tmp_path))
    other.read()
    assert other.journal_size == (tmp_path / JOURNAL_NAME).stat().st_size


def test_snapshot_after_appends_is_clean(files: StateFiles, tmp_path: Path) -> None:
    """A snapshot written at a clean stop leaves nothing to replay."""
    files.write_snapshot(sample())
    files.append([Reserve(1_000_000), Deadline("a", 5)])
    state = sample()
    state.keys["a"].expires = 5
    generation = files.write_snapshot(state)
    state.generation = generation
    assert reread(tmp_path) == state


@needs_symlinks
def test_snapshot_link_is_set_aside_not_followed(tmp_path: Path) -> None:
    """A link under the snapshot's name is renamed, its target never read; the state is unclean."""
    target = tmp_path / "elsewhere"
    write_lines(target, {"meta": 1, "rev": 5, "clean": True, "journal": 1, "base": 0})
    (tmp_path / META_NAME).symlink_to(target)
    assert reread(tmp_path) == SavedState(rev=0, clean=False, base=0)
    assert [n.startswith(META_NAME + ".") for n in set_aside(tmp_path)] == [True]


@needs_symlinks
def test_journal_link_is_set_aside_not_followed(files: StateFiles, tmp_path: Path) -> None:
    """A link under the journal's name is renamed unread, and the state is unclean."""
    files.write_snapshot(sample())
    files.close()
    target = tmp_path / "elsewhere"
    (tmp_path / JOURNAL_NAME).rename(target)
    (tmp_path / JOURNAL_NAME).symlink_to(target)
    read = reread(tmp_path)
    assert (read.rev, read.clean) == (42, False)
    assert [n.startswith(JOURNAL_NAME + ".") for n in set_aside(tmp_path)] == [True]


@needs_symlinks
def test_snapshot_is_never_written_through_a_link(files: StateFiles, tmp_path: Path) -> None:
    """Writing replaces a link under the state files' names; its target keeps its bytes."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    (tmp_path / META_NAME).symlink_to(target)
    (tmp_path / JOURNAL_NAME).symlink_to(target)
    files.write_snapshot(sample())
    files.append([Reserve(1)])
    assert target.read_bytes() == b"untouched"
    assert not (tmp_path / META_NAME).is_symlink()
    assert not (tmp_path / JOURNAL_NAME).is_symlink()


def test_folder_directory_under_the_snapshot_name_is_set_aside(tmp_path: Path) -> None:
    """A folder where the snapshot should be is renamed out of the way."""
    (tmp_path / META_NAME).mkdir()
    assert reread(tmp_path).clean is False
    assert [n.startswith(META_NAME + ".") for n in set_aside(tmp_path)] == [True]


def test_folder_load_leaves_the_state_files_alone(files: StateFiles, tmp_path: Path) -> None:
    """Loading the folder neither reads nor removes the snapshot and journal."""
    files.write_snapshot(sample())
    report = load_folder(FolderWriter(str(tmp_path), swap_names=False))
    assert (report.values, report.set_aside, report.temp_files_removed) == ({}, [], 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL_NAME, META_NAME]


def test_folder_load_removes_a_snapshot_temporary_file(tmp_path: Path) -> None:
    """A snapshot's temporary file left by a crash is removed at startup."""
    (tmp_path / temp_name(META_NAME, 12, 1)).write_bytes(b'{"meta": 1')
    report = load_folder(FolderWriter(str(tmp_path), swap_names=False))
    assert (report.temp_files_removed, list(tmp_path.iterdir())) == (1, [])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="file size limits as on Linux")
def test_failed_append_is_cut_back_to_whole_lines(files: StateFiles, tmp_path: Path) -> None:
    """An append that fails halfway leaves no partial line: the next record reads back."""
    import resource

    files.write_snapshot(sample())
    files.append([Deadline("a", 1)])
    before = (tmp_path / JOURNAL_NAME).read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, limits[1]))
    try:
        with pytest.raises(OSError, match="too large"):
            files.append([Deadline("a", 2), Deadline("b", 3)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    assert (tmp_path / JOURNAL_NAME).read_bytes() == before
    files.append([Deadline("c", 4)])
    assert reread(tmp_path).keys["c"] == KeyState(0, 4)


@needs_symlinks
def test_folder_load_sets_aside_a_link_under_a_state_name(tmp_path: Path) -> None:
    """Loading the folder renames a link named like a state file, as it does for values."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"untouched")
    (tmp_path / JOURNAL_NAME).symlink_to(target)
    report = load_folder(FolderWriter(str(tmp_path), swap_names=False))
    assert [old for old, _ in report.set_aside] == [JOURNAL_NAME]
    assert (target.read_bytes(), (tmp_path / JOURNAL_NAME).exists()) == (b"untouched", False)
