"""The names the store puts in the cache folder, and what a name found there is: pure."""

from __future__ import annotations

import pytest

from objstore.foldernames import (
    HIDDEN_NAMES,
    JOURNAL_NAME,
    LOCK_NAME,
    META_NAME,
    Entry,
    classify,
    file_name,
    old_name,
    set_aside_name,
    sidecar_name,
    spare_name,
    temp_name,
)

LONG_KEY = "k" * 1000


def test_hidden_names_of_a_key() -> None:
    """Spares, second names and temporary files are the file name, hidden, with a suffix."""
    assert (spare_name("k.json"), old_name("k.json"), temp_name("k.json", 12, 3)) == (
        ".k.json.spare",
        ".k.json.old",
        ".k.json.12-3.tmp",
    )


def test_set_aside_names_count_from_the_second() -> None:
    """The first set-aside name has the time alone; later ones add a counter."""
    assert set_aside_name("k.json", "20260101T000000") == "k.json.20260101T000000.corrupt"
    assert set_aside_name("k.json", "20260101T000000", 2) == "k.json.20260101T000000-2.corrupt"


@pytest.mark.parametrize(
    ("name", "entry"),
    [
        ("k.json", Entry("canonical", "k")),
        ("%46oo.json", Entry("canonical", "Foo")),
        ("Foo.json", Entry("legacy", "Foo")),
        (file_name(LONG_KEY), Entry("hashed")),
        (sidecar_name(file_name(LONG_KEY)), Entry("sidecar", of=file_name(LONG_KEY))),
        (".k.json.spare", Entry("spare", of="k.json")),
        (".k.json.old", Entry("leftover")),
        (".k.json.12-3.tmp", Entry("leftover")),
        (LOCK_NAME, Entry("lock")),
        ("k.json.20260101T000000.corrupt", Entry("set-aside")),
        (".objstore.meta", Entry("state")),
        (".objstore.journal", Entry("state")),
        (".objstore.meta.20260101T000000.corrupt", Entry("set-aside")),
        (temp_name(".objstore.meta", 12, 3), Entry("leftover")),
        (".objstore.metadata", Entry("other")),
        ("notes.txt", Entry("other")),
        ("notes.key", Entry("other")),
        (".notes.txt.spare", Entry("other")),
        (".hidden.json", Entry("other")),
    ],
)
def test_classify(name: str, entry: Entry) -> None:
    """Every name the store writes is recognised, and nothing else is taken for one."""
    assert classify(name) == entry


def test_only_value_files_are_loaded_and_other_files_are_not_ours() -> None:
    """Value files are loaded; notes and set-aside files are neither loaded nor touched."""
    assert [classify(n).is_value for n in ("k.json", ".k.json.spare", LOCK_NAME)] == [
        True,
        False,
        False,
    ]
    assert [classify(n).is_ours for n in ("notes.txt", "k.json.1.corrupt", LOCK_NAME)] == [
        False,
        False,
        True,
    ]


def test_documentation_names_the_lock_file() -> None:
    """HIDDEN_NAMES documents the lock file under its real name."""
    assert LOCK_NAME in HIDDEN_NAMES


def test_documentation_names_the_state_files() -> None:
    """HIDDEN_NAMES documents the snapshot and the journal under their real names."""
    assert (META_NAME in HIDDEN_NAMES, JOURNAL_NAME in HIDDEN_NAMES) == (True, True)


def test_state_files_are_ours_but_not_values() -> None:
    """The snapshot and the journal are the store's own files, never loaded as values."""
    entries = [classify(META_NAME), classify(JOURNAL_NAME)]
    assert [(e.is_ours, e.is_value) for e in entries] == [(True, False), (True, False)]
