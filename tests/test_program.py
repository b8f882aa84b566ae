"""The program as a user runs it: ``python -m objstore`` in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from objstore.cli import STARTUP_FAILURE, USAGE_ERROR

from .helpers import http_request, recv_json

ROOT = Path(__file__).resolve().parent.parent


def run_program(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run objstore to completion in *cwd* and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "objstore", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=False,
        text=True,
        timeout=20,
    )


class Program:
    """A running ``python -m objstore`` and the port it printed."""

    def __init__(self, process: subprocess.Popen[str], port: int, banner: str) -> None:
        self.process = process
        self.port = port
        self.banner = banner

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> tuple[int, str]:
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


def start_program(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Program:
    """Start objstore on a free port in *cwd* and wait for its banner."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full_env.pop("CACHE_DIR", None)
    full_env.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "objstore", "--port", "0", *args],
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Press Ctrl+C"):
            banner = "".join(lines)
            match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner)
            assert match, banner
            return Program(process, int(match.group(1)), banner)
    process.kill()
    raise AssertionError(
        f"no banner: {''.join(lines)} {process.stderr.read() if process.stderr else ''}"
    )


@pytest.fixture
def programs() -> Iterator[list[Program]]:
    started: list[Program] = []
    yield started
    for program in started:  # stopped by process id, never by name
        if program.process.poll() is None:
            program.process.kill()
            program.process.wait()


async def test_program_serves_and_stops_cleanly(tmp_path: Path, programs: list[Program]) -> None:
    """Started as a user would, it serves WebSocket and HTTP, keeps .cache in the working
    directory, and on SIGTERM closes connections with 1001, writes everything and exits 0."""
    program = start_program(tmp_path)
    programs.append(program)
    assert f"Cache      {tmp_path / '.cache'} (0 keys loaded)" in program.banner
    async with connect(f"ws://127.0.0.1:{program.port}/ws") as ws:
        for n in range(500):
            await ws.send(json.dumps({"action": "set", "key": f"k{n % 50}", "value": n}))
        await ws.send(json.dumps({"action": "get", "key": "k0"}))
        assert await recv_json(ws) == {"key": "k0", "value": 450}
        answer = await http_request(program.port, "POST", "/set", '{"key": "h", "value": "http"}')
        assert answer.status == 200
        code, err = await asyncio.to_thread(program.stop)
        await ws.wait_closed()
        assert ws.close_code == 1001
    assert code == 0, err
    assert "Traceback" not in err
    for n in range(50):
        assert (tmp_path / ".cache" / f"k{n}.json").read_text() == f"{450 + n}\n"
    assert (tmp_path / ".cache" / "h.json").read_text() == '"http"\n'


async def test_cache_dir_from_environment(tmp_path: Path, programs: list[Program]) -> None:
    """CACHE_DIR chooses the folder, which is created if missing."""
    folder = tmp_path / "nested" / "data"
    program = start_program(tmp_path, env={"CACHE_DIR": str(folder)})
    programs.append(program)
    await http_request(program.port, "POST", "/set", '{"key": "k", "value": 1}')
    code, _ = program.stop()
    assert code == 0
    assert (folder / "k.json").read_text() == "1\n"


def test_port_in_use_fails_fast_with_one_line(tmp_path: Path) -> None:
    """A port already in use gives one line naming the port and a non-zero exit, quickly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        started = time.monotonic()
        result = run_program(tmp_path, "--port", str(port))
    assert time.monotonic() - started < 5
    assert result.returncode == STARTUP_FAILURE
    assert result.stderr.strip().splitlines() == [
        f"objstore: port {port} is already in use, perhaps by another objstore; "
        "stop that program or choose another port with --port or PORT"
    ]


def test_unwritable_cache_dir_fails_with_the_fix(tmp_path: Path) -> None:
    """A cache folder that cannot be created gives one line saying how to choose another."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_program(tmp_path, "--port", "0", "--cache-dir", str(blocker / "sub"))
    assert result.returncode == STARTUP_FAILURE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"objstore: cannot write to the cache folder {blocker / 'sub'}: ")
    assert lines[0].endswith("; choose a writable folder with --cache-dir or CACHE_DIR")


def test_bad_port_is_a_usage_error(tmp_path: Path) -> None:
    """A port that is not a number is refused with a usage error."""
    result = run_program(tmp_path, "--port", "abc")
    assert result.returncode == USAGE_ERROR
    assert "--port must be a whole number from 0 to 65535, got 'abc'" in result.stderr


async def test_kill_9_during_a_burst_leaves_only_valid_files(
    tmp_path: Path, programs: list[Program]
) -> None:
    """kill -9 in the middle of a burst of sets leaves every file whole, old or new."""
    program = start_program(tmp_path)
    programs.append(program)
    big = "x" * 20_000  # large values make a torn write likely if writes were not atomic
    async with connect(f"ws://127.0.0.1:{program.port}/ws") as ws:
        for n in range(3000):
            await ws.send(json.dumps({"action": "set", "key": f"k{n % 20}", "value": [n, big]}))
            if n == 1500:
                program.process.kill()
                break
    program.process.wait()
    cache = tmp_path / ".cache"
    files = [p for p in cache.iterdir() if p.name.endswith(".json")]
    assert files
    for path in files:
        value = json.loads(path.read_text())
        assert value[1] == big
    restarted = start_program(tmp_path)
    programs.append(restarted)
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    assert f"({len(files)} keys loaded)" in restarted.banner


def test_ctrl_c_stops_cleanly(tmp_path: Path, programs: list[Program]) -> None:
    """SIGINT (Ctrl+C) stops the server with exit code 0 and no traceback."""
    program = start_program(tmp_path)
    programs.append(program)
    code, err = program.stop(signal.SIGINT)
    assert code == 0
    assert "Traceback" not in err


def test_help_lists_every_setting(tmp_path: Path) -> None:
    """--help names every flag and its environment variable."""
    result = run_program(tmp_path, "--help")
    assert result.returncode == 0
    for flag, variable in [
        ("--port", "PORT"),
        ("--host", "HOST"),
        ("--cache-dir", "CACHE_DIR"),
        ("--max-size", "MAX_SIZE"),
        ("--log-level", "LOG_LEVEL"),
    ]:
        assert flag in result.stdout
        assert f"({variable}" in result.stdout
