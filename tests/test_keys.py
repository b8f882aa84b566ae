"""Tests for objstore.keys: key validation and the key <-> file name mapping (pure, no I/O)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from objstore.errors import InvalidKey
from objstore.keys import (
    FILE_NAME_SCHEME,
    MAX_KEY_BYTES,
    PLAIN_NAME,
    ParsedName,
    file_name,
    is_hashed,
    parse_file_name,
    sidecar_name,
    validate_key,
)

EXAMPLES = settings(max_examples=300, deadline=None)

WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"COM{d}" for d in range(10)] + [f"LPT{d}" for d in range(10)]
)
FORBIDDEN_CHARS = set('/\\:*?"<>|')
TRICKY_CHARS = (
    'aAbBcCkKlLnNoOsSzZ0199._-~% /\\:*?"<>|\t\n\x00\x7f'
    "\u00e9\u00c9e\u0301\u212a\u017f\u00df\u1e9e\u0130\u0131\ufb01"
    "\U0001f600\U00010400\U0001d518"
)


def sha(key: str) -> str:
    """The lowercase hex SHA-256 of key's UTF-8 bytes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def is_valid(key: str) -> bool:
    """True when validate_key accepts key."""
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def clip(text: str) -> str:
    """text cut to at most MAX_KEY_BYTES UTF-8 bytes, at a character boundary."""
    return text.encode("utf-8")[:MAX_KEY_BYTES].decode("utf-8", "ignore")


def reference_stem(key: str) -> str:
    """The stem of key per rules 1 to 3 of the scheme, written independently of objstore."""
    plain = "abcdefghijklmnopqrstuvwxyz0123456789-_."
    stem = "".join(chr(b) if chr(b) in plain else f"%{b:02X}" for b in key.encode("utf-8"))
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if stem.partition(".")[0].upper() in WINDOWS_DEVICES:
        stem = f"%{ord(stem[0]):02X}" + stem[1:]
    return stem


@st.composite
def reserved_keys(draw: st.DrawFn) -> str:
    """Windows device names in mixed case, maybe followed by dots, digits or spaces."""
    word = draw(st.sampled_from(sorted(WINDOWS_DEVICES)))
    mixed = "".join(char.lower() if draw(st.booleans()) else char for char in word)
    lead = draw(st.sampled_from(["", "", ".", " "]))
    return lead + mixed + draw(st.text(alphabet=".xX1 \u00e9~", max_size=4))


plain_keys = st.text(min_size=1).filter(is_valid)
tricky_keys = st.text(alphabet=TRICKY_CHARS, min_size=1, max_size=12)
long_keys = st.text(
    alphabet=st.sampled_from("aZ.%-\u00e9\U0001f600") | st.characters(codec="utf-8"),
    min_size=60,
    max_size=1024,
).map(clip)
boundary_keys = st.builds(
    lambda size, tail: "a" * size + tail,
    st.integers(min_value=90, max_value=205),
    st.text(alphabet="aA.\u00e9", max_size=40),
)
keys = st.one_of(plain_keys, tricky_keys, reserved_keys(), long_keys, boundary_keys)
names = keys.map(file_name)
any_chars = st.characters() | st.characters(categories=["Cs"]) | st.sampled_from("aA.~%0F2E")
any_names = st.text(alphabet=any_chars) | st.text(alphabet=any_chars).map(
    lambda stem: stem + ".json"
)


def valid_variants(spellings: list[str]) -> list[str]:
    """The distinct valid keys among spellings, in order."""
    return [key for key in dict.fromkeys(spellings) if is_valid(key)]


distinct_keys = st.lists(keys, min_size=2, max_size=8, unique=True)
case_variants = keys.map(
    lambda key: valid_variants(
        [key, key.lower(), key.upper(), key.swapcase(), key.casefold(), key.title()]
    )
)
normal_variants = keys.map(
    lambda key: valid_variants(
        [key] + [unicodedata.normalize(form, key) for form in ("NFC", "NFD", "NFKC", "NFKD")]
    )
)


# validate_key


@pytest.mark.parametrize(("value", "shown"), [(5, "5"), (None, "null"), ([], "[]"), (1.5, "1.5")])
def test_validate_key_rejects_non_strings(value: object, shown: str) -> None:
    """A key that is not a string is rejected with a message showing it as JSON."""
    with pytest.raises(InvalidKey) as caught:
        validate_key(value)
    assert str(caught.value) == f"invalid key: expected a non-empty string, got {shown}"


def test_validate_key_rejects_empty_string() -> None:
    """The empty string is rejected."""
    with pytest.raises(InvalidKey) as caught:
        validate_key("")
    assert str(caught.value) == 'invalid key: expected a non-empty string, got ""'


@pytest.mark.parametrize("key", ["\ud800", "a\udfffb", "\ud83d\ude00"])
def test_validate_key_rejects_lone_surrogates(key: str) -> None:
    """A key holding lone surrogates (not encodable as UTF-8) is rejected."""
    with pytest.raises(InvalidKey) as caught:
        validate_key(key)
    assert str(caught.value) == "invalid key: not valid Unicode (contains a lone surrogate)"


@pytest.mark.parametrize(
    ("key", "size"),
    [
        ("a" * 1025, 1025),
        ("a" * 1023 + "\u00e9", 1025),
        ("\u00e9" * 513, 1026),
        ("\U0001f600" * 257, 1028),
    ],
)
def test_validate_key_rejects_over_1024_bytes(key: str, size: int) -> None:
    """A key over 1024 UTF-8 bytes is rejected with its size in the message."""
    with pytest.raises(InvalidKey) as caught:
        validate_key(key)
    assert str(caught.value) == f"invalid key: {size} bytes in UTF-8, over the limit of 1024"


@pytest.mark.parametrize("key", ["a" * 1024, "\u00e9" * 512, "\U0001f600" * 256])
def test_validate_key_accepts_exactly_1024_bytes(key: str) -> None:
    """A key of exactly MAX_KEY_BYTES UTF-8 bytes is valid."""
    assert MAX_KEY_BYTES == 1024
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["..", ".", "a/b", "CON", " ", "\x00", "\n", "~", "%", "%41"])
def test_validate_key_accepts_unusual_strings(key: str) -> None:
    """Dots, slashes, device names, spaces, control characters and % are valid keys."""
    assert validate_key(key) == key


def test_validate_key_returns_the_same_object() -> None:
    """validate_key returns its argument itself."""
    key = "player-position"
    assert validate_key(key) is key


# file_name examples


def test_plain_key_keeps_original_server_name() -> None:
    """A key of lowercase letters and dashes is stored under {key}.json."""
    assert file_name("player-position") == "player-position.json"


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("Foo", "%46oo.json"),
        ("a b", "a%20b.json"),
        ("a%20b", "a%2520b.json"),
        ("~", "%7E.json"),
        ("a.b_c-9", "a.b_c-9.json"),
        ("x.", "x..json"),
        ("\u00e9", "%C3%A9.json"),
        ("\U0001f600", "%F0%9F%98%80.json"),
        ("\x00\x7f", "%00%7F.json"),
    ],
)
def test_file_name_percent_encodes_other_bytes(key: str, name: str) -> None:
    """Bytes other than a-z 0-9 - _ . become %XX with uppercase hex digits."""
    assert file_name(key) == name


def test_file_name_of_parent_path_has_no_slash() -> None:
    """'../x' cannot escape the folder: both dot and slash are encoded."""
    assert file_name("../x") == "%2E.%2Fx.json"


@pytest.mark.parametrize(
    ("key", "name"), [(".hidden", "%2Ehidden.json"), (".", "%2E.json"), ("..", "%2E..json")]
)
def test_file_name_encodes_leading_dot(key: str, name: str) -> None:
    """A leading dot is encoded so no name is hidden, '.' or '..'."""
    assert file_name(key) == name


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("con", "%63on.json"),
        ("NUL", "%4E%55%4C.json"),
        ("nul.txt", "%6Eul.txt.json"),
        ("com1", "%63om1.json"),
        ("com0", "%63om0.json"),
        ("lpt9.x", "%6Cpt9.x.json"),
        ("aux", "%61ux.json"),
        ("prn..", "%70rn...json"),
    ],
)
def test_file_name_escapes_windows_device_names(key: str, name: str) -> None:
    """A stem whose part before the first dot is a device name gets its first byte escaped."""
    assert file_name(key) == name


@pytest.mark.parametrize("key", ["cons", "com10", "xcon", "con-x", "lpt", "a.con"])
def test_file_name_keeps_names_that_only_resemble_devices(key: str) -> None:
    """Only an exact device name before the first dot is escaped."""
    assert file_name(key) == key + ".json"


def test_composed_and_decomposed_keys_get_different_names() -> None:
    """NFC and NFD spellings of 'é' are different keys with different names."""
    assert file_name("\u00e9") == "%C3%A9.json"
    assert file_name("e\u0301") == "e%CC%81.json"


def test_stem_of_200_chars_is_not_hashed() -> None:
    """A stem of exactly 200 characters is used as it is."""
    assert file_name("a" * 200) == "a" * 200 + ".json"


def test_long_key_gets_hashed_name() -> None:
    """A stem over 200 characters becomes 100 characters, '~' and the key's SHA-256."""
    key = "a" * 201
    assert file_name(key) == "a" * 100 + "~" + sha(key) + ".json"


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("a" * 97 + "A" * 40, "a" * 97 + "%41"),
        ("a" * 98 + "A" * 40, "a" * 98),
        ("a" * 99 + "A" * 40, "a" * 99),
    ],
)
def test_hashed_prefix_does_not_split_escapes(key: str, prefix: str) -> None:
    """The prefix of a hashed name is cut before a %XX escape rather than through it."""
    assert file_name(key) == prefix + "~" + sha(key) + ".json"


def test_longest_key_name_fits_with_temp_suffix() -> None:
    """A 1024-byte key that expands most still gets a name far under 255 bytes."""
    name = file_name("A" * 1024)
    assert len(name) <= 170
    assert len(name.encode()) + 20 < 255


def test_file_name_rejects_invalid_key() -> None:
    """file_name raises InvalidKey for an invalid key instead of naming it."""
    with pytest.raises(InvalidKey):
        file_name("")


def test_scheme_documentation_examples_hold() -> None:
    """Every '"key" -> "stem"' example in FILE_NAME_SCHEME is what file_name gives."""
    examples = re.findall(r'"([^"]+)" -> "([^"]+)"', FILE_NAME_SCHEME)
    assert len(examples) >= 5
    for key, stem in examples:
        assert file_name(key) in (stem, stem + ".json"), key


# file_name properties


@EXAMPLES
@given(distinct_keys | case_variants | normal_variants)
def test_distinct_keys_give_distinct_names(some_keys: list[str]) -> None:
    """Distinct keys never share a name."""
    assert len({file_name(key) for key in some_keys}) == len(some_keys)


@EXAMPLES
@given(distinct_keys | case_variants)
def test_names_stay_distinct_when_case_is_ignored(some_keys: list[str]) -> None:
    """Names of distinct keys differ even after casefold(), lower() or upper()."""
    for fold in (str.casefold, str.lower, str.upper):
        assert len({fold(file_name(key)) for key in some_keys}) == len(some_keys)


@EXAMPLES
@given(distinct_keys | normal_variants)
def test_names_stay_distinct_under_unicode_normalisation(some_keys: list[str]) -> None:
    """Names of distinct keys differ even after NFC, NFD, NFKC or NFKD normalisation."""
    for form in ("NFC", "NFD", "NFKC", "NFKD"):
        normalised = {unicodedata.normalize(form, file_name(key)) for key in some_keys}
        assert len(normalised) == len(some_keys)


@EXAMPLES
@given(names)
def test_names_are_portable(name: str) -> None:
    """Names are ASCII .json names with no reserved or control characters and no leading dot."""
    assert name.isascii()
    assert name.endswith(".json")
    assert not name.startswith(".")
    assert not FORBIDDEN_CHARS & set(name)
    assert all(32 <= ord(char) < 127 for char in name)


@EXAMPLES
@given(names)
def test_names_avoid_windows_device_names(name: str) -> None:
    """The part of a name before its first dot is never a Windows device name."""
    assert name.partition(".")[0].upper() not in WINDOWS_DEVICES


@EXAMPLES
@given(names)
def test_names_leave_room_for_temp_suffix(name: str) -> None:
    """Every name, plus 20 bytes for a temp name, stays under 255 bytes."""
    assert len(name.encode()) <= 205
    assert len(name.encode()) + 20 < 255


@EXAMPLES
@given(keys)
def test_parse_file_name_inverts_file_name(key: str) -> None:
    """A name parses back to its key, or to 'hashed' when the key is in a sidecar."""
    name = file_name(key)
    if "~" in name:
        assert parse_file_name(name) == ParsedName("hashed", None)
    else:
        assert parse_file_name(name) == ParsedName("canonical", key)


@EXAMPLES
@given(keys)
def test_file_name_matches_reference_encoding(key: str) -> None:
    """Short stems are the reference encoding; longer ones become a hashed name."""
    stem = reference_stem(key)
    if len(stem) <= 200:
        assert file_name(key) == stem + ".json"
    else:
        assert file_name(key).endswith("~" + sha(key) + ".json")
        assert stem.startswith(file_name(key).partition("~")[0])


@EXAMPLES
@given(names | any_names)
def test_is_hashed_agrees_with_parse_file_name(name: str) -> None:
    """is_hashed is true exactly for names parse_file_name calls hashed."""
    assert is_hashed(name) == (parse_file_name(name).kind == "hashed")


@EXAMPLES
@given(any_names)
def test_parse_file_name_is_consistent_on_any_text(name: str) -> None:
    """Any text parses without error, and canonical and legacy keys lead back to the name."""
    parsed = parse_file_name(name)
    if parsed.kind == "canonical":
        assert parsed.key is not None
        assert file_name(parsed.key) == name
    elif parsed.kind == "legacy":
        assert parsed.key is not None
        assert parsed.key + ".json" == name
        assert file_name(parsed.key) != name
    else:
        assert parsed.key is None


# parse_file_name examples


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("player-position.json", "player-position"),
        ("%46oo.json", "Foo"),
        ("%63on.json", "con"),
        ("%2E..json", ".."),
        ("a%20b.json", "a b"),
    ],
)
def test_parse_file_name_reads_canonical_names(name: str, key: str) -> None:
    """A name file_name produces parses as canonical with its key."""
    assert parse_file_name(name) == ParsedName("canonical", key)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Foo.json", "Foo"),
        ("my key.json", "my key"),
        ("%zz.json", "%zz"),
        ("%2ehidden.json", "%2ehidden"),
        ("%61.json", "%61"),
        ("con.json", "con"),
        ("CON.json", "CON"),
        ("a~b.json", "a~b"),
        ("a~" + "0" * 64 + ".json", "a~" + "0" * 64),
    ],
)
def test_parse_file_name_reads_legacy_names(name: str, key: str) -> None:
    """A .json name that is not canonical is a legacy name whose key is the stem verbatim."""
    assert parse_file_name(name) == ParsedName("legacy", key)


@pytest.mark.parametrize(
    "name",
    [
        "x.txt",
        ".x.json.tmp",
        ".json",
        ".hidden.json",
        "x.JSON",
        "a" * 100 + "~" + "0" * 64 + ".key",
        "\udcff.json",
        "a" * 1025 + ".json",
    ],
)
def test_parse_file_name_marks_other_files(name: str) -> None:
    """Temp files, sidecars, hidden files and stems that are not valid keys are 'other'."""
    assert parse_file_name(name) == ParsedName("other", None)


def test_parse_file_name_recognises_hashed_names() -> None:
    """A name file_name gives for a long key parses as hashed, with no key."""
    assert parse_file_name(file_name("A" * 300)) == ParsedName("hashed", None)


@pytest.mark.parametrize(
    "name",
    [
        "a" * 100 + "~" + "0" * 63 + ".json",
        "a" * 100 + "~" + "A" * 64 + ".json",
        "a" * 97 + "~" + "0" * 64 + ".json",
        "a" * 101 + "~" + "0" * 64 + ".json",
        "A" * 100 + "~" + "0" * 64 + ".json",
        "%61" + "a" * 97 + "~" + "0" * 64 + ".json",
    ],
)
def test_is_hashed_rejects_names_file_name_never_gives(name: str) -> None:
    """Look-alikes with a bad digest or a non-canonical prefix are not hashed."""
    assert not is_hashed(name)


def test_sidecar_name_swaps_json_for_key() -> None:
    """The sidecar of a hashed name is its stem plus '.key'."""
    name = file_name("A" * 300)
    assert sidecar_name(name) == name.removesuffix(".json") + ".key"
    assert parse_file_name(sidecar_name(name)) == ParsedName("other", None)


def test_sidecar_name_rejects_unhashed_names() -> None:
    """Asking for the sidecar of a name that is not hashed is a ValueError."""
    with pytest.raises(ValueError, match=r'^not a hashed file name: "foo\.json"$'):
        sidecar_name("foo.json")


# PLAIN_NAME: the names told canonical by one match


def _canonical_as_own_stem(name: str) -> bool:
    """Whether *name* is stem + ".json" for a valid key equal to that stem, named so."""
    stem = name.removesuffix(".json")
    if stem == name:
        return False
    try:
        return file_name(stem) == name
    except InvalidKey:
        return False


@EXAMPLES
@given(
    st.text(alphabet="acilmnoprtuxk0123456789.-_~%A /", max_size=205).map(lambda s: s + ".json")
)
def test_plain_name_matches_exactly_the_keys_named_by_themselves(name: str) -> None:
    """A name matches PLAIN_NAME exactly when its stem is a key whose file name it is."""
    assert (PLAIN_NAME.fullmatch(name) is not None) == _canonical_as_own_stem(name)


@pytest.mark.parametrize(
    "name",
    ["con.json", "nul.txt.json", "com7.json", "lpt0.x.json", ".a.json", "a" * 201 + ".json"],
)
def test_plain_name_leaves_devices_dots_and_long_stems_to_the_full_parse(name: str) -> None:
    """Device names, hidden names and stems over 200 characters are not plain."""
    assert PLAIN_NAME.fullmatch(name) is None


@pytest.mark.parametrize("name", ["console.json", "com10.json", "a.json", "a" * 200 + ".json"])
def test_plain_name_matches_look_alikes_of_devices_and_200_characters(name: str) -> None:
    """Names that only resemble devices, and a stem of exactly 200 characters, are plain."""
    assert PLAIN_NAME.fullmatch(name) is not None
    assert parse_file_name(name) == ParsedName("canonical", name.removesuffix(".json"))
