"""The program as a user runs it, as a subprocess: from source and as the built executable.

Every test here runs twice: ``python -m objstore`` and the one-file executable that
``build.spec`` makes (built once per session with PyInstaller, or taken from the
``OBJSTORE_BINARY`` environment variable, as the release workflow does on each OS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import objstore.client
from objstore.cli import DATA_NOT_SAVED, STARTUP_FAILURE, USAGE_ERROR

from .helpers import free_port, http_request, recv_json, tls_files
from .realredis import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = sys.platform == "win32"


@pytest.fixture(scope="session")
def built_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The executable under test: OBJSTORE_BINARY, or one built now from build.spec."""
    given = os.environ.get("OBJSTORE_BINARY")
    if given:
        return Path(given).resolve()
    pytest.importorskip(
        "PyInstaller", reason="PyInstaller is in the test extra: pip install -e '.[test]'"
    )
    work = tmp_path_factory.mktemp("pyinstaller")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--distpath",
            str(work / "dist"),
            "--workpath",
            str(work / "build"),
            str(ROOT / "build.spec"),
        ],
        capture_output=True,
        check=False,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (binary,) = (work / "dist").iterdir()
    return binary


@dataclass
class Launcher:
    """How to start objstore: from source, or the executable copied into a folder of its own."""

    kind: str
    command: list[str]
    #: Where .cache goes by default: the working directory from source, else the binary's folder.
    home: Path | None

    def default_cache(self, cwd: Path) -> Path:
        return (self.home or cwd) / ".cache"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("CACHE_DIR", None)
        env.update(extra or {})
        return env

    def run(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """Run objstore to completion in *cwd* and capture what it prints."""
        return subprocess.run(
            [*self.command, *args],
            cwd=cwd,
            env=self.env(),
            capture_output=True,
            check=False,
            text=True,
            timeout=30,
        )

    def start(
        self,
        cwd: Path,
        *args: str,
        env: dict[str, str] | None = None,
        open_files: tuple[int, int | str] | None = None,
    ) -> Program:
        """Start objstore on a free port in *cwd* and wait for its banner.

        *open_files* sets the (soft, hard) open-file limit it starts with (not on Windows).
        """
        command = [*self.command, "--port", "0", *args]
        if open_files is not None:
            # The shell sets the limits, then becomes objstore (same process id).
            soft, hard = open_files
            limits = f"ulimit -Sn {soft} && ulimit -Hn {hard}"
            command = ["sh", "-c", f'{limits} && exec "$@"', "sh", *command]
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=self.env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Its own process group: signals reach the one-file executable's
            # bootloader and the server it starts, and nothing else.
            **(
                {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
                if WINDOWS
                else {"start_new_session": True}
            ),
        )
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                banner = "".join(lines)
                match = re.search(r"wss?://127\.0\.0\.1:(\d+)/ws", banner)
                assert match, banner
                program = Program(process, int(match.group(1)), banner)
                self.started.append(program)
                return program
        Program(process, 0, "").kill()
        err = process.stderr.read() if process.stderr else ""
        raise AssertionError(f"no banner: {''.join(lines)} {err}")

    started: list[Program] = field(default_factory=list)


@dataclass
class Program:
    """A running objstore and the port it printed."""

    process: subprocess.Popen[str]
    port: int
    banner: str

    def stop(self, interrupt: bool = False, timeout: float = 20) -> tuple[int, str]:
        """Send SIGTERM (or SIGINT; Ctrl+Break on Windows) and wait for the exit."""
        if WINDOWS:
            self.process.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        else:
            self.process.send_signal(signal.SIGINT if interrupt else signal.SIGTERM)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err

    def kill(self) -> None:
        """Kill the process group at once (kill -9), by its process id."""
        if self.process.poll() is not None:
            return
        if WINDOWS:
            self.process.kill()
        else:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _launcher(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Launcher:
    if kind == "source":
        return Launcher("source", [sys.executable, "-m", "objstore"], None)
    binary: Path = request.getfixturevalue("built_binary")
    home = tmp_path / "app"
    home.mkdir()
    shutil.copy2(binary, home / binary.name)
    return Launcher("binary", [str(home / binary.name)], home)


@pytest.fixture(params=["source", "binary"])
def launcher(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Launcher]:
    """Starts objstore the way the parameter says; kills what is left at the end."""
    launcher = _launcher(request.param, request, tmp_path)
    yield launcher
    for program in launcher.started:
        program.kill()


@pytest.fixture
def binary_launcher(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Launcher]:
    """Starts the executable only."""
    launcher = _launcher("binary", request, tmp_path)
    yield launcher
    for program in launcher.started:
        program.kill()


async def test_serves_persists_and_stops_cleanly(launcher: Launcher, tmp_path: Path) -> None:
    """Started from another folder, it serves WebSocket, HTTP and the test page, keeps its
    data in the default .cache, and on SIGTERM closes connections with 1001, writes every
    value, exits 0, and finds every value again when restarted."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    cache = launcher.default_cache(cwd)
    program = launcher.start(cwd)
    assert f"Cache      {cache} (0 keys loaded)" in program.banner
    page = await http_request(program.port, "GET", "/test")
    assert (page.status, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert b"<title>objstore test page</title>" in page.body
    async with connect(f"ws://127.0.0.1:{program.port}/ws") as ws:
        for n in range(500):
            await ws.send(json.dumps({"action": "set", "key": f"k{n % 50}", "value": n}))
        await ws.send(json.dumps({"action": "get", "key": "k0"}))
        assert await recv_json(ws) == {"key": "k0", "value": 450}
        answer = await http_request(program.port, "POST", "/set", '{"key": "h", "value": "http"}')
        assert answer.json() == {"key": "h", "value": "http"}
        code, err = await asyncio.to_thread(program.stop)
        await ws.wait_closed()
        assert ws.close_code == 1001
    assert code == 0, err
    assert "Traceback" not in err
    for n in range(50):
        assert (cache / f"k{n}.json").read_text() == f"{450 + n}\n"
    assert (cache / "h.json").read_text() == '"http"\n'
    if launcher.home is not None:  # the executable keeps its data beside itself
        assert not (cwd / ".cache").exists()
    restarted = launcher.start(cwd)
    assert "(51 keys loaded)" in restarted.banner
    answer = await http_request(restarted.port, "GET", "/get/k7")
    assert answer.json() == {"key": "k7", "value": 457}


def test_it_runs_on_uvloop_and_orjson(launcher: Launcher, tmp_path: Path) -> None:
    """The faster event loop (not on Windows) and JSON library are installed and in use,
    in the executable too."""
    program = launcher.start(tmp_path, "--log-level", "info")
    code, err = program.stop()
    assert code == 0, err
    assert f"event loop: {'asyncio' if WINDOWS else 'uvloop'}; JSON: orjson" in err


@pytest.mark.skipif(WINDOWS, reason="Windows has no open-file limit to raise")
def test_open_file_limit_is_raised_at_start(launcher: Launcher, tmp_path: Path) -> None:
    """Started with a soft limit of 256 open files, it raises it towards the hard limit."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 20_000:
        pytest.skip(f"this machine's hard limit ({hard}) leaves nothing to show")
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else hard
    program = launcher.start(tmp_path, "--log-level", "info", open_files=(256, hard_text))
    code, err = program.stop()
    assert code == 0, err
    raised = re.search(r"open-file limit raised from 256 to (\d+)", err)
    assert raised, err
    assert int(raised.group(1)) >= 16_384
    assert "fewer than" not in err


@pytest.mark.skipif(WINDOWS, reason="Windows has no open-file limit to raise")
def test_low_open_file_limit_is_reported(launcher: Launcher, tmp_path: Path) -> None:
    """When the hard limit is low, it says how many clients can connect and how to fix it."""
    program = launcher.start(tmp_path, open_files=(512, 512))
    code, err = program.stop()
    assert code == 0, err
    assert "the system allows only 512 open files, so fewer than 512 clients" in err
    assert "ulimit -n 16384" in err


async def test_cache_dir_from_environment(launcher: Launcher, tmp_path: Path) -> None:
    """CACHE_DIR chooses the folder, which is created if missing."""
    folder = tmp_path / "nested" / "data"
    program = launcher.start(tmp_path, env={"CACHE_DIR": str(folder)})
    await http_request(program.port, "POST", "/set", '{"key": "k", "value": 1}')
    code, _ = program.stop()
    assert code == 0
    assert (folder / "k.json").read_text() == "1\n"
    assert not launcher.default_cache(tmp_path).exists()


def test_port_in_use_fails_fast_with_one_line(launcher: Launcher, tmp_path: Path) -> None:
    """A port already in use gives one line naming the port and a non-zero exit, quickly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        started = time.monotonic()
        result = launcher.run(tmp_path, "--port", str(port))
    assert time.monotonic() - started < 5
    assert result.returncode == STARTUP_FAILURE
    assert result.stderr.strip().splitlines() == [
        f"objstore: port {port} is already in use, perhaps by another objstore; "
        "stop that program or choose another port with --port or PORT"
    ]


def test_unwritable_cache_dir_fails_with_the_fix(launcher: Launcher, tmp_path: Path) -> None:
    """A cache folder that cannot be created gives one line saying how to choose another."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = launcher.run(tmp_path, "--port", "0", "--cache-dir", str(blocker / "sub"))
    assert result.returncode == STARTUP_FAILURE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"objstore: cannot write to the cache folder {blocker / 'sub'}: ")
    assert lines[0].endswith("; choose a writable folder with --cache-dir or CACHE_DIR")


async def test_serves_wss_and_https_with_tls_files(launcher: Launcher, tmp_path: Path) -> None:
    """With --tls-cert and --tls-key it serves wss:// and https:// on its port, then stops."""
    tls = tls_files(tmp_path / "tls")
    program = launcher.start(tmp_path, "--tls-cert", str(tls.cert), "--tls-key", str(tls.key))
    assert f"  Test page  https://127.0.0.1:{program.port}/test\n" in program.banner
    url = f"wss://localhost:{program.port}/ws"
    async with objstore.client.connect(url, ssl=tls.client_context()) as store:
        await store.set("secure", {"tls": True})
        got = await store.get("secure")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", program.port, ssl=tls.client_context(), server_hostname="localhost"
    )
    writer.write(b"GET /get/secure HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    code, err = program.stop()
    assert (got, code) == ({"tls": True}, 0)
    assert (
        f"INFO objstore: serving wss:// and https:// on port {program.port} with certificate "
        f"{tls.cert}\n"
    ) in err
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b'\r\n\r\n{"key":"secure","value":{"tls":true}}')


def test_key_not_of_the_certificate_fails_with_one_line(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A key that does not match the certificate: exit 3 and one line naming both files."""
    tls = tls_files(tmp_path / "tls")
    other = tls_files(tmp_path / "other")
    result = launcher.run(
        tmp_path, "--port", "0", "--tls-cert", str(tls.cert), "--tls-key", str(other.key)
    )
    assert result.returncode == STARTUP_FAILURE
    assert result.stderr.strip().splitlines() == [
        f"objstore: the TLS key file {other.key} is not the key of the certificate in "
        f"{tls.cert}; give --tls-key the private key made with that certificate"
    ]


def test_bad_port_is_a_usage_error(launcher: Launcher, tmp_path: Path) -> None:
    """A port that is not a number is refused with a usage error."""
    result = launcher.run(tmp_path, "--port", "abc")
    assert result.returncode == USAGE_ERROR
    assert "--port must be a whole number from 0 to 65535, got 'abc'" in result.stderr


def _server_pid(process: subprocess.Popen[str]) -> int:
    """The server's process id: the one-file executable's bootloader starts it as its child."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return int(children[0]) if children else process.pid


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
async def test_hot_keys_are_rewritten_by_swapping_names(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A key written again and again keeps its file and spare open and swaps them: the fast
    path works in this build (its system call is reached through ctypes)."""
    program = launcher.start(tmp_path)
    for n in range(4):
        answer = await http_request(
            program.port, "POST", "/set", f'{{"key": "hot", "value": {n}}}'
        )
        assert answer.status == 200
    cache = launcher.default_cache(tmp_path)
    fds = Path(f"/proc/{_server_pid(program.process)}/fd")
    open_files = {os.path.basename(os.readlink(fd)) for fd in fds.iterdir()}
    assert {"hot.json", ".hot.json.spare"} <= open_files
    assert (cache / "hot.json").read_text() == "3\n"
    code, err = program.stop()
    assert code == 0, err


async def test_kill_9_during_a_burst_leaves_only_valid_files(
    launcher: Launcher, tmp_path: Path
) -> None:
    """kill -9 in the middle of a burst of sets leaves every file whole, old or new."""
    program = launcher.start(tmp_path)
    big = "x" * 20_000  # large values make a torn write likely if writes were not atomic
    async with connect(f"ws://127.0.0.1:{program.port}/ws") as ws:
        for n in range(3000):
            await ws.send(json.dumps({"action": "set", "key": f"k{n % 20}", "value": [n, big]}))
            if n == 1500:
                await asyncio.to_thread(program.kill)
                break
    cache = launcher.default_cache(tmp_path)
    files = [p for p in cache.iterdir() if p.name.endswith(".json")]
    assert files
    for path in files:
        value = json.loads(path.read_text())
        assert value[1] == big
    assert (cache / ".objstore.lock").is_file()  # left locked by the killed server
    restarted = launcher.start(tmp_path)
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert f"({len(files)} keys loaded)" in restarted.banner


def test_second_program_on_the_same_folder_exits_with_one_line(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A second objstore on a folder in use prints one line naming the folder and the
    process that holds it, and exits 3; the first keeps serving."""
    first = launcher.start(tmp_path)
    result = launcher.run(tmp_path, "--port", "0")
    assert result.returncode == STARTUP_FAILURE
    cache = launcher.default_cache(tmp_path)
    pid = _server_pid(first.process) if sys.platform == "linux" else r"\d+"
    (line,) = result.stderr.strip().splitlines()
    assert re.fullmatch(
        re.escape(f"objstore: the cache folder {cache} is in use by another objstore (process ")
        + str(pid)
        + re.escape("); stop that program or choose another folder with --cache-dir or CACHE_DIR"),
        line,
    ), line
    code, err = first.stop()
    assert code == 0, err


async def test_values_that_cannot_be_written_make_a_loud_non_zero_exit(
    launcher: Launcher, tmp_path: Path
) -> None:
    """SIGTERM while a value cannot be written (a folder stands under its file's name) names
    the key in the log and exits with DATA_NOT_SAVED."""
    program = launcher.start(tmp_path)
    cache = launcher.default_cache(tmp_path)
    (cache / "lost.json").mkdir()
    answer = await http_request(program.port, "POST", "/set", '{"key": "lost", "value": 1}')
    assert answer.status == 500
    code, err = await asyncio.to_thread(program.stop)
    assert code == DATA_NOT_SAVED, err
    assert (
        f"stopped WITHOUT SAVING 1 key: their latest values could not be written to {cache} "
        'and are lost ("lost"); see the errors above'
    ) in err
    assert "Traceback" not in err


@pytest.mark.skipif(WINDOWS, reason="creating symbolic links needs extra rights on Windows")
async def test_binary_started_through_a_symlink_keeps_cache_beside_itself(
    binary_launcher: Launcher, tmp_path: Path
) -> None:
    """A symbolic link to the executable still puts .cache next to the real file."""
    launcher = binary_launcher
    assert launcher.home is not None
    link_dir = tmp_path / "bin"
    link_dir.mkdir()
    link = link_dir / "objstore"
    link.symlink_to(Path(launcher.command[0]))
    program = Launcher("binary", [str(link)], launcher.home, launcher.started).start(tmp_path)
    assert f"Cache      {launcher.home / '.cache'} (0 keys loaded)" in program.banner


def test_the_binary_stores_its_modules_uncompressed(built_binary: Path) -> None:
    """The compiled modules inside the executable are stored, not zlib-compressed."""
    readers = pytest.importorskip("PyInstaller.archive.readers")
    modules = readers.CArchiveReader(str(built_binary)).open_embedded_archive("PYZ.pyz")
    compressed = [
        name
        for name, (_, _, stored) in modules.toc.items()
        if stored and stored < len(modules.extract(name, raw=True))
    ]
    assert "objstore.cli" in modules.toc
    assert compressed == []


@pytest.mark.skipif(WINDOWS, reason="Ctrl+C cannot be sent to one process group on Windows")
def test_ctrl_c_stops_cleanly(launcher: Launcher, tmp_path: Path) -> None:
    """SIGINT (Ctrl+C) stops the server with exit code 0 and no traceback."""
    program = launcher.start(tmp_path)
    code, err = program.stop(interrupt=True)
    assert code == 0
    assert "Traceback" not in err


async def test_memory_durability_touches_no_folder(launcher: Launcher, tmp_path: Path) -> None:
    """OBJSTORE_DURABILITY=memory serves sets, says so in the banner, creates no cache folder
    and stops with 0."""
    program = launcher.start(tmp_path, env={"OBJSTORE_DURABILITY": "memory"})
    try:
        assert "  Durability memory (--durability memory)" in program.banner
        answer = await http_request(program.port, "POST", "/set", '{"key": "k", "value": 1}')
        assert answer.status == 200
        assert (await http_request(program.port, "GET", "/get/k")).json() == {
            "key": "k",
            "value": 1,
        }
    finally:
        code, err = program.stop()
    assert code == 0, err
    assert not launcher.default_cache(tmp_path).exists()


async def test_metrics_and_readiness_are_served(launcher: Launcher, tmp_path: Path) -> None:
    """GET /metrics is the Prometheus text format (prometheus_client is bundled), with
    process metrics; GET /readyz says ready."""
    program = launcher.start(tmp_path)
    try:
        await http_request(program.port, "POST", "/set", '{"key": "k", "value": 12}')
        answer = await http_request(program.port, "GET", "/metrics")
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain; version=")
        families = {
            family.name: family for family in text_string_to_metric_families(answer.body.decode())
        }
        assert families["objstore_keys"].samples[0].value == 1
        assert families["objstore_stored_bytes"].samples[0].value == 2
        assert families["objstore_sets"].samples[0].value == 1
        if sys.platform == "linux":
            assert families["process_resident_memory_bytes"].samples[0].value > 0
        ready = await http_request(program.port, "GET", "/readyz")
        assert (ready.status, ready.json()) == (200, {"status": "ready"})
    finally:
        code, err = program.stop()
        assert code == 0, err


def test_json_logs_are_one_object_per_line(launcher: Launcher, tmp_path: Path) -> None:
    """--log-format json: every line on stderr is a JSON object with time, level, logger
    and message, the same messages as the text logs."""
    program = launcher.start(tmp_path, "--log-format", "json")
    code, err = program.stop()
    assert code == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert records, err
    for record in records:
        assert set(record) == {"time", "level", "logger", "message"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert records[-2:] == [
        {
            **records[-2],
            "level": "INFO",
            "logger": "objstore",
            "message": ("stopping: closing connections and finishing writes"),
        },
        {**records[-1], "level": "INFO", "logger": "objstore", "message": "stopped"},
    ]


def test_version_is_stamped(launcher: Launcher, tmp_path: Path) -> None:
    """--version prints the package version."""
    from objstore import __version__

    result = launcher.run(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"objstore {__version__}\n")


def test_help_lists_every_setting(launcher: Launcher, tmp_path: Path) -> None:
    """--help names every flag and its environment variable."""
    result = launcher.run(tmp_path, "--help")
    assert result.returncode == 0
    for flag, variable in [
        ("--port", "PORT"),
        ("--host", "HOST"),
        ("--cache-dir", "CACHE_DIR"),
        ("--max-size", "MAX_SIZE"),
        ("--log-level", "LOG_LEVEL"),
        ("--token", "OBJSTORE_TOKEN"),
        ("--auth", "OBJSTORE_AUTH"),
        ("--log-format", "OBJSTORE_LOG_FORMAT"),
        ("--metrics-token", "OBJSTORE_METRICS_TOKEN"),
        ("--tls-cert", "OBJSTORE_TLS_CERT"),
        ("--tls-key", "OBJSTORE_TLS_KEY"),
        ("--durability", "OBJSTORE_DURABILITY"),
    ]:
        assert flag in result.stdout
        assert f"({variable}" in result.stdout


# -- access control ------------------------------------------------------------------------

AUTH_TOKEN = "display-token-0123456789"
AUTH_RULES = (
    '[anonymous]\nread = ["public/"]\n\n'
    f'[tokens.display]\ntoken = "{AUTH_TOKEN}"\nread = ["scores/"]\n'
)


def test_a_malformed_permissions_file_stops_it_with_one_line(
    launcher: Launcher, tmp_path: Path
) -> None:
    rules = tmp_path / "perms.toml"
    rules.write_text('[tokens.display]\ntoken = "short"\n')
    result = launcher.run(tmp_path, "--port", "0", "--auth", str(rules))
    assert result.returncode == STARTUP_FAILURE
    assert result.stderr.strip().splitlines() == [
        f"objstore: cannot use the permissions: {rules}: [tokens.display]: a token of 5 "
        "characters is too easy to guess; use at least 16 (make one with: openssl rand "
        "-base64 24)"
    ]


def test_a_missing_permissions_file_stops_it_with_one_line(
    launcher: Launcher, tmp_path: Path
) -> None:
    result = launcher.run(tmp_path, "--port", "0", "--auth", str(tmp_path / "none.toml"))
    assert result.returncode == STARTUP_FAILURE
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"objstore: cannot use the permissions: {tmp_path / 'none.toml'}: ")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGHUP is POSIX")
async def test_sighup_reloads_the_permissions_file(launcher: Launcher, tmp_path: Path) -> None:
    """kill -HUP applies a changed file, even one the watch cannot see changed."""
    rules = tmp_path / "perms.toml"
    rules.write_text(AUTH_RULES)
    before = rules.stat()
    program = launcher.start(tmp_path, "--auth", str(rules))
    answer = await http_request(program.port, "GET", "/get/scores/a")
    assert answer.status == 401
    # The same size and modification time: only the signal can tell it changed.
    rules.write_text(AUTH_RULES.replace('"public/"', '"scores/"'))
    os.utime(rules, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.kill(program.process.pid, signal.SIGHUP)
    for _ in range(50):
        answer = await http_request(program.port, "GET", "/get/scores/a")
        if answer.status == 200:
            break
        await asyncio.sleep(0.1)
    assert answer.status == 200
    code, err = program.stop()
    assert code == 0, err
    assert f"permissions reloaded from {rules}" in err


# -- a store in Redis ---------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis").start()
    yield process
    process.stop()


def test_an_unreachable_redis_stops_it_with_one_line(launcher: Launcher, tmp_path: Path) -> None:
    """Nothing listens at --redis: exit 3 with one line that names the URL but not its
    password."""
    port = free_port()
    result = launcher.run(
        tmp_path, "--port", "0", "--redis", f"redis://:secret@127.0.0.1:{port}/0"
    )
    assert result.returncode == STARTUP_FAILURE
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"objstore: cannot use the Redis store at redis://:***@127.0.0.1:{port}/0: "
    )
    assert line.endswith("; start Redis or check --redis / REDIS_URL")
    assert "secret" not in result.stderr


def test_a_bad_redis_url_is_a_usage_error(launcher: Launcher, tmp_path: Path) -> None:
    result = launcher.run(tmp_path, "--port", "0", "--redis", "http://localhost:6379")
    assert result.returncode == USAGE_ERROR
    assert "--redis: invalid Redis URL http://localhost:6379: expected redis://" in result.stderr


async def test_two_programs_serve_one_store_in_redis(
    launcher: Launcher, tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Two programs (from source, and the executable with the redis library inside) on one
    Redis: a set on one reaches a subscriber of the other; after both stop, a new one
    serves the same value; nothing is written to a cache folder."""
    cwd = tmp_path / "run"
    cwd.mkdir()
    env = {"REDIS_URL": redis_server.url}
    first = launcher.start(cwd, env=env)
    second = launcher.start(cwd, env=env)
    assert f"Store      Redis at {redis_server.url} (0 keys)" in first.banner
    async with connect(f"ws://127.0.0.1:{second.port}/ws") as watcher:
        await watcher.send(json.dumps({"action": "subscribe", "key": "shared"}))
        answer = await http_request(first.port, "POST", "/set", '{"key": "shared", "value": 7}')
        assert answer.status == 200
        assert await recv_json(watcher) == {"key": "shared", "value": 7}
    for program in (first, second):
        code, err = await asyncio.to_thread(program.stop)
        assert code == 0, err
    third = launcher.start(cwd, env=env)
    assert "(1 keys)" in third.banner
    answer = await http_request(third.port, "GET", "/get/shared")
    assert answer.json() == {"key": "shared", "value": 7}
    assert not launcher.default_cache(cwd).exists()


async def test_kill_9_of_an_instance_loses_nothing_acknowledged_and_its_presence_goes(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    """kill -9 of instance A in the middle of a burst of acknowledged sets: every set A
    acknowledged is in the store (read on B); A's connection's ephemeral keys are deleted
    by B within the lease (15 s at most) and B's subscriber is told; A's client, moved to
    B, resumes from its last revision without a gap."""
    launcher = Launcher("source", [sys.executable, "-m", "objstore"], None)
    env = {"REDIS_URL": redis_server.url}
    a = launcher.start(tmp_path, env=env)
    b = launcher.start(tmp_path, env=env)
    try:
        async with connect(f"ws://127.0.0.1:{b.port}/ws") as watcher:
            await watcher.send(json.dumps({"action": "subscribe", "prefix": "here/", "id": 0}))
            assert (await recv_json(watcher))["ok"] is True
            acknowledged, last, killed_at = await _burst_until_killed(a)
            gone: set[str] = set()
            while len(gone) < 20:
                update = await recv_json(watcher, timeout=20)
                if update.get("deleted"):
                    gone.add(update["key"])
            assert time.monotonic() - killed_at <= 15
        async with connect(f"ws://127.0.0.1:{b.port}/ws") as moved:
            message = {"action": "subscribe", "prefix": "burst/", "since": last, "id": "r"}
            await moved.send(json.dumps(message))
            while True:
                reply = await recv_json(moved)
                if reply.get("id") == "r":
                    assert reply["reset"] is False
                    break
                assert reply["rev"] > last
            for n in range(2000):
                await moved.send(json.dumps({"action": "get", "key": f"burst/{n}", "id": n}))
            values = {}
            for _ in range(2000):
                reply = await recv_json(moved)
                values[f"burst/{reply['id']}"] = reply["value"]
        assert len(acknowledged) >= 300
        for key, value in acknowledged.items():
            assert values[key] == value
    finally:
        a.kill()
        b.kill()


async def _burst_until_killed(program: Program) -> tuple[dict[str, int], int, float]:
    """Set 20 ephemeral keys and send 2,000 acknowledged sets to *program*, subscribed to
    them, and kill -9 it after the 300th acknowledgement: the sets acknowledged, the last
    revision its subscription saw, and when it was killed."""
    acknowledged: dict[str, int] = {}
    killed_at = 0.0
    client = await connect(f"ws://127.0.0.1:{program.port}/ws")
    await client.send(json.dumps({"action": "subscribe", "prefix": "burst/", "id": "s"}))
    last = (await recv_json(client))["rev"]
    for n in range(20):
        message = {"action": "set", "key": f"here/{n}", "value": n, "ephemeral": True}
        await client.send(json.dumps({**message, "id": f"e{n}"}))
    for n in range(2000):
        await client.send(json.dumps({"action": "set", "key": f"burst/{n}", "value": n, "id": n}))
    with contextlib.suppress(ConnectionClosed):
        async for raw in client:
            reply = json.loads(raw)
            if "rev" in reply and "key" in reply:
                last = max(last, reply["rev"])  # an update of its subscription
            elif reply.get("ok") and isinstance(reply.get("id"), int):
                acknowledged[f"burst/{reply['id']}"] = reply["id"]
                if len(acknowledged) == 300:
                    program.kill()  # kill -9, by process id
                    killed_at = time.monotonic()
    assert killed_at
    return acknowledged, last, killed_at
