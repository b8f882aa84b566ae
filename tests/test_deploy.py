"""The deployment example for real: Debian's nginx with ``deploy/nginx.conf`` over two instances.

nginx reads ``deploy/nginx.conf`` as shipped, with only its ports changed (the public
port and the two instances', to free loopback ones), included in a minimal main config
that keeps nginx's pid, logs and temporary files in the test's folder. The instances are
the real program (``python -m objstore``), allowed the origins of the pages nginx serves
as the deployment's README says, and share one real Redis (:mod:`tests.realredis`).
Every process is stopped by its process id. Without nginx or Redis the tests skip, with
the reason; under CI (``OBJSTORE_REQUIRE_REDIS=1``, set by ``.ci/run``, which installs
both) they fail instead.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

import objstore.client

from .helpers import free_port, http_request, recv_json
from .realredis import RedisProcess

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "deploy" / "nginx.conf"
UNIT = ROOT / "deploy" / "objstore@.service"
#: The Redis of the unit's command line, replaced by the tests' own.
UNIT_REDIS = "redis://127.0.0.1:6379/0"
#: What the shipped config says, and what the tests put in its place.
PUBLIC_LISTEN = "listen 80;"
INSTANCE_ADDRESSES = ("server 127.0.0.1:3001 ", "server 127.0.0.1:3002 ")
#: nginx's temporary folders, kept in the test's folder instead of /var/lib/nginx.
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
#: The public name of the tests' deployment: its pages' origin is allowed, with the port.
PUBLIC_NAME = "store.example"


def need_nginx() -> str:
    """The path of nginx; skips the test when it is missing (fails under CI)."""
    path = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if path is None:
        reason = "nginx is not installed (Debian: apt-get install nginx)"
        if os.environ.get("OBJSTORE_REQUIRE_REDIS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def site_config(shipped: str, public_port: int, instance_ports: tuple[int, int]) -> str:
    """*shipped* with the public port and the instances' ports replaced, each exactly once."""
    replacements = [(PUBLIC_LISTEN, f"listen 127.0.0.1:{public_port};")]
    for address, port in zip(INSTANCE_ADDRESSES, instance_ports, strict=True):
        replacements.append((address, f"server 127.0.0.1:{port} "))
    for old, new in replacements:
        assert shipped.count(old) == 1, f"deploy/nginx.conf should say {old!r} once"
        shipped = shipped.replace(old, new)
    return shipped


def main_config(folder: Path, site: Path) -> str:
    """An nginx main config that includes *site* and keeps every file nginx writes in *folder*."""
    lines = [
        # As root nginx runs its workers as nobody, who may not enter the test's folder.
        "user root;" if os.geteuid() == 0 else "",
        f"pid {folder / 'nginx.pid'};",
        f"error_log {folder / 'error.log'} info;",
        "worker_processes 1;",
        "events { worker_connections 256; }",
        "http {",
        f"    access_log {folder / 'access.log'};",
        *(f"    {name}_temp_path {folder / 'temp' / name};" for name in TEMP_PATHS),
        f"    include {site};",
        "}",
        "",
    ]
    return "\n".join(lines)


def unit_settings(text: str) -> tuple[list[str], dict[str, str]]:
    """The ExecStart command (``%i`` as it is) and the Environment= variables of a unit."""
    command: list[str] = []
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name == "ExecStart":
            command = shlex.split(value)
        elif name == "Environment":
            variable, _, setting = value.partition("=")
            env[variable] = setting
    return command, env


@dataclass
class Instance:
    """One ``python -m objstore`` with *args*, stopped by its process id."""

    process: subprocess.Popen[str]
    port: int
    banner: str

    @classmethod
    def start(cls, folder: Path, args: list[str], env: dict[str, str] | None = None) -> Instance:
        """Start it in *folder* and wait for its banner (which names its port)."""
        folder.mkdir(parents=True)
        with (folder / "stderr.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "objstore", *args],
                cwd=folder,
                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert process.stdout is not None
        banner = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            banner += line
            if line.startswith("Press Ctrl+C"):
                match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws", banner)
                assert match, banner
                return cls(process, int(match.group(1)), banner)
        process.kill()
        process.wait()
        raise AssertionError(f"no banner: {banner} {(folder / 'stderr.log').read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Nginx:
    """nginx in the foreground with its master's process id: stopped by it."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path

    @classmethod
    def start(cls, folder: Path, port: int, instance_ports: tuple[int, int]) -> Nginx:
        program = need_nginx()
        for name in TEMP_PATHS:
            (folder / "temp" / name).mkdir(parents=True)
        site = folder / "objstore.conf"
        site.write_text(site_config(SHIPPED.read_text(), port, instance_ports))
        main = folder / "nginx.conf"
        main.write_text(main_config(folder, site))
        # -e: where nginx logs before it has read the config (the default may be unwritable).
        command = [program, "-p", str(folder), "-e", str(folder / "error.log"), "-c", str(main)]
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        nginx = cls(process, port, folder)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                time.sleep(0.02)
            else:
                return nginx
        nginx.stop()
        raise AssertionError(f"nginx did not start on port {port}:\n{nginx.error_log()[-3000:]}")

    def error_log(self) -> str:
        path = self.folder / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (a fast stop) to the master, by its process id; its workers go with it."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Deployment:
    """nginx on :attr:`port` in front of two instances sharing one Redis."""

    nginx: Nginx
    instances: list[Instance]

    @property
    def port(self) -> int:
        return self.nginx.port

    def origin(self, host: str) -> str:
        """The origin of a page that nginx served as *host*."""
        return f"http://{host}:{self.port}"

    async def post_set(self, key: str, value: object) -> None:
        """POST /set through nginx, which answers 200 and the value."""
        body = json.dumps({"key": key, "value": value})
        answer = await http_request(self.port, "POST", "/set", body)
        assert (answer.status, answer.json()) == (200, {"key": key, "value": value})


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """nginx with deploy/nginx.conf over two instances of one fresh Redis; all stopped after."""
    need_nginx()
    port = free_port()
    redis = RedisProcess(tmp_path / "redis").start()
    instances: list[Instance] = []
    nginx = None
    try:
        for name in ("a", "b"):
            args = [
                *("--host", "127.0.0.1", "--port", "0", "--redis", redis.url),
                # The pages nginx serves: by its address, and by its public name.
                *("--allow-origin", f"http://127.0.0.1:{port}"),
                *("--allow-origin", f"http://{PUBLIC_NAME}:{port}"),
            ]
            instances.append(Instance.start(tmp_path / name, args))
        nginx = Nginx.start(tmp_path / "nginx", port, (instances[0].port, instances[1].port))
        yield Deployment(nginx, instances)
    finally:
        if nginx is not None:
            nginx.stop()
        for instance in instances:
            instance.stop()
        redis.stop()


async def answer_head(port: int, lines: list[str]) -> bytes:
    """Send a request head made of *lines* and return the head of the answer, unread body aside."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


async def handshake(port: int, host: str, origin: str) -> bytes:
    """A WebSocket handshake on /ws for *host* and *origin*, as a browser sends it; the head."""
    key = base64.b64encode(os.urandom(16)).decode()
    return await answer_head(
        port,
        [
            "GET /ws HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {origin}",
        ],
    )


async def open_events(port: int, query: str) -> AsyncGenerator[tuple[float, dict[str, str]]]:
    """The events of ``GET /events?<query>``, each with the time it arrived."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET /events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"\r\ncontent-type: text/event-stream" in head.lower(), head
        chunked = b"\r\ntransfer-encoding: chunked" in head.lower()
        buffer = b""
        while True:
            if chunked:
                size = int(await asyncio.wait_for(reader.readline(), 10), 16)
                buffer += await reader.readexactly(size + 2)
                buffer = buffer[:-2]
            else:
                buffer += await asyncio.wait_for(reader.read(4096), 10)
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                event = dict(
                    line.split(": ", 1) for line in block.decode().split("\n") if ": " in line
                )
                if event and "" not in event:  # not a ": ping" comment
                    yield time.monotonic(), event
    finally:
        writer.close()


async def websockets_open(port: int) -> int:
    """How many WebSocket connections the instance on *port* holds, from its /metrics."""
    page = await http_request(port, "GET", "/metrics")
    pattern = rb'^objstore_connections\{protocol="websocket"\} ([0-9.]+)$'
    match = re.search(pattern, page.body, re.MULTILINE)
    assert match, page.body[:2000]
    return int(float(match.group(1)))


def test_the_config_differs_from_the_shipped_one_only_in_ports() -> None:
    """The tests' nginx config is deploy/nginx.conf with three port lines changed."""
    shipped = SHIPPED.read_text()
    changed = site_config(shipped, 8080, (4001, 4002))
    diff = [
        line
        for line in difflib.unified_diff(shipped.splitlines(), changed.splitlines(), n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert diff == [
        "-    server 127.0.0.1:3001 max_fails=1 fail_timeout=10s;",
        "-    server 127.0.0.1:3002 max_fails=1 fail_timeout=10s;",
        "+    server 127.0.0.1:4001 max_fails=1 fail_timeout=10s;",
        "+    server 127.0.0.1:4002 max_fails=1 fail_timeout=10s;",
        "-    listen 80;",
        "+    listen 127.0.0.1:8080;",
    ]


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify has nothing to say about deploy/objstore@.service."""
    program = shutil.which("systemd-analyze")
    if program is None:
        pytest.skip("systemd-analyze is not installed (it comes with systemd)")
    text = UNIT.read_text()
    command, _ = unit_settings(text)
    unit = tmp_path / "objstore@.service"
    # The executable it names is not installed here: one that is takes its place.
    unit.write_text(text.replace(f"ExecStart={command[0]} ", f"ExecStart={sys.executable} ", 1))
    result = subprocess.run(
        [program, "verify", str(unit)], capture_output=True, check=False, text=True, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


async def test_the_unit_starts_objstore_and_sigterm_stops_it(tmp_path: Path) -> None:
    """The unit's command line and environment start objstore; SIGTERM stops it with 0."""
    command, env = unit_settings(UNIT.read_text())
    assert command.count(UNIT_REDIS) == 1
    redis = RedisProcess(tmp_path / "redis").start()
    try:
        args = [arg.replace("%i", "0").replace(UNIT_REDIS, redis.url) for arg in command[1:]]
        instance = Instance.start(tmp_path / "objstore", args, env)
        try:
            assert "Allowed    pages from https://store.example.com\n" in instance.banner
            assert (await http_request(instance.port, "GET", "/readyz")).status == 200
        finally:
            instance.stop(signal.SIGTERM)
        assert instance.process.returncode == 0
    finally:
        redis.stop()


async def test_console_page_loads_through_nginx(deployment: Deployment) -> None:
    """GET /test through nginx is the console page."""
    page = await http_request(deployment.port, "GET", "/test")
    assert (page.status, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert b"<title>objstore test page</title>" in page.body


@pytest.mark.parametrize("host", ["127.0.0.1", PUBLIC_NAME])
async def test_console_websocket_from_the_nginx_origin_is_accepted(
    deployment: Deployment, host: str
) -> None:
    """A WebSocket from the page nginx serves (Origin: its address or name) is upgraded."""
    head = await handshake(deployment.port, host, deployment.origin(host))
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head


async def test_websocket_from_another_origin_is_refused_through_nginx(
    deployment: Deployment,
) -> None:
    """The proxy does not open the store to other websites: their WebSocket gets 403."""
    head = await handshake(deployment.port, "127.0.0.1", "http://evil.example")
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), head


async def test_another_host_is_refused_through_nginx(deployment: Deployment) -> None:
    """nginx passes the Host on, so a read for a name nobody allowed (DNS rebinding) gets 403."""
    head = await answer_head(
        deployment.port, ["GET /get/score HTTP/1.1", f"Host: rebound.example:{deployment.port}"]
    )
    assert head.startswith(b"HTTP/1.1 403 Forbidden\r\n"), head


async def test_body_of_16_mib_passes_nginx(deployment: Deployment) -> None:
    """A POST /set body of exactly 16 MiB (objstore's default limit) is stored through nginx."""
    padding = 16 * 2**20 - len(json.dumps({"key": "big", "value": ""}))
    body = json.dumps({"key": "big", "value": "x" * padding})
    assert len(body) == 16 * 2**20
    answer = await http_request(deployment.port, "POST", "/set", body)
    assert answer.status == 200
    assert answer.json()["value"] == "x" * padding


async def test_body_over_16_mib_is_refused_by_nginx(deployment: Deployment) -> None:
    """A POST /set announcing 16 MiB + 1 byte gets nginx's 413 before any body is sent."""
    head = await answer_head(
        deployment.port,
        [
            "POST /set HTTP/1.1",
            f"Host: 127.0.0.1:{deployment.port}",
            f"Content-Length: {16 * 2**20 + 1}",
        ],
    )
    assert head.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\nServer: nginx"), head


async def test_events_through_nginx_arrive_unbuffered(deployment: Deployment) -> None:
    """An update reaches an SSE reader through nginx within a second of its set."""
    events = open_events(deployment.port, "key=sensor")
    _, ready = await anext(events)
    assert ready["event"] == "ready"
    started = time.monotonic()
    await deployment.post_set("sensor", {"t": 21.5})
    arrived, update = await anext(events)
    await events.aclose()
    assert update["event"] == "update"
    data = json.loads(update["data"])
    assert (data["key"], data["value"], str(data["rev"])) == ("sensor", {"t": 21.5}, update["id"])
    assert arrived - started < 1


async def test_new_connections_work_after_an_instance_is_killed(deployment: Deployment) -> None:
    """With one instance killed (SIGKILL), every new request and WebSocket goes to the other."""
    for instance in deployment.instances:
        assert (await http_request(instance.port, "GET", "/healthz")).status == 200
    deployment.instances[0].stop(signal.SIGKILL)
    for n in range(4):
        health = await http_request(deployment.port, "GET", "/healthz")
        assert health.status == 200
        await deployment.post_set("after", n)
        async with connect(f"ws://127.0.0.1:{deployment.port}/ws") as ws:
            await ws.send(json.dumps({"action": "get", "key": "after", "id": n}))
            reply = await recv_json(ws)
        assert (reply["ok"], reply["value"]) == (True, n)
    # Some of them were sent to the dead one first.
    assert "(111: Connection refused) while connecting to upstream" in deployment.nginx.error_log()


async def test_sets_through_nginx_reach_a_websocket_subscriber(deployment: Deployment) -> None:
    """Sets through nginx (POST /set and WebSocket) reach a subscriber through nginx, in order."""
    async with (
        connect(f"ws://127.0.0.1:{deployment.port}/ws") as subscriber,
        connect(f"ws://127.0.0.1:{deployment.port}/ws") as writer,
    ):
        # nginx gave them one instance each.
        assert [await websockets_open(i.port) for i in deployment.instances] == [1, 1]
        await subscriber.send(json.dumps({"action": "subscribe", "key": "score", "id": 1}))
        assert (await recv_json(subscriber))["ok"] is True
        for value in (1, 2):
            await deployment.post_set("score", value)
        await writer.send(json.dumps({"action": "set", "key": "score", "value": 3, "id": 2}))
        ack = await recv_json(writer)
        updates = [await recv_json(subscriber) for _ in range(3)]
    assert [u["value"] for u in updates] == [1, 2, 3]
    assert updates[0]["rev"] < updates[1]["rev"] < updates[2]["rev"] == ack["rev"]


async def test_both_instances_hold_the_same_revision(deployment: Deployment) -> None:
    """After sets through nginx, each instance answers GET /keys/score with the same ETag."""
    for value in (1, 2, 3):
        await deployment.post_set("score", value)
    answers = [await http_request(i.port, "GET", "/keys/score") for i in deployment.instances]
    assert [(a.status, a.body) for a in answers] == [(200, b"3"), (200, b"3")]
    assert answers[0].headers["etag"] == answers[1].headers["etag"]


async def test_a_value_written_before_a_kill_is_read_through_nginx(
    deployment: Deployment,
) -> None:
    """Values set through nginx on both instances are read through nginx after one dies."""
    for value in ("first", "second"):
        await deployment.post_set("kept", value)
    deployment.instances[1].stop(signal.SIGKILL)
    for _ in range(3):
        answer = await http_request(deployment.port, "GET", "/get/kept")
        assert (answer.status, answer.json()) == (200, {"key": "kept", "value": "second"})


async def test_a_client_moves_to_the_other_instance_when_its_own_is_killed(
    deployment: Deployment,
) -> None:
    """The Python client's watch through nginx goes on from the other instance after a kill."""
    url = f"ws://127.0.0.1:{deployment.port}/ws"
    async with (
        objstore.client.connect(url, min_backoff=0.05, max_backoff=0.2) as store,
        store.watch(key="door") as changes,
    ):
        kinds = [(await asyncio.wait_for(anext(changes), 5)).kind]
        counts = [await websockets_open(instance.port) for instance in deployment.instances]
        assert sorted(counts) == [0, 1]
        deployment.instances[counts.index(1)].stop(signal.SIGKILL)
        # The watch says "ready" again once it is subscribed anew, on the other instance.
        kinds.append((await asyncio.wait_for(anext(changes), 10)).kind)
        rev = await store.set("door", "open")
        change = await asyncio.wait_for(anext(changes), 5)
    assert kinds == ["ready", "ready"]
    assert (change.kind, change.key, change.value, change.rev) == ("update", "door", "open", rev)
