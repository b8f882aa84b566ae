"""Flags and environment variables into one Config, without starting anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from objstore.cli import _banner, parse_config
from objstore.config import Config
from objstore.console import owns_console_window

from .conftest import StartServer
from .helpers import tls_files


def test_defaults() -> None:
    """With nothing set: port 3000 on 127.0.0.1, .cache in the working directory."""
    config = parse_config([], {})
    assert (config.host, config.port, config.max_size, config.log_level) == (
        "127.0.0.1",
        3000,
        16 * 1024 * 1024,
        "info",
    )
    assert config.cache_dir == Path.cwd() / ".cache"


def test_environment_fills_the_config() -> None:
    """PORT, HOST, CACHE_DIR, MAX_SIZE and LOG_LEVEL are read from the environment."""
    env = {
        "PORT": "4000",
        "HOST": "0.0.0.0",
        "CACHE_DIR": "/data",
        "MAX_SIZE": "2048",
        "LOG_LEVEL": "DEBUG",
    }
    assert parse_config([], env) == Config(
        host="0.0.0.0", port=4000, cache_dir=Path("/data"), max_size=2048, log_level="debug"
    )


def test_flags_override_the_environment() -> None:
    """A flag wins over its environment variable."""
    config = parse_config(
        ["--port", "5000", "--cache-dir", "here"], {"PORT": "4000", "CACHE_DIR": "/data"}
    )
    assert (config.port, config.cache_dir) == (5000, Path("here"))


def test_empty_cache_dir_variable_means_default() -> None:
    """CACHE_DIR set to an empty string falls back to the default folder."""
    assert parse_config([], {"CACHE_DIR": ""}).cache_dir == Path.cwd() / ".cache"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--port", "70000"], "--port must be a whole number from 0 to 65535, got '70000'"),
        (
            ["--max-size", "1"],
            "--max-size must be a whole number from 1024 to 2147483648, got '1'",
        ),
        (
            ["--log-level", "loud"],
            "--log-level must be one of debug, info, warning, error, got 'loud'",
        ),
        (["--log-format", "xml"], "--log-format must be one of text, json, got 'xml'"),
        (
            ["--metrics-token", " "],
            "--metrics-token must not be empty; give a token, or leave the flag out",
        ),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Out-of-range values exit with code 2 and a message naming the flag."""
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv, {})
    assert exit_.value.code == 2
    assert error in capsys.readouterr().err


def test_no_origin_is_allowed_by_default() -> None:
    """Without --allow-origin or ALLOW_ORIGIN, only the server's own pages may use it."""
    assert parse_config([], {}).allow_origins == ()


def test_allow_origin_flag_repeats() -> None:
    """--allow-origin may be given several times; values are kept as browsers send them."""
    config = parse_config(
        ["--allow-origin", "http://localhost:5173", "--allow-origin", "HTTPS://App.Example:443/"],
        {},
    )
    assert config.allow_origins == ("http://localhost:5173", "https://app.example")


def test_allow_origin_variable_is_comma_separated() -> None:
    """ALLOW_ORIGIN holds origins separated by commas; blanks and repeats are dropped."""
    env = {"ALLOW_ORIGIN": "http://localhost:5173, null,,http://localhost:5173,*"}
    assert parse_config([], env).allow_origins == ("http://localhost:5173", "null", "*")


def test_allow_origin_flag_overrides_the_variable() -> None:
    """--allow-origin replaces ALLOW_ORIGIN rather than adding to it."""
    config = parse_config(["--allow-origin", "null"], {"ALLOW_ORIGIN": "http://a.example"})
    assert config.allow_origins == ("null",)


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (["--allow-origin", "http://localhost:5173/app"], {}),
        (["--allow-origin", "localhost:5173"], {}),
        (["--allow-origin", ""], {}),
        ([], {"ALLOW_ORIGIN": "http://a.example,http://b.example/app"}),
    ],
)
def test_bad_origins_are_usage_errors(
    argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An origin with a path, without a scheme, or empty exits 2 naming the flag and value."""
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv, env)
    assert exit_.value.code == 2
    bad = argv[1] if argv else "http://b.example/app"
    assert (
        "--allow-origin must be an origin like http://localhost:5173 (scheme://host[:port] "
        f"without a path), * or null, got {bad!r}"
    ) in capsys.readouterr().err


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the version and exits 0."""
    from objstore import __version__

    with pytest.raises(SystemExit) as exit_:
        parse_config(["--version"], {})
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"objstore {__version__}\n"


async def test_banner_shows_urls_and_cache(start_server: StartServer) -> None:
    """The banner names the WebSocket and test page URLs, the cache folder and the key count."""
    server = await start_server()
    banner = _banner(server)
    assert f"ws://127.0.0.1:{server.port}/ws" in banner
    assert f"http://127.0.0.1:{server.port}/test" in banner
    assert f"({len(server.store)} keys loaded)" in banner


async def test_banner_names_allowed_origins(start_server: StartServer) -> None:
    """The banner says which other websites may use the store."""
    server = await start_server(allow_origins=("http://localhost:5173", "null"))
    assert "  Allowed    pages from http://localhost:5173, null\n" in _banner(server)


async def test_banner_warns_of_any_origin(start_server: StartServer) -> None:
    """With --allow-origin *, the banner says that any website may use the store."""
    server = await start_server(allow_origins=("*",))
    assert "  Allowed    pages from any website (--allow-origin *)\n" in _banner(server)


async def test_banner_on_all_interfaces_mentions_the_network(start_server: StartServer) -> None:
    """Listening on 0.0.0.0 adds the network addresses, or says how to find them."""
    server = await start_server(host="0.0.0.0")
    assert "  Network    " in _banner(server)


def test_double_clicked_console_is_owned() -> None:
    """A console with only objstore's processes on it was opened for objstore."""
    assert owns_console_window(1, frozen=False) is True
    assert owns_console_window(2, frozen=True) is True


def test_console_shared_with_a_terminal_is_not_owned() -> None:
    """A terminal or script adds its own process, so objstore must not wait for Enter."""
    assert owns_console_window(2, frozen=False) is False
    assert owns_console_window(3, frozen=True) is False


def test_no_console_is_not_owned() -> None:
    """Without a console (a service, or not Windows) there is nothing to keep open."""
    assert owns_console_window(0, frozen=True) is False


def test_event_loop_is_uvloop_where_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop is used when it can be imported, and OBJSTORE_LOOP=asyncio turns it off."""
    from objstore.cli import _loop_factory

    uvloop = pytest.importorskip("uvloop", reason="uvloop is not available on this system")
    monkeypatch.delenv("OBJSTORE_LOOP", raising=False)
    assert _loop_factory() is uvloop.new_event_loop
    monkeypatch.setenv("OBJSTORE_LOOP", "asyncio")
    assert _loop_factory() is None


async def test_banner_warns_when_shared_without_a_token(start_server: StartServer) -> None:
    """On a network address without a token, the banner says anyone may do anything."""
    server = await start_server(host="0.0.0.0")
    assert (
        "  WARNING    no token: anyone who can reach this port can read and write "
        "everything; add --token or --auth FILE\n"
    ) in _banner(server)


async def test_banner_on_loopback_does_not_warn(start_server: StartServer) -> None:
    server = await start_server()
    assert "WARNING" not in _banner(server)


async def test_banner_names_where_tokens_come_from(start_server: StartServer) -> None:
    server = await start_server(host="0.0.0.0", token="a-token-of-enough-length")
    banner = _banner(server)
    assert "WARNING" not in banner
    assert "  Access     tokens from --token; see --help for --auth\n" in banner


def test_token_and_auth_file_come_from_flags_or_environment() -> None:
    """--token / OBJSTORE_TOKEN and --auth / OBJSTORE_AUTH fill the config."""
    config = parse_config([], {"OBJSTORE_TOKEN": "t" * 20, "OBJSTORE_AUTH": "perms.toml"})
    assert (config.token, config.auth_file) == ("t" * 20, Path("perms.toml"))
    config = parse_config(["--auth", "other.toml"], {"OBJSTORE_AUTH": "perms.toml"})
    assert config.auth_file == Path("other.toml")
    assert "t" * 20 not in repr(parse_config(["--token", "t" * 20], {}))


def test_log_format_and_metrics_token_default_to_text_and_none() -> None:
    """Without flags or variables: text logs, /metrics open to anyone who may reach it."""
    config = parse_config([], {})
    assert (config.log_format, config.metrics_token) == ("text", None)


def test_log_format_and_metrics_token_from_the_environment() -> None:
    """OBJSTORE_LOG_FORMAT and OBJSTORE_METRICS_TOKEN fill the config."""
    config = parse_config([], {"OBJSTORE_LOG_FORMAT": "JSON", "OBJSTORE_METRICS_TOKEN": "t0k"})
    assert (config.log_format, config.metrics_token) == ("json", "t0k")


def test_log_format_and_metrics_token_flags_override_the_environment() -> None:
    """--log-format and --metrics-token win over their variables."""
    env = {"OBJSTORE_LOG_FORMAT": "json", "OBJSTORE_METRICS_TOKEN": "env"}
    config = parse_config(["--log-format", "text", "--metrics-token", "flag"], env)
    assert (config.log_format, config.metrics_token) == ("text", "flag")


async def test_banner_shows_tls_urls(start_server: StartServer, tmp_path: Path) -> None:
    """With TLS, every URL of the banner is wss:// or https://, and the files are named."""
    tls = tls_files(tmp_path / "tls")
    server = await start_server(tls_cert=tls.cert, tls_key=tls.key)
    base = f"https://127.0.0.1:{server.port}"
    assert _banner(server).splitlines()[1:5] == [
        f"  WebSocket  wss://127.0.0.1:{server.port}/ws",
        f"  Test page  {base}/test",
        f"  HTTP       GET {base}/get/{{key}}   POST {base}/set",
        f"  REST       {base}/keys/{{key}}   Events {base}/events?prefix=",
    ]
    assert f"  TLS        certificate {tls.cert}, key {tls.key}\n" in _banner(server)
