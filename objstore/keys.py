"""Key validation and the mapping between keys and the names of the files that store them.

Pure functions only: this module does no file I/O, knows nothing of asyncio and never sees
JSON values. The naming scheme is documented in :data:`FILE_NAME_SCHEME`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote_to_bytes

from objstore.errors import InvalidKey, describe

__all__ = [
    "FILE_NAME_SCHEME",
    "MAX_KEY_BYTES",
    "PLAIN_NAME",
    "ParsedName",
    "file_name",
    "is_hashed",
    "parse_file_name",
    "sidecar_name",
    "validate_key",
]

#: Longest key accepted, counted in UTF-8 bytes.
MAX_KEY_BYTES: Final = 1024

FILE_NAME_SCHEME: Final = """\
Every key is stored in its own file in the cache folder, named as follows.

1. Take the key's UTF-8 bytes. The bytes of a-z, 0-9, "-", "_" and "." are kept
   as they are; every other byte becomes "%XX" with two UPPERCASE hex digits.
   Uppercase letters are encoded too: "Foo" -> "%46oo", "a b" -> "a%20b",
   "é" -> "%C3%A9", "~" -> "%7E", "%" -> "%25".
2. A leading "." becomes "%2E", so no name is hidden, "." or "..":
   ".hidden" -> "%2Ehidden".
3. If the part before the first "." is a Windows device name (CON, PRN, AUX, NUL,
   COM0-COM9, LPT0-LPT9, compared case-insensitively), its first character
   becomes "%XX": "con" -> "%63on", "nul.txt" -> "%6Eul.txt".
4. This gives the stem, and the file name is stem + ".json", so plain keys keep
   the original server's names: "player-position" -> "player-position.json".
5. If the stem is longer than 200 characters, the name is instead
   prefix + "~" + digest + ".json", where prefix is the stem's first 100
   characters (98 or 99 when cutting at 100 would split a "%XX") and digest is
   the 64 lowercase hex digits of the SHA-256 of the key's UTF-8 bytes. Such a
   hashed name does not hold the whole key: the key is kept in the sidecar file
   prefix + "~" + digest + ".key". A "~" appears in no other name.

So names are ASCII, at most 205 bytes long, never start with "." and hold none of
/ \\ : * ? " < > | nor control characters. Two keys never share a name, even on a
case-insensitive file system (outside "%XX" escapes names hold only lowercase
letters and escapes always use uppercase hex digits, so names that differ still
differ after case folding) or under Unicode normalisation (which leaves ASCII alone).

Reading the folder, a name ending in ".json" and not starting with "." is:
hashed if it has the form of rule 5; canonical if its stem decodes ("%XX" with
uppercase hex digits only) to a key whose name is exactly this name; otherwise
legacy if its stem is a valid key: written by the original server, which stored
a key verbatim as key + ".json" ("Foo.json" holds the key "Foo"); anything else is
not a value file. The one known ambiguity: an original-server key that is itself a
canonical stem, such as "a%20b", is read as the key that stem encodes ("a b").
Legacy files should be renamed to their canonical names before use: on a
case-insensitive file system the legacy "Foo.json" is the same file as "foo.json",
the name of the key "foo".
"""

_SUFFIX: Final = ".json"
_SIDECAR_SUFFIX: Final = ".key"
_HASH_MARK: Final = "~"
_MAX_STEM_CHARS: Final = 200
_PREFIX_CHARS: Final = 100

_PLAIN_BYTES: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_.")
_BYTE_TOKENS: Final = tuple(chr(b) if b in _PLAIN_BYTES else f"%{b:02X}" for b in range(256))
_WINDOWS_DEVICES: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{digit}" for digit in range(10)]
    + [f"LPT{digit}" for digit in range(10)]
)
_ENCODED_RE: Final = re.compile(r"(?:[a-z0-9_.-]|%[0-9A-F]{2})+")
_HASHED_RE: Final = re.compile(r"(?P<prefix>[^~]*)~[0-9a-f]{64}\.json")

#: Matches (with ``fullmatch``) exactly the names whose stem is itself a key and its own
#: encoding: 1 to 200 of a-z, 0-9, "-", "_" and ".", not starting with ".", the part
#: before the first "." no Windows device name. Such a name is canonical and its key is
#: the name without ".json": the common case, told by one match instead of decoding the
#: stem and encoding it again (100,000 names are read at start).
PLAIN_NAME: Final = re.compile(
    r"(?!(?:con|prn|aux|nul|com[0-9]|lpt[0-9])\.)[a-z0-9_-][a-z0-9_.-]{0,199}\.json"
)


@dataclass(frozen=True, slots=True)
class ParsedName:
    """What a file name found in the cache folder stands for.

    ``kind`` is ``"canonical"`` (a name :func:`file_name` gives), ``"hashed"`` (a name for a
    long key, whose key is in a sidecar file), ``"legacy"`` (a name written by the original
    server) or ``"other"`` (not a value file). ``key`` is the key for canonical and legacy
    names and ``None`` otherwise.
    """

    kind: Literal["canonical", "hashed", "legacy", "other"]
    key: str | None


_HASHED: Final = ParsedName("hashed", None)
_OTHER: Final = ParsedName("other", None)


def validate_key(key: object) -> str:
    """Return key if it is a valid key, else raise InvalidKey.

    A valid key is a non-empty string, encodable as UTF-8 (no lone surrogates), of at most
    :data:`MAX_KEY_BYTES` bytes in UTF-8. Any such string is valid, including spaces,
    slashes, control characters, ``".."`` and ``"CON"``.
    """
    if not isinstance(key, str):
        raise InvalidKey(_not_a_key_message(key))
    problem = _string_problem(key)
    if problem is not None:
        raise InvalidKey(problem)
    return key


def file_name(key: str) -> str:
    """The file name (with .json) that stores key. key must be valid.

    See :data:`FILE_NAME_SCHEME`. Raises InvalidKey if key is not valid.
    """
    data = validate_key(key).encode("utf-8")
    stem = _encode_stem(data)
    if len(stem) > _MAX_STEM_CHARS:
        digest = hashlib.sha256(data).hexdigest()
        stem = f"{_cut_prefix(stem)}{_HASH_MARK}{digest}"
    return stem + _SUFFIX


def is_hashed(name: str) -> bool:
    """True when name is a hashed name, whose key is kept in a sidecar file.

    A hashed name is ``prefix~digest.json`` exactly as rule 5 of :data:`FILE_NAME_SCHEME`
    produces it: the prefix is 98 to 100 characters of canonical encoding and the digest is
    64 lowercase hex digits.
    """
    match = _HASHED_RE.fullmatch(name)
    if match is None:
        return False
    prefix = match["prefix"]
    return (
        _PREFIX_CHARS - 2 <= len(prefix) <= _PREFIX_CHARS
        and _ENCODED_RE.fullmatch(prefix) is not None
        and _encode_stem(unquote_to_bytes(prefix)) == prefix
    )


def sidecar_name(name: str) -> str:
    """For a hashed name, the name of the sidecar file that holds its key: stem + '.key'.

    Raises ValueError if name is not a hashed name.
    """
    if not is_hashed(name):
        raise ValueError(f"not a hashed file name: {describe(name)}")
    return name[: -len(_SUFFIX)] + _SIDECAR_SUFFIX


def parse_file_name(name: str) -> ParsedName:
    """What a file found in the cache folder is.

    Names not ending in ``.json`` or starting with ``.`` (temp files, sidecars) are
    ``"other"``. Then, in this order: a hashed name is ``"hashed"``; a name that
    :func:`file_name` gives for some key is ``"canonical"`` with that key; a name whose
    stem is a valid key is ``"legacy"`` with the stem as its key (the original server
    stored ``{key}.json`` verbatim); anything else is ``"other"``. Because canonical names
    are recognised first, ``a%20b.json`` is read as the key ``"a b"``, never as a legacy
    key ``"a%20b"``.
    """
    if PLAIN_NAME.fullmatch(name) is not None:
        return ParsedName("canonical", name[: -len(_SUFFIX)])
    if not name.endswith(_SUFFIX) or name.startswith("."):
        return _OTHER
    stem = name[: -len(_SUFFIX)]
    if _HASH_MARK in stem and is_hashed(name):
        return _HASHED
    key = _decode_stem(stem)
    if key is not None and file_name(key) == name:
        return ParsedName("canonical", key)
    if _string_problem(stem) is None:
        return ParsedName("legacy", stem)
    return _OTHER


def _not_a_key_message(key: object) -> str:
    return f"invalid key: expected a non-empty string, got {describe(key)}"


def _string_problem(key: str) -> str | None:
    """The error message for an invalid string key, or None when it is valid."""
    if not key:
        return _not_a_key_message(key)
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        return "invalid key: not valid Unicode (contains a lone surrogate)"
    if size > MAX_KEY_BYTES:
        return f"invalid key: {size} bytes in UTF-8, over the limit of {MAX_KEY_BYTES}"
    return None


def _encode_stem(data: bytes) -> str:
    """Rules 1 to 3 of the scheme: the stem for the UTF-8 bytes of a key."""
    stem = "".join([_BYTE_TOKENS[byte] for byte in data])
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    if stem.partition(".")[0].upper() in _WINDOWS_DEVICES:
        stem = f"%{ord(stem[0]):02X}{stem[1:]}"
    return stem


def _cut_prefix(stem: str) -> str:
    """The first _PREFIX_CHARS characters of stem, shortened so no %XX escape is split."""
    prefix = stem[:_PREFIX_CHARS]
    split_escape = prefix.find("%", _PREFIX_CHARS - 2)
    return prefix if split_escape == -1 else prefix[:split_escape]


def _decode_stem(stem: str) -> str | None:
    """The key a stem strictly decodes to, or None if it is not a valid encoding."""
    if _ENCODED_RE.fullmatch(stem) is None:
        return None
    try:
        key = unquote_to_bytes(stem).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return key if _string_problem(key) is None else None
