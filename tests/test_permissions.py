"""The rules of access control, pure: the file format, token lookup, grants and checks."""

from __future__ import annotations

import pytest

from objstore import authorize
from objstore.commands import Batch, Get, Keys, Set, Subscribe, SubscribePrefix, Unsubscribe
from objstore.errors import Conflict, Forbidden
from objstore.permissions import (
    EVERYTHING,
    NOTHING,
    Grant,
    Rules,
    RulesError,
    parse_rules,
    single_token_rules,
)

DISPLAY = "display-token-0123456789"
ADMIN = "admin-token-0123456789ab"
FILE = f"""
[anonymous]
read = ["public/"]

[tokens.display]
token = "{DISPLAY}"
read = ["scores/", "scores/team/", "news/"]

[tokens.admin]
token = "{ADMIN}"
read = [""]
write = [""]
metrics = true
"""


def test_a_file_gives_each_token_its_grant() -> None:
    """Tokens find their grants; prefixes are sorted and covered ones dropped."""
    rules = parse_rules(FILE, "perms.toml")
    assert rules.enabled
    assert rules.grant_for(DISPLAY) == Grant("display", ("news/", "scores/"), ())
    assert rules.grant_for(ADMIN) == Grant("admin", ("",), ("",), metrics=True)
    assert rules.grant_for(None) == Grant("anonymous", ("public/",), ())
    assert rules.grant_for("not-a-token-at-all-000") is None
    assert rules.grant_for("x" * 5000) is None


def test_without_an_anonymous_table_clients_without_a_token_may_do_nothing() -> None:
    rules = parse_rules(f'[tokens.a]\ntoken = "{ADMIN}"\nread = [""]', "f")
    assert rules.grant_for(None) == NOTHING


def test_no_rules_let_everybody_do_everything() -> None:
    assert Rules().grant_for(None) == EVERYTHING
    assert not Rules().enabled


def test_a_single_token_has_every_right_and_anonymous_none() -> None:
    rules = single_token_rules(ADMIN)
    grant = rules.grant_for(ADMIN)
    assert grant is not None
    assert grant.everything
    assert rules.grant_for(None) == NOTHING


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tokens.a\n", "f: not valid TOML: "),
        ('[tokens.a]\ntoken = "short"', "f: [tokens.a]: a token of 5 characters is too easy"),
        ("[tokens.a]\nread = []", 'f: [tokens.a]: needs token = "..." (a string)'),
        (f'[tokens.a]\ntoken = "{ADMIN}"\nraed = [""]', 'unknown setting "raed"'),
        (
            f'[tokens.a]\ntoken = "{ADMIN}"\nread = "scores/"',
            "read must be a list of key prefixes",
        ),
        (f'[tokens.a]\ntoken = "{ADMIN}"\nmetrics = 1', "metrics must be true or false"),
        (
            f'[tokens.a]\ntoken = "{ADMIN}"\n[tokens.b]\ntoken = "{ADMIN}"',
            "[tokens.b] has the same token as [tokens.a]",
        ),
        ('[anonymous]\nread = [""]', "no token: add a [tokens.NAME] table"),
        (f'[tokens.anonymous]\ntoken = "{ADMIN}"', "the name anonymous is taken"),
        ('[tokens.a]\ntoken = " padded-token-01234567 "', "without spaces at its ends"),
        (f'users = 1\n[tokens.a]\ntoken = "{ADMIN}"', 'the file: unknown setting "users"'),
    ],
)
def test_a_bad_file_is_refused_with_what_to_fix(text: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "f")
    assert message in str(caught.value)


def test_token_flag_with_a_file_adds_a_full_token() -> None:
    rules = parse_rules(FILE, "f", extra_token="flag-token-0123456789")
    grant = rules.grant_for("flag-token-0123456789")
    assert grant is not None
    assert grant.name == "token"
    assert grant.everything


def test_readable_within_narrows_a_prefix() -> None:
    grant = Grant("g", ("news/", "scores/"))
    assert grant.readable_within("") == ("news/", "scores/")
    assert grant.readable_within("scores/a") == ("scores/a",)
    assert grant.readable_within("s") == ("scores/",)
    assert grant.readable_within("x/") == ()


def test_checks_name_the_token_and_what_it_may_not_do() -> None:
    display = Grant("display", ("scores/",))
    authorize.check(display, Get("scores/a"))
    authorize.check(display, Keys(""))
    authorize.check(display, SubscribePrefix(""))
    authorize.check(display, Unsubscribe("secret"))
    with pytest.raises(Forbidden) as caught:
        authorize.check(display, Set("scores/a", b"1"))
    assert (
        str(caught.value) == 'forbidden: token "display" may not do this: writing key "scores/a"'
    )
    assert caught.value.http_status == 403
    with pytest.raises(Forbidden) as caught:
        authorize.check(NOTHING, Subscribe("scores/a"))
    assert caught.value.http_status == 401
    assert "needs a token" in str(caught.value)
    with pytest.raises(Forbidden):
        authorize.check(display, SubscribePrefix("secret/"))


def test_a_batch_fails_at_its_first_forbidden_op() -> None:
    writer = Grant("w", (), ("a/",))
    with pytest.raises(Forbidden) as caught:
        authorize.check(writer, Batch((Set("a/1", b"1"), Set("b/1", b"1"))))
    assert caught.value.op == 1


def test_a_conflict_hides_the_value_of_a_key_that_may_not_be_read() -> None:
    conflict = Conflict("conflict", 3, b"42")
    authorize.hide_unreadable(Grant("w", (), ("a/",)), conflict, ["a/1"])
    assert (conflict.rev, conflict.value, conflict.value_hidden) == (3, None, True)
    readable = Conflict("conflict", 3, b"42")
    authorize.hide_unreadable(Grant("rw", ("a/",), ("a/",)), readable, ["a/1"])
    assert (readable.value, readable.value_hidden) == (b"42", False)
