"""``GET /metrics``: the server's counts in the Prometheus text format, read when scraped.

Owns the metric names, types and labels, the collector that reads them, the
server's own registry (never the global one: one process may run several
servers) and the optional bearer token that protects the page. Nothing is
counted here: the collector reads, at scrape time, the plain counters the
server keeps where events already happen (:mod:`objstore.tallies`, the store,
its writer, the hub), so the hot path pays nothing for a page nobody asks for.
The ``prometheus_client`` library is imported at the first scrape, not at start
(its import, with the HTTP server modules it brings, is a tenth of a start).
Knows nothing of sockets, HTTP parsing or the wire protocol.

Cost of a scrape: the sizes of the values are added up, the subscriptions and
connections counted: linear in the keys, subscriptions and connections.
Measured with 100,000 keys of 100 bytes: 2.7 ms a scrape (2 ms of it adding
up the sizes), 22 KiB allocated at its peak. Nothing is kept between scrapes
but the collector's baseline (19 ints). The page is bounded by the fixed label
sets (actions, error codes, protocols, kinds, latency buckets): about 5 KB
with the process metrics, whatever the clients send.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol, cast

from . import __version__, tallies
from .errors import Forbidden
from .hub import Hub
from .replies import encode_error_reply
from .writer import LATENCY_BUCKETS

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import Collector

__all__ = ["MetricsPage", "ObservedServer", "ServerCollector", "authorized"]

_BUCKET_BOUNDS = [f"{bound:g}" for bound in LATENCY_BUCKETS] + ["+Inf"]


class ObservedWriter(Protocol):
    """What the collector reads of a store's writer (the cache folder's, or Redis's)."""

    @property
    def pending(self) -> int:
        """Writes waiting to be sent."""

    @property
    def failures(self) -> int:
        """Writes that failed so far."""

    def latency(self) -> tuple[list[int], float]:
        """Cumulative counts per latency bucket, and the sum of the latencies."""


class ObservedStorage(Protocol):
    """What the collector reads of a store."""

    @property
    def sets(self) -> int:
        """Values stored so far."""

    @property
    def writer(self) -> ObservedWriter:
        """Its writer."""

    def __len__(self) -> int:
        """Keys with a value."""

    def stored_bytes(self) -> int:
        """The sum of the values' sizes."""


class ObservedServer(Protocol):
    """What the collector reads of a server."""

    @property
    def storage(self) -> ObservedStorage:
        """The store: its keys, values, sets and writer."""

    @property
    def hub(self) -> Hub:
        """The subscriptions."""

    @property
    def tallies(self) -> tallies.ServerTallies:
        """The server's own counts: deliveries, conflations, slow clients closed."""

    @property
    def loop_lag(self) -> float:
        """How late the once-a-second timer last fired, in seconds."""

    def connection_counts(self) -> dict[str, int]:
        """Open connections by protocol: websocket, http, sse."""


class ServerCollector:
    """Yields the metrics of one server, read from its counters at each scrape (a
    ``prometheus_client`` collector, by its ``collect`` method).

    The process-wide counts (messages, errors) are reported from this
    collector's creation on, so that a server started after another in the
    same process starts from zero.
    """

    def __init__(self, server: ObservedServer) -> None:
        self._server = server
        self._messages_base = list(tallies.messages_received)
        self._errors_base = dict(tallies.errors_sent)

    def collect(self) -> Iterable[Metric]:
        """The metrics as they are now."""
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        server = self._server
        store = server.storage
        writer = store.writer
        counts = server.tallies
        info = GaugeMetricFamily("objstore_info", "The objstore version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        connections = GaugeMetricFamily(
            "objstore_connections", "Open connections by protocol.", labels=["protocol"]
        )
        for protocol, count in server.connection_counts().items():
            connections.add_metric([protocol], count)
        yield connections
        keys, prefixes = server.hub.subscription_counts()
        subscriptions = GaugeMetricFamily(
            "objstore_subscriptions",
            "Subscriptions to a key and to a prefix (WebSocket and event streams).",
            labels=["kind"],
        )
        subscriptions.add_metric(["key"], keys)
        subscriptions.add_metric(["prefix"], prefixes)
        yield subscriptions
        messages = CounterMetricFamily(
            "objstore_messages_received",
            "WebSocket messages received by action (other: unknown or not a JSON object).",
            labels=["action"],
        )
        for index, action in enumerate(tallies.MESSAGE_ACTIONS):
            messages.add_metric(
                [action], tallies.messages_received[index] - self._messages_base[index]
            )
        yield messages
        errors = CounterMetricFamily(
            "objstore_errors_sent",
            "Error replies and error bodies sent (WebSocket and HTTP), by code.",
            labels=["code"],
        )
        for code, count in tallies.errors_sent.items():
            errors.add_metric([code], count - self._errors_base.get(code, 0))
        yield errors
        yield CounterMetricFamily(
            "objstore_updates_delivered",
            "Updates queued to subscribers, one per subscriber per update.",
            value=counts.delivered,
        )
        yield CounterMetricFamily(
            "objstore_updates_conflated",
            "Updates a slow WebSocket client never got, replaced by a newer one of the key.",
            value=counts.conflated,
        )
        yield CounterMetricFamily(
            "objstore_slow_clients_closed",
            "WebSocket clients closed for reading nothing for the stall timeout.",
            value=counts.slow_closed,
        )
        yield CounterMetricFamily(
            "objstore_sets", "Values stored: sets, patches and increments.", value=store.sets
        )
        yield GaugeMetricFamily(
            "objstore_pending_writes",
            "Keys whose file waits to be written.",
            value=writer.pending,
        )
        buckets, total = writer.latency()
        yield HistogramMetricFamily(
            "objstore_write_latency_seconds",
            "Batches of file writes by the time from their first write being queued "
            "to their last file written.",
            buckets=list(zip(_BUCKET_BOUNDS, buckets, strict=True)),
            sum_value=total,
        )
        yield CounterMetricFamily(
            "objstore_write_failures",
            "File writes and journal appends that failed, retries included.",
            value=writer.failures,
        )
        yield GaugeMetricFamily("objstore_keys", "Keys with a value.", value=len(store))
        yield GaugeMetricFamily(
            "objstore_stored_bytes",
            "The sum of the values' sizes as compact JSON.",
            value=store.stored_bytes(),
        )
        yield GaugeMetricFamily(
            "objstore_event_loop_lag_seconds",
            "How late the event loop ran its once-a-second timer, last time.",
            value=server.loop_lag,
        )


def authorized(authorization: str | None, token: str | None) -> bool:
    """Whether a request with this ``Authorization`` header may read the metrics.

    Without a *token* anyone may; with one, the header must be
    ``Bearer <token>``, compared in constant time.
    """
    if token is None:
        return True
    if authorization is None:
        return False
    scheme, _, given = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"),
        token.encode("utf-8", "surrogateescape"),
    )


class MetricsPage:
    """The ``/metrics`` page of one server: its registry and its token."""

    def __init__(self, server: ObservedServer, token: str | None = None) -> None:
        self.token = token
        # Made now: the process-wide counts are reported from the server's start.
        self._collector = ServerCollector(server)
        self._registry: CollectorRegistry | None = None

    @property
    def registry(self) -> CollectorRegistry:
        """The registry of this server's metrics, made (and prometheus_client imported)
        when first asked for."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry, ProcessCollector

            self._registry = CollectorRegistry()
            self._registry.register(cast("Collector", self._collector))
            # Reads /proc on Linux; elsewhere it yields nothing.
            ProcessCollector(registry=self._registry)
        return self._registry

    def answer(
        self, authorization: str | None, *, granted: bool = False
    ) -> tuple[HTTPStatus, bytes, str, list[tuple[str, str]]]:
        """Status, body, content type and headers of the answer to a scrape.

        *granted*: the request's access token may read metrics; else it needs the
        metrics token (and without one configured, it is refused).
        """
        if not granted and (self.token is None or not authorized(authorization, self.token)):
            refusal = Forbidden(
                "forbidden: metrics need a token: send the header Authorization: Bearer "
                "<token>, with the token given to --metrics-token or one whose rules say "
                "metrics = true",
                unauthenticated=True,
            )
            body = encode_error_reply(refusal, None)
            return (
                HTTPStatus.UNAUTHORIZED,
                body,
                "application/json",
                [("WWW-Authenticate", "Bearer")],
            )
        from prometheus_client import generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return HTTPStatus.OK, generate_latest(self.registry), CONTENT_TYPE_LATEST, []
