"""Prometheus metrics for a node: `braid serve --metrics HOST:PORT` serves /metrics.

The node and its store keep plain counters (an integer add on the hot path, nothing more)
and histograms (runtime/histogram.py: a bisect and three adds per observation; about 0.5 us
per request with its timing, measured); a custom collector reads them when Prometheus
scrapes: `braid_request_duration_seconds` by operation and outcome (ok, or the error's
name), the log's `braid_wal_batch_records` and `braid_wal_sync_duration_seconds` per batch,
`braid_checkpoint_duration_seconds`, the counters and gauges, and `braid_build_info`
(version, Python). The standard process and Python collectors (CPU, memory, descriptors,
python_info, garbage collections) are registered beside them. The HTTP endpoint runs in its own
daemon thread on its own port: it is for operators, never on the data path.

The endpoint binds its port first (`MetricsEndpoint`, before the node opens its store, so a
port in use creates nothing) and serves from then on (`start`), while the store recovers
too; the node's figures join once it is composed (`attach`). Besides /metrics:

- `/healthz`: 200 while the node can do its work: during recovery (which is work), and once
  serving while its event loop turns (a loop that does not run a callback within
  `limits.health_loop_seconds_max` is 503, naming how long it was waited for) and its
  write-ahead log has not failed (then every request is refused until a restart: 503);
- `/readyz`: 200 only when the node is ready for clients: its store recovered and it
  serving on its address; 503 saying why not (recovering the store, shutting down, its
  write-ahead log failed).

Each answers one line of text saying what it found. A connection whose first bytes are not
an HTTP request line (a braid client pointed at this port) is answered at once with `400
Bad Request` saying what the port is, instead of waiting for a request line that never
comes: the client reads those bytes as "not a braid node".
"""

from __future__ import annotations

import asyncio
import io
import platform
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from braid import __version__, errors, limits
from braid.errors import BraidError
from braid.runtime.histogram import Histogram
from braid.runtime.server import NodeServer, reason
from braid.storage.router import Store

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

# (name, help, is a counter) for each figure of DurableEngine.figures()
_STORE_FIGURES = {
    "wal_records_total": ("Records appended to the write-ahead log.", True),
    "wal_batches_total": ("Group commits written and fsync'd.", True),
    "wal_sync_seconds_total": ("Seconds spent writing and fsyncing log batches.", True),
    "wal_disk_full_total": ("Log writes refused because the disk was full.", True),
    "wal_segments": ("Log segment files held (not yet released).", False),
    "wal_failed": (
        "1 once the write-ahead log failed (a write or fsync error): every request is "
        "refused with WAL_FAILED until the node restarts; /healthz and /readyz say so.",
        False,
    ),
    "wal_durable_lsn": ("Highest log sequence number known durable.", False),
    "checkpoints_total": ("Checkpoints of the log into the applied state.", True),
    "checkpoint_failures_total": ("Checkpoints that failed (logged; retried later).", True),
    "checkpoint_seconds_total": ("Seconds spent in checkpoints.", True),
    "applied_lsn": ("Log sequence number the applied state is checkpointed through.", False),
    "pending_operations": ("Durable operations waiting for a checkpoint.", False),
    "cached_documents": ("Documents held in the memory cache.", False),
    "cached_bytes": ("Approximate bytes of cached documents.", False),
}


class NodeCollector(Collector):
    def __init__(self, node: NodeServer, store: Store) -> None:
        self._node = node
        self._store = store

    def collect(self) -> Iterator[Metric]:
        stats = self._node.stats
        yield CounterMetricFamily("braid_requests", "Requests received.", value=stats.requests)
        yield CounterMetricFamily(
            "braid_overloaded", "Requests refused with OVERLOADED.", value=stats.overloaded
        )
        yield GaugeMetricFamily(
            "braid_requests_in_flight", "Requests being served.", value=stats.in_flight
        )
        yield CounterMetricFamily(
            "braid_connections_accepted", "Connections accepted.", value=stats.connections_accepted
        )
        yield GaugeMetricFamily(
            "braid_connections_open", "Connections open.", value=stats.connections_open
        )
        yield CounterMetricFamily(
            "braid_protocol_failures",
            "Connections closed because the peer broke the protocol (not counting failed "
            "authentication).",
            value=stats.protocol_failures,
        )
        yield CounterMetricFamily(
            "braid_auth_failures",
            "Handshakes that failed because the peer's cluster secret differs from the "
            "node's (each is logged with the peer's address).",
            value=stats.auth_failures,
        )
        yield CounterMetricFamily(
            "braid_internal_errors",
            "Requests answered INTERNAL (an exception that is a bug in braid; each is logged "
            "with its traceback).",
            value=stats.internal_errors,
        )
        yield GaugeMetricFamily(
            "braid_partial_frame_bytes",
            "Bytes held for incomplete frames, over every connection.",
            value=stats.partial_frame_bytes,
        )
        yield CounterMetricFamily(
            "braid_buffer_overloads",
            "Connections closed because the node's bound on bytes of incomplete frames was "
            "passed (the largest holder is closed).",
            value=stats.buffer_overloads,
        )
        yield CounterMetricFamily(
            "braid_frame_timeouts",
            "Connections closed because a frame did not arrive within the time bound.",
            value=stats.frame_timeouts,
        )
        failures = CounterMetricFamily(
            "braid_request_failures",
            "Requests answered with an error, by code.",
            labels=["code", "name"],
        )
        for code, count in sorted(stats.by_code.items()):
            info = errors.lookup(code)
            failures.add_metric([str(code), info.name if info else "UNKNOWN"], count)
        yield failures
        yield self._request_latency()
        for figure, histogram in self._store.durable.histograms().items():
            documentation = _STORE_HISTOGRAMS[figure]
            yield _histogram_family("braid_" + figure, documentation, [], [([], histogram)])
        for figure, value in self._store.durable.figures().items():
            # A figure not described here yet is still exported, never fatal to a scrape.
            default = (f"Store figure {figure}.", figure.endswith("_total"))
            documentation, counter = _STORE_FIGURES.get(figure, default)
            name = "braid_" + figure.removesuffix("_total")
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family(name, documentation, value=value)

    def _request_latency(self) -> HistogramMetricFamily:
        by_label: list[tuple[list[str], Histogram]] = []
        for (operation, code), histogram in sorted(
            self._node.stats.latency.items(), key=lambda item: (item[0][0].__name__, item[0][1])
        ):
            info = errors.lookup(code) if code else None
            outcome = "ok" if not code else (info.name if info else str(code))
            by_label.append(([operation.__name__.lower(), outcome], histogram))
        return _histogram_family(
            "braid_request_duration_seconds",
            "Seconds from a request's admission to its answer, by operation and outcome (ok, "
            "or the error's name).",
            ["operation", "outcome"],
            by_label,
        )


_STORE_HISTOGRAMS = {
    "checkpoint_duration_seconds": "Seconds each checkpoint of the log took.",
    "wal_sync_duration_seconds": "Seconds each log batch took to write and sync (fsync).",
    "wal_batch_records": "Records per log batch (group commit: one sync each).",
}


def _histogram_family(
    name: str, documentation: str, labels: list[str], members: list[tuple[list[str], Histogram]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=labels)
    for values, histogram in members:
        family.add_metric(values, histogram.cumulative(), sum_value=histogram.sum)
    return family


class BuildCollector(Collector):
    """braid_build_info: 1, labelled with braid's version and the Python running it."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "braid_build_info",
            "braid's version and the Python it runs on (always 1).",
            labels=["version", "python", "implementation"],
        )
        python = platform.python_version()
        family.add_metric([__version__, python, platform.python_implementation()], 1)
        yield family


# An HTTP request line begins with a method token (upper-case letters) and a space.
_REQUEST_LINE_START = re.compile(rb"[A-Z]{1,16}( |$)")
_PEEK_BYTES = 17
_NOT_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    b"This is a braid node's metrics port (HTTP, /metrics). braid clients connect to the "
    b"node's --listen address.\n"
)


class _MetricsRequestHandler(WSGIRequestHandler):
    """Serves one metrics connection, silently (no line per scrape on stderr)."""

    def handle(self) -> None:
        reader = self.rfile
        assert isinstance(reader, io.BufferedReader)  # StreamRequestHandler's rbufsize -1
        if not _REQUEST_LINE_START.match(reader.peek(_PEEK_BYTES)[:_PEEK_BYTES]):
            self.wfile.write(_NOT_HTTP_ANSWER)  # not HTTP: say so now, and close
            return
        super().handle()

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing."""


class _MetricsServer(ThreadingWSGIServer):
    address_family = socket.AF_INET


_LOG_FAILED = (
    "the write-ahead log failed (a write or fsync error): every request is refused with "
    "WAL_FAILED until the node is restarted"
)


class MetricsEndpoint:
    """The metrics and health endpoint: its port bound at construction, served from
    `start`, the node's figures and readiness from `attach`."""

    def __init__(self, host: str, port: int) -> None:
        """Bind host:port (port 0 picks one); LISTEN_FAILED naming it if that fails."""
        self.registry = CollectorRegistry(auto_describe=True)
        # The standard process (CPU, memory, file descriptors) and Python (version, garbage
        # collections) collectors, and braid's build.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(BuildCollector())
        self._metrics_app = make_wsgi_app(self.registry)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            server_class = type("MetricsServer", (_MetricsServer,), {"address_family": family})
            self.server: WSGIServer = make_server(
                host, port, self._app, server_class, handler_class=_MetricsRequestHandler
            )
        except OSError as error:
            raise BraidError(
                errors.LISTEN_FAILED,
                f"cannot serve metrics on {host}:{port}: {reason(error)}",
            ) from None
        self.host = host
        self.port: int = self.server.server_port
        self._thread: threading.Thread | None = None
        self._node: NodeServer | None = None
        self._store: Store | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> None:
        """Serve from a daemon thread: /healthz and /readyz at once (the node is
        recovering), the node's figures once it is attached."""
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="braid-metrics", daemon=True
        )
        self._thread.start()

    def attach(self, node: NodeServer, store: Store) -> None:
        """The node serves (called on its event loop): export its figures, and answer
        /readyz and /healthz from it."""
        self.registry.register(NodeCollector(node, store))
        self._loop = asyncio.get_running_loop()
        self._store = store
        self._node = node

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
        self.server.server_close()

    # -- health (the endpoint's thread) ---------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """Whether the node can do its work, and what was found (see the module text)."""
        node, loop = self._node, self._loop
        if node is None or loop is None:
            return True, "ok: recovering the store"
        turned = threading.Event()
        try:
            loop.call_soon_threadsafe(turned.set)
        except RuntimeError:  # the loop closed: the node is stopping
            return False, "the node's event loop has stopped"
        seconds = limits.health_loop_seconds_max
        if not turned.wait(seconds):
            return False, f"the node's event loop did not run a callback within {seconds} s"
        if self._log_failed():
            return False, _LOG_FAILED
        return True, "ok: serving"

    def _log_failed(self) -> bool:
        return self._store is not None and self._store.durable.log_failed

    def readiness(self) -> tuple[bool, str]:
        """Whether clients should be sent here: recovered and serving."""
        node = self._node
        if node is None:
            return False, "not ready: recovering the store"
        if not node.ready:
            return False, "not ready: shutting down"
        if self._log_failed():
            return False, "not ready: " + _LOG_FAILED
        return True, f"ready: serving on {node.address}"

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path not in ("/healthz", "/readyz"):
            metrics: Iterable[bytes] = self._metrics_app(environ, start_response)
            return metrics
        good, text = self.health() if path == "/healthz" else self.readiness()
        status = "200 OK" if good else "503 Service Unavailable"
        body = (text + "\n").encode()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
        ]
        start_response(status, headers)
        return [body]
