"""Health routes and /metrics against a real server: statuses, methods, counts of a workload."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from objstore import __version__
from objstore.metrics import authorized
from objstore.server import ObjstoreServer

from .conftest import Connect, StartServer
from .helpers import http_request, raw_http, recv_json
from .test_slow_subscribers import drain_until_closed

NOT_READY = {"status": "not ready", "reason": "writes to the cache folder are failing; retrying"}


async def scrape(
    server: ObjstoreServer, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Every sample of /metrics by name and labels, as ``name{label="v"}``."""
    answer = await http_request(server.port, "GET", "/metrics", headers=headers)
    assert answer.status == 200, answer.body
    samples = {}
    for family in text_string_to_metric_families(answer.body.decode()):
        for sample in family.samples:
            labels = ",".join(f'{name}="{value}"' for name, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def wait_for_status(server: ObjstoreServer, path: str, status: int) -> None:
    for _ in range(200):  # 10 s
        if (await http_request(server.port, "GET", path)).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never answered {status}")


# -- health --------------------------------------------------------------------------------


async def test_healthz_says_ok(server: ObjstoreServer) -> None:
    """GET /healthz is 200 {"status": "ok"} in JSON."""
    answer = await http_request(server.port, "GET", "/healthz")
    assert (answer.status, answer.json()) == (200, {"status": "ok"})
    assert answer.headers["content-type"] == "application/json"


async def test_readyz_says_ready_once_loaded(server: ObjstoreServer) -> None:
    """GET /readyz is 200 {"status": "ready"} while writes succeed."""
    answer = await http_request(server.port, "GET", "/readyz")
    assert (answer.status, answer.json()) == (200, {"status": "ready"})


async def test_health_is_readyz(server: ObjstoreServer, cache_dir: Path) -> None:
    """GET /health answers as /readyz, failing writes included."""
    assert (await http_request(server.port, "GET", "/health")).json() == {"status": "ready"}
    (cache_dir / "k.json").mkdir()
    await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1}')
    answer = await http_request(server.port, "GET", "/health")
    assert (answer.status, answer.json()) == (503, NOT_READY)


async def test_readyz_is_503_while_writes_fail_and_200_once_they_succeed(
    server: ObjstoreServer, cache_dir: Path
) -> None:
    """A write that fails makes /readyz 503 with a reason; once its retry works, 200 again."""
    (cache_dir / "k.json").mkdir()  # a folder where the file goes: the write fails
    answer = await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1}')
    assert answer.status == 500
    answer = await http_request(server.port, "GET", "/readyz")
    assert (answer.status, answer.json()) == (503, NOT_READY)
    assert (await http_request(server.port, "GET", "/healthz")).status == 200
    shutil.rmtree(cache_dir / "k.json")
    await wait_for_status(server, "/readyz", 200)
    assert (cache_dir / "k.json").read_text() == "1\n"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/health", "/metrics"])
async def test_head_gets_the_head_without_a_body(server: ObjstoreServer, path: str) -> None:
    """HEAD answers 200 with the Content-Length of GET and no body."""
    get = await http_request(server.port, "GET", path)
    request = f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n"
    raw = await raw_http(server.port, request.encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b""
    if path != "/metrics":  # the metrics change between two scrapes
        assert f"Content-Length: {len(get.body)}".encode() in head


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/health", "/metrics"])
async def test_other_methods_are_405_with_allow(server: ObjstoreServer, path: str) -> None:
    """POST to a health or metrics route is 405 naming GET and HEAD."""
    answer = await http_request(server.port, "POST", path, "{}")
    assert answer.status == 405
    assert answer.headers["allow"] == "GET, HEAD"
    assert answer.json() == {"error": f"method POST is not allowed on {path}; use GET, HEAD"}


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_rebound_host_is_refused_on_health_and_metrics(
    server: ObjstoreServer, path: str
) -> None:
    """Health and metrics pass the Host check of every route: another host name is 403."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: evil.example:{server.port}\r\nConnection: close\r\n\r\n"
    )
    raw = await raw_http(server.port, request.encode())
    assert raw.startswith(b"HTTP/1.1 403 Forbidden\r\n")


# -- metrics -------------------------------------------------------------------------------


async def test_metrics_count_a_known_workload(server: ObjstoreServer, client: Connect) -> None:
    """7 sets seen by 3 subscribers, 2 invalid keys: /metrics counts exactly that."""
    async with client() as a, client() as b, client() as c, client() as publisher:
        for ws in (a, b, c):
            await ws.send('{"action": "subscribe", "key": "k"}')
        await a.send('{"action": "subscribe", "prefix": "p/", "id": 1}')
        assert (await recv_json(a))["id"] == 1
        for n in range(7):
            await publisher.send(json.dumps({"action": "set", "key": "k", "value": n}))
        for _ in range(2):
            await publisher.send('{"action": "get", "key": ""}')
            assert "error" in await recv_json(publisher)
        for ws in (a, b, c):
            assert [(await recv_json(ws))["value"] for _ in range(7)] == list(range(7))
        await server.store.flush()
        samples = await scrape(server)
    assert samples['objstore_info{version="' + __version__ + '"}'] == 1
    assert samples['objstore_connections{protocol="websocket"}'] == 4
    assert samples['objstore_connections{protocol="http"}'] == 1  # the scrape itself
    assert samples['objstore_connections{protocol="sse"}'] == 0
    assert samples['objstore_subscriptions{kind="key"}'] == 3
    assert samples['objstore_subscriptions{kind="prefix"}'] == 1
    assert samples['objstore_messages_received_total{action="set"}'] == 7
    assert samples['objstore_messages_received_total{action="subscribe"}'] == 4
    assert samples['objstore_messages_received_total{action="get"}'] == 2
    assert samples['objstore_errors_sent_total{code="invalid_key"}'] == 2
    assert samples["objstore_sets_total"] == 7
    assert samples["objstore_updates_delivered_total"] == 21
    assert samples["objstore_updates_conflated_total"] == 0
    assert samples["objstore_keys"] == 1
    assert samples["objstore_stored_bytes"] == 1  # the value 6
    assert samples["objstore_pending_writes"] == 0
    assert samples["objstore_write_failures_total"] == 0
    assert samples["objstore_write_latency_seconds_count"] >= 1
    assert (
        samples['objstore_write_latency_seconds_bucket{le="+Inf"}']
        == (samples["objstore_write_latency_seconds_count"])
    )
    assert "process_resident_memory_bytes" in samples


async def test_messages_that_are_not_actions_count_as_other(
    server: ObjstoreServer, client: Connect
) -> None:
    """Invalid JSON, a missing action and an action that is a list count as "other"."""
    async with client() as ws:
        for message in ("{", '{"key": "k"}', '{"action": [1]}'):
            await ws.send(message)
            assert "error" in await recv_json(ws)
    samples = await scrape(server)
    assert samples['objstore_messages_received_total{action="other"}'] == 3
    assert samples['objstore_errors_sent_total{code="invalid_json"}'] == 1
    assert samples['objstore_errors_sent_total{code="invalid_message"}'] == 2


async def test_metrics_count_event_streams(server: ObjstoreServer) -> None:
    """An open event stream counts as an sse connection and a prefix subscription."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"GET /events?prefix=a HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
    )
    await reader.readuntil(b"event: ready")
    samples = await scrape(server)
    writer.close()
    assert samples['objstore_connections{protocol="sse"}'] == 1
    assert samples['objstore_subscriptions{kind="prefix"}'] == 1


async def test_metrics_count_failed_writes(server: ObjstoreServer, cache_dir: Path) -> None:
    """A write that cannot be made counts as a write failure."""
    (cache_dir / "k.json").mkdir()
    await http_request(server.port, "POST", "/set", '{"key": "k", "value": 1}')
    samples = await scrape(server)
    assert samples["objstore_write_failures_total"] >= 1
    assert samples['objstore_errors_sent_total{code="storage"}'] == 1


async def test_metrics_count_a_slow_client_conflated_and_closed(
    start_server: StartServer,
) -> None:
    """A subscriber that reads nothing has updates conflated, then is closed and counted."""
    server = await start_server(stall_timeout=0.5)
    url = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(url, max_queue=1) as slow, connect(url) as pub:
        await slow.send('{"action": "subscribe", "key": "hot"}')
        await slow.send('{"action": "get", "key": "sync"}')
        await recv_json(slow)
        slow.transport.pause_reading()
        value = "y" * 64_000
        for n in range(200):  # 13 MB: more than the socket buffers hold
            await pub.send(json.dumps({"action": "set", "key": "hot", "value": [n, value]}))
        await pub.send('{"action": "get", "key": "sync"}')
        await recv_json(pub, timeout=30)
        await asyncio.sleep(1.0)
        slow.transport.resume_reading()
        with pytest.raises(ConnectionClosed):
            await drain_until_closed(slow)
    samples = await scrape(server)
    assert samples["objstore_slow_clients_closed_total"] == 1
    assert samples["objstore_updates_delivered_total"] == 200
    assert samples["objstore_updates_conflated_total"] > 0


async def test_event_loop_lag_is_measured(server: ObjstoreServer) -> None:
    """A loop blocked for 1.3 s shows a lag of at least 0.3 s after the next tick."""
    time.sleep(1.3)  # noqa: ASYNC251  # blocks the server's loop on purpose: it is this one
    await asyncio.sleep(0.05)
    samples = await scrape(server)
    assert samples["objstore_event_loop_lag_seconds"] >= 0.3


async def test_metrics_token_is_required_when_set(start_server: StartServer) -> None:
    """With a metrics token, /metrics is 401 without it or with another, 200 with it."""
    server = await start_server(metrics_token="s3cret")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
        answer = await http_request(server.port, "GET", "/metrics", headers=headers)
        assert answer.status == 401
        assert answer.headers["www-authenticate"] == "Bearer"
        assert answer.json() == {
            "error": "forbidden: metrics need a token: send the header Authorization: Bearer "
            "<token>, with the token given to --metrics-token or one whose rules say "
            "metrics = true",
            "code": "forbidden",
        }
    samples = await scrape(server, {"Authorization": "Bearer s3cret"})
    assert samples["objstore_keys"] == 0


async def test_with_access_control_metrics_need_a_token_that_may_read_them(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A token whose rules say metrics = true reads /metrics; another token, or none, gets
    401; the --metrics-token still works; health stays open."""
    rules = tmp_path / "perms.toml"
    rules.write_text(
        '[tokens.ops]\ntoken = "ops-token-0123456789abc"\nmetrics = true\n'
        '[tokens.app]\ntoken = "app-token-0123456789abc"\nread = [""]\nwrite = [""]\n'
    )
    server = await start_server(auth_file=rules, metrics_token="scraper-token-0123456789")
    for token, status in [
        ("ops-token-0123456789abc", 200),
        ("scraper-token-0123456789", 200),
        ("app-token-0123456789abc", 401),
        (None, 401),
    ]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        answer = await http_request(server.port, "GET", "/metrics", headers=headers)
        assert (token, answer.status) == (token, status)
    assert (await http_request(server.port, "GET", "/readyz")).status == 200


async def test_health_needs_no_metrics_token(start_server: StartServer) -> None:
    """The metrics token protects /metrics only: /healthz answers without it."""
    server = await start_server(metrics_token="s3cret")
    assert (await http_request(server.port, "GET", "/healthz")).status == 200


def test_token_check() -> None:
    """authorized: anyone without a token; with one, exactly ``Bearer <token>``."""
    assert authorized(None, None)
    assert not authorized(None, "t")
    assert not authorized("Bearer", "t")
    assert not authorized("Bearer tt", "t")
    assert not authorized("Basic t", "t")
    assert authorized("Bearer t", "t")
    assert authorized("bearer  t ", "t")
    assert not authorized("Bearer \udcff", "t")


def test_every_action_of_the_protocol_has_its_count() -> None:
    """The metrics label every action the parser accepts, and "other" for the rest."""
    from objstore import tallies
    from objstore.protocol import ACTIONS

    assert (*ACTIONS, "other") == tallies.MESSAGE_ACTIONS
    indexed = (tallies.MESSAGE_ACTIONS[tallies.SET], tallies.MESSAGE_ACTIONS[tallies.GET])
    assert indexed == ("set", "get")


def test_prometheus_client_is_not_imported_at_start() -> None:
    """The program's modules load without prometheus_client (imported at the first scrape)."""
    code = "import sys, objstore.cli; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == "False\n"
