"""The key space in memory: revisions, the change history and key order, without I/O."""

from __future__ import annotations

from objstore.keyspace import Change, KeySpace


def test_every_change_takes_the_next_revision() -> None:
    """Sets and removals number one counter; a key remembers its last change."""
    space = KeySpace()
    assert space.put("a", b"1") == 1
    assert space.put("b", b"2") == 2
    assert space.put("a", b"3") == 3
    assert space.remove("b") == 4
    assert (space.rev, space.revision("a"), space.revision("b")) == (4, 3, 0)


def test_removing_a_missing_key_changes_nothing() -> None:
    """A removal of a key without a value takes no revision and is not remembered."""
    space = KeySpace()
    space.put("a", b"1")
    assert space.remove("zz") is None
    assert space.rev == 1
    assert space.history == [Change(1, "a", False)]


def test_changes_since_gives_the_latest_change_of_each_key_in_revision_order() -> None:
    """A resume sees each changed key once, at its last change, deletions included."""
    space = KeySpace()
    space.put("a", b"1")  # 1
    space.put("b", b"1")  # 2
    space.put("a", b"2")  # 3
    space.remove("b")  # 4
    space.put("c", b"1")  # 5
    assert space.changes_since(1) == [
        Change(3, "a", False),
        Change(4, "b", True),
        Change(5, "c", False),
    ]
    assert space.changes_since(5) == []


def test_changes_since_is_none_outside_the_history() -> None:
    """Before the history's base or ahead of the store, a resume cannot be exact."""
    space = KeySpace(history_size=3)
    for number in range(5):
        space.put(f"k{number}", b"1")
    assert space.base == 2
    assert space.changes_since(1) is None
    assert space.changes_since(2) == [
        Change(3, "k2", False),
        Change(4, "k3", False),
        Change(5, "k4", False),
    ]
    assert space.changes_since(6) is None


def test_forget_history_makes_every_earlier_resume_a_reset() -> None:
    """After forgetting, only the current revision resumes exactly."""
    space = KeySpace()
    space.put("a", b"1")
    space.forget_history()
    assert space.changes_since(0) is None
    assert space.changes_since(1) == []


def test_keys_lists_in_utf8_byte_order_with_prefix_after_and_limit() -> None:
    """Listing pages through keys in code point order, which is UTF-8 byte order."""
    space = KeySpace()
    for key in ["b", "a/2", "a/1", "a/10", "é", "\U0001f600", "a"]:
        space.put(key, b"1")
    assert space.keys() == ["a", "a/1", "a/10", "a/2", "b", "é", "\U0001f600"]
    listed = space.keys()
    assert sorted(k.encode() for k in listed) == [k.encode() for k in listed]
    assert space.keys("a/") == ["a/1", "a/10", "a/2"]
    assert space.keys("a/", after="a/1", limit=1) == ["a/10"]
    assert space.keys("a/", after="a/2") == []
    assert space.keys("a/", after="0") == ["a/1", "a/10", "a/2"]
    assert space.keys(limit=2) == ["a", "a/1"]


def test_the_key_order_follows_keys_that_come_and_go() -> None:
    """Keys made or removed after the first listing are listed correctly."""
    space = KeySpace()
    space.put("m", b"1")
    assert space.keys() == ["m"]
    space.put("a", b"1")
    space.put("z", b"1")
    space.remove("m")
    space.put("a", b"2")
    assert space.keys() == ["a", "z"]
    assert list(space.matching("")) == ["a", "z"]


def test_matching_finds_every_key_with_the_prefix_however_it_ends() -> None:
    """Keys ending in the highest code points still match their prefix."""
    space = KeySpace()
    for key in ["p", "p\U0010ffff\U0010ffff\U0010ffff", "pa", "q", "o"]:
        space.put(key, b"1")
    assert list(space.matching("p")) == ["p", "pa", "p\U0010ffff\U0010ffff\U0010ffff"]
