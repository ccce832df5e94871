"""Prometheus metrics for a node: `braid serve --metrics HOST:PORT` serves /metrics.

The node and its store keep plain counters (an integer add on the hot path, nothing more);
a custom collector reads them when Prometheus scrapes. The HTTP endpoint runs in its own
daemon thread on its own port: it is for operators, never on the data path.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from braid import errors
from braid.runtime.server import NodeServer
from braid.storage.router import Store

# (name, help, is a counter) for each figure of DurableEngine.figures()
_STORE_FIGURES = {
    "wal_records_total": ("Records appended to the write-ahead log.", True),
    "wal_batches_total": ("Group commits written and fsync'd.", True),
    "wal_sync_seconds_total": ("Seconds spent writing and fsyncing log batches.", True),
    "wal_disk_full_total": ("Log writes refused because the disk was full.", True),
    "wal_segments": ("Log segment files held (not yet released).", False),
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
            "Connections closed because the peer broke the protocol.",
            value=stats.protocol_failures,
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
        for figure, value in self._store.durable.figures().items():
            # A figure not described here yet is still exported, never fatal to a scrape.
            default = (f"Store figure {figure}.", figure.endswith("_total"))
            documentation, counter = _STORE_FIGURES.get(figure, default)
            name = "braid_" + figure.removesuffix("_total")
            family = CounterMetricFamily if counter else GaugeMetricFamily
            yield family(name, documentation, value=value)


def start_metrics(
    host: str, port: int, node: NodeServer, store: Store
) -> tuple[WSGIServer, threading.Thread]:
    """Serve /metrics on host:port (port 0 picks one: read `server.server_port`)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeCollector(node, store))
    return start_http_server(port, addr=host, registry=registry)
