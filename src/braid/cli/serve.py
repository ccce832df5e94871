"""`braid serve`: run a node that serves the document API over braid's protocol.

The one place a node is composed: store, server, signal handlers. SIGTERM (or SIGINT) shuts
down gracefully (see braid.runtime.server).

What the node says, through the `braid` loggers on stderr (`--log-level`, `--log-format
json` for one JSON object per line): once its store is open, what opening it recovered
(log records replayed, a torn tail truncated, the time it took); then "serving" once, with
its address; then its metrics and health address, if any; at the end, "shutting down".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import ssl
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import braid
from braid import errors, limits
from braid.cli.secret import load_secret
from braid.client import parse_address
from braid.errors import BraidError
from braid.runtime.metrics import MetricsEndpoint
from braid.runtime.server import NodeServer, Recovery, ServerConfig, listen_socket
from braid.storage.durable import DurableConfig, note_serving
from braid.storage.scan import refuse_foreign_directory

# Measured at 64 patches in flight, fresh node each, 3 runs: 0.1 ms 16-17k/s, 1 ms 22-23k/s,
# 2 ms 21-22k/s, 5 ms (CPython's default) 17-21k/s.
GIL_SWITCH_INTERVAL_SECONDS = 0.001
LOG_LEVELS = ("debug", "info", "warning", "error")
log = logging.getLogger("braid.node")

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve a store over the network",
        description="Serve the embedded store in --data over braid's binary protocol. The "
        "cluster secret comes from --secret-file or the BRAID_SECRET environment variable; "
        "clients must know it. SIGTERM stops the node gracefully.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="the store directory (created if missing; an existing directory must be a "
        "store or empty)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:7400",
        help="HOST:PORT (default %(default)s; port 0 picks one)",
    )
    parser.add_argument("--cluster", default="braid", help="cluster id peers must share")
    parser.add_argument("--name", default="braid-node", help="this node's name in handshakes")
    parser.add_argument(
        "--secret-file",
        type=Path,
        help="file holding the cluster secret (`braid secret FILE` makes one)",
    )
    parser.add_argument("--tls-cert", type=Path, help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", type=Path, help="the certificate's private key (PEM)")
    parser.add_argument(
        "--ready-file", type=Path, help="write the bound HOST:PORT here once serving"
    )
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics, and /healthz and "
        "/readyz (200 once the store is recovered and the node serving) (port 0 picks one)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="the least severe log lines written to stderr (default %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text, or as one JSON object each (time, level, logger, message) "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--wal-segment-bytes",
        type=int,
        default=DurableConfig().segment_bytes,
        help="size of each preallocated log segment (default %(default)s)",
    )
    parser.add_argument(
        "--streams-max",
        type=int,
        default=limits.connection_streams_max,
        help="requests in flight per connection; more are answered OVERLOADED "
        "(default %(default)s)",
    )
    parser.add_argument(
        "--node-requests-max",
        type=int,
        default=limits.node_requests_max,
        help="requests in flight over the whole node, at least --streams-max; more are "
        "answered OVERLOADED (default %(default)s)",
    )
    parser.add_argument(
        "--partial-frame-bytes-max",
        type=int,
        default=limits.node_partial_frame_bytes_max,
        help="bytes of incomplete frames the node holds over all connections, at least "
        f"{limits.frame_bytes_max} (one maximal frame); past it the connection holding the "
        "most is closed with OVERLOADED (default %(default)s)",
    )
    parser.add_argument(
        "--partial-frame-seconds-max",
        type=float,
        default=limits.partial_frame_seconds_max,
        help="seconds one frame may take to arrive; a connection whose frame takes longer is "
        "closed with FRAME_TIMEOUT (default %(default)s)",
    )
    parser.set_defaults(handler=handle)


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise BraidError(errors.INVALID_SETTING, "--tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        raise BraidError(
            errors.INVALID_SETTING,
            f"cannot load the TLS certificate {cert} with its key {key}: "
            f"{getattr(error, 'strerror', None) or error}",
        ) from None
    return context


def check_bounds(streams_max: int, node_requests_max: int) -> None:
    """The in-flight bounds relate as in braid.limits: 1 <= per connection <= per node."""
    if streams_max < 1:
        raise BraidError(errors.INVALID_SETTING, "--streams-max must be at least 1")
    if node_requests_max < streams_max:
        raise BraidError(
            errors.INVALID_SETTING, "--node-requests-max must be at least --streams-max"
        )


def check_buffering(partial_frame_bytes_max: int, partial_frame_seconds_max: float) -> None:
    """One maximal frame can always arrive; a frame has some time to."""
    if partial_frame_bytes_max < limits.frame_bytes_max:
        raise BraidError(
            errors.INVALID_SETTING,
            f"--partial-frame-bytes-max must be at least {limits.frame_bytes_max}",
        )
    if not partial_frame_seconds_max > 0:
        raise BraidError(errors.INVALID_SETTING, "--partial-frame-seconds-max must be positive")


def handle(args: argparse.Namespace) -> int:
    """Check every setting, bind the ports, then open the store and serve: a setting that
    is wrong or a port that is taken fails before anything is created."""
    host, port = parse_address(args.listen, allow_any_port=True)
    metrics = parse_address(args.metrics, allow_any_port=True) if args.metrics else None
    check_bounds(args.streams_max, args.node_requests_max)
    check_buffering(args.partial_frame_bytes_max, args.partial_frame_seconds_max)
    if args.wal_segment_bytes < limits.wal_segment_bytes_min:
        raise BraidError(
            errors.INVALID_SETTING,
            f"--wal-segment-bytes must be at least {limits.wal_segment_bytes_min}",
        )
    if args.ready_file is not None and not args.ready_file.parent.is_dir():
        raise BraidError(
            errors.INVALID_SETTING, f"--ready-file {args.ready_file}: no such directory"
        )
    data = Path(args.data)
    refuse_foreign_directory(data)  # as braid.open would, but before the ports are bound
    config = ServerConfig(
        cluster=args.cluster,
        secret=load_secret(args.secret_file),
        name=args.name,
        streams_max=args.streams_max,
        node_requests_max=args.node_requests_max,
        partial_frame_bytes_max=args.partial_frame_bytes_max,
        partial_frame_seconds=args.partial_frame_seconds_max,
        tls=tls_context(args.tls_cert, args.tls_key),
    )
    durable = DurableConfig(segment_bytes=args.wal_segment_bytes)
    listening = listen_socket(host, port)
    try:
        endpoint = MetricsEndpoint(*metrics) if metrics is not None else None
    except BraidError:
        listening.close()
        raise
    configure_logging(args.log_level, args.log_format)
    if endpoint is not None:
        endpoint.start()  # /healthz and /readyz answer while the store recovers
    # The log's writer thread needs the GIL once per batch, after its write returns, while
    # the event loop holds it: with CPython's default 5 ms switch interval the disk then
    # idles for up to 5 ms per batch; much shorter, the two threads spend their time handing
    # the GIL back and forth. A node owns its process, so it picks the interval.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    runner = _run(data, listening, config, durable, args.ready_file, endpoint)
    try:
        import uvloop

        uvloop.run(runner)
    except ImportError:
        asyncio.run(runner)
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time (ISO 8601, UTC), level, logger, message, and the
    traceback as `exception` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level: str, format_name: str) -> None:
    """Log braid's lines (and only those past `level`) to stderr, as text or JSON."""
    handler = logging.StreamHandler(sys.stderr)
    if format_name == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def recovery_summary(data: Path, recovery: Recovery) -> str:
    """The startup summary's line: what opening the store did, and how long it took."""
    took = f"in {recovery.seconds:.3f} s"
    if not recovery.replayed_records and not recovery.repairs:
        return f"opened the store {data} {took}: nothing to recover"
    summary = f"recovered the store {data} {took}: replayed {recovery.replayed_records} log records"
    return summary + (f"; repaired: {recovery.repairs}" if recovery.repairs else "")


async def _run(
    data: Path,
    listening: socket.socket,
    config: ServerConfig,
    durable: DurableConfig,
    ready_file: Path | None,
    metrics: MetricsEndpoint | None,
) -> None:
    began = time.monotonic()
    try:
        store = await braid.open(data, durable)
    except BaseException:
        listening.close()
        if metrics is not None:
            metrics.close()
        raise
    report = store.durable.report
    recovery = Recovery(report.replayed_records, report.detail, time.monotonic() - began)
    log.info("%s", recovery_summary(data, recovery))
    server = NodeServer(store, config, figures=store.durable.figures, recovery=recovery)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.serve_on(listening)
        log.info("serving on %s (store %s)", server.address, data)
        note_serving(data, server.address, tls=config.tls is not None)
        if metrics is not None:
            metrics.attach(server, store)
            log.info("metrics on %s, health on /healthz and /readyz", metrics.url)
        if ready_file is not None:
            try:
                ready_file.write_text(server.address)
            except OSError as error:
                detail = f"cannot write --ready-file {ready_file}: {error.strerror}"
                raise BraidError(errors.INVALID_SETTING, detail) from None
        await stop.wait()
        log.info("shutting down")
        await server.shutdown()
    finally:
        if metrics is not None:
            metrics.close()
        await store.close()
