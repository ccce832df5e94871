"""The node server: the document API over braid's protocol, on asyncio (uvloop when present).

Each TCP connection is an `asyncio.Protocol` driving one sans-I/O `Connection`. Requests go
to the store through `dispatch` (runtime/dispatch.py), the one request path: answered at
once, on a future's completion, or by a task; their answers go back on their stream.
Bounds, none of them a queue: `streams_max` requests in flight per connection (enforced by
the connection itself) and `node_requests_max` over the node; past either, the request is
answered OVERLOADED at once. A connection whose peer does not read its answers is paused
(no more reading) until its send buffer drains, so a slow client cannot make the node
buffer without bound.

Every admitted request ends in exactly one answer with a code, whatever it raises: `_start`
takes its node-wide slot, `_finish` gives it back, `_failure` turns any exception into the
answer (a bug becomes INTERNAL, logged with its traceback and counted). Bytes held for
incomplete frames are bounded over the node (`partial_frame_bytes_max`: past it the
connection holding the most is closed with OVERLOADED) and in time per frame
(`partial_frame_seconds`: FRAME_TIMEOUT); see `NodeServer.hold`.

Shutdown (SIGTERM): stop accepting, send GoAway on every connection (new requests get
SHUTTING_DOWN), let in-flight requests finish for a grace period, fail the rest with
SHUTTING_DOWN, close the connections, then close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import ssl
import time
import types
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from braid import __version__, errors, limits
from braid.core.wire import schema
from braid.core.wire.connection import (
    ConnectionFailed,
    Event,
    HandshakeComplete,
    RequestReceived,
    Role,
    State,
    StreamCancelled,
)
from braid.errors import BraidError
from braid.runtime import link
from braid.runtime.dispatch import dispatch
from braid.runtime.histogram import REQUEST_SECONDS_BOUNDS, Histogram
from braid.storage.api import DataService

log = logging.getLogger("braid.server")
_DETAIL_CHARACTERS_MAX = 300  # of an INTERNAL answer's detail
_SWEEPS_PER_FRAME_BOUND = 4  # checks of partial frames' ages per partial_frame_seconds
_LISTEN_BACKLOG = 100  # connections the kernel queues before accept (asyncio's default)


@dataclass
class ServerConfig:
    cluster: str
    secret: bytes
    name: str = "braid-node"
    streams_max: int = limits.connection_streams_max
    node_requests_max: int = limits.node_requests_max
    frame_bytes_max: int = limits.frame_bytes_max
    handshake_timeout_seconds: float = limits.handshake_timeout_seconds_max
    partial_frame_bytes_max: int = limits.node_partial_frame_bytes_max  # node-wide
    partial_frame_seconds: float = limits.partial_frame_seconds_max  # per frame
    shutdown_grace_seconds: float = limits.shutdown_grace_seconds_max
    tls: ssl.SSLContext | None = None


@dataclass
class ServerStats:
    connections_accepted: int = 0
    connections_open: int = 0
    protocol_failures: int = 0  # connections closed for breaking the protocol
    auth_failures: int = 0  # handshakes failed on the secret (logged; not protocol failures)
    requests: int = 0
    overloaded: int = 0
    in_flight: int = 0
    internal_errors: int = 0  # requests answered INTERNAL: each one a bug, logged
    partial_frame_bytes: int = 0  # held for incomplete frames, over every connection
    buffer_overloads: int = 0  # connections closed past the node's partial-frame bound
    frame_timeouts: int = 0  # connections closed for a frame that took too long
    by_code: dict[int, int] = field(default_factory=dict)
    # Request latency by (request type, failure code; 0 for success): from admission to
    # the answer queued on its connection.
    latency: dict[tuple[type, int], Histogram] = field(default_factory=dict)


@dataclass(frozen=True)
class Recovery:
    """What opening the store did before the node served (its startup summary)."""

    replayed_records: int = 0  # log records past the applied state, replayed into memory
    repairs: str = ""  # what was repaired (a torn tail truncated, ...); empty: nothing
    seconds: float = 0.0


# The store's figures a status reports (DurableEngine.figures() has them all).
StoreFigures = Callable[[], Mapping[str, float]]


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening (port 0 picks one); LISTEN_FAILED
    naming the address and the reason if it cannot be (in use, not this machine's, ...)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family, backlog=_LISTEN_BACKLOG)
    except OSError as error:
        raise BraidError(
            errors.LISTEN_FAILED, f"cannot listen on {host}:{port}: {reason(error)}"
        ) from None


def reason(error: OSError) -> str:
    """An OSError's reason alone (socket.create_server appends the address to it)."""
    if isinstance(error, socket.gaierror) or not error.errno:
        return error.strerror or str(error)  # a name that does not resolve, or no errno
    return os.strerror(error.errno)


def _held_bytes(connection: _ServerProtocol) -> int:
    return connection.held


def _short_detail(error: BaseException) -> str:
    """An INTERNAL answer's detail: the exception's type and message, cut short and made
    encodable (the traceback is in the node's log)."""
    text = f"{type(error).__name__}: {error}"
    if len(text) > _DETAIL_CHARACTERS_MAX:
        text = text[: _DETAIL_CHARACTERS_MAX - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class NodeServer:
    def __init__(
        self,
        service: DataService,
        config: ServerConfig,
        *,
        figures: StoreFigures | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        self.service = service
        self.config = config
        self.stats = ServerStats()
        self.address = ""
        self.figures = figures or dict
        self.recovery = recovery or Recovery()
        self.serving_since: float | None = None  # monotonic time serve_on began serving
        self._connections: set[_ServerProtocol] = set()
        self._server: asyncio.Server | None = None
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._holding: set[_ServerProtocol] = set()  # connections holding a partial frame
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on host:port (port 0 picks one) and serve."""
        await self.serve_on(listen_socket(host, port))

    async def serve_on(self, listening: socket.socket) -> None:
        """Serve on a socket already bound and listening (see `listen_socket`): `braid
        serve` binds its port before it opens the store, so a port in use creates nothing."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _ServerProtocol(self), sock=listening, ssl=self.config.tls
        )
        bound = self._server.sockets[0]
        bound_host, bound_port = bound.getsockname()[:2]
        self.address = f"{bound_host}:{bound_port}"
        self.serving_since = time.monotonic()
        self._sweep()

    @property
    def accepting(self) -> bool:
        return not self._closing

    @property
    def ready(self) -> bool:
        """Serving: the store recovered, the port accepting, not shutting down."""
        return self.serving_since is not None and not self._closing

    async def status(self) -> schema.NodeStatus:
        """Answer a Status request (see schema.NodeStatus). Counting the documents asks the
        store's inventory, as `doc list` does: an operator's request, never a hot one."""
        figures = self.figures()
        stats = self.stats
        uptime = 0.0 if self.serving_since is None else time.monotonic() - self.serving_since
        documents = len(await self.service.inventory())
        recovery = self.recovery
        return schema.NodeStatus(
            version=__version__,
            cluster=self.config.cluster,
            name=self.config.name,
            uptime_seconds=uptime,
            documents=documents,
            durable_lsn=int(figures.get("wal_durable_lsn", 0)),
            applied_lsn=int(figures.get("applied_lsn", 0)),
            pending_operations=int(figures.get("pending_operations", 0)),
            connections=stats.connections_open,
            requests_in_flight=stats.in_flight - 1,  # not counting this one
            replayed_records=recovery.replayed_records,
            recovery_repairs=recovery.repairs,
            recovery_seconds=recovery.seconds,
        )

    def begin(self) -> bool:
        """Admit one request against the node-wide bound."""
        if self.stats.in_flight >= self.config.node_requests_max:
            self.stats.overloaded += 1
            return False
        self.stats.in_flight += 1
        self._idle.clear()
        return True

    def observe(self, operation: type, response: schema.Response, started: float) -> None:
        """Count one answered request's latency under its operation and outcome."""
        code = response.code if type(response) is schema.Failure else 0
        latency = self.stats.latency
        histogram = latency.get((operation, code))
        if histogram is None:
            histogram = latency[operation, code] = Histogram(REQUEST_SECONDS_BOUNDS)
        histogram.observe(time.perf_counter() - started)

    def end(self) -> None:
        self.stats.in_flight -= 1
        if self.stats.in_flight == 0:
            self._idle.set()

    # -- incomplete frames ----------------------------------------------------------------

    def hold(self, connection: _ServerProtocol, before: int) -> None:
        """`connection` now holds `connection.held` bytes of an incomplete frame (it held
        `before`): count them node-wide and, past the node's bound, shed.

        Past the bound the node closes the connection holding the most, with OVERLOADED
        naming the cause, until it is back under the bound. Closing rather than pausing
        (stop reading until there is room): a paused connection keeps what it holds, so
        pausing bounds nothing once many connections each hold one read (up to 256 KiB);
        and when every connection holding a partial frame is paused none can complete,
        a deadlock only the time bound would break, by closing anyway, later. The largest
        holder rather than the newest: a client of small requests (most of them) never
        holds the most while someone hoards a large frame, so hoarding hurts the hoarder.
        """
        stats = self.stats
        stats.partial_frame_bytes += connection.held - before
        if connection.held:
            self._holding.add(connection)
        else:
            self._holding.discard(connection)
        bound = self.config.partial_frame_bytes_max
        while stats.partial_frame_bytes > bound and self._holding:
            largest = max(self._holding, key=_held_bytes)
            stats.buffer_overloads += 1
            largest.abandon(
                errors.OVERLOADED,
                f"the node holds {stats.partial_frame_bytes} bytes of incomplete frames, "
                f"past its bound of {bound}; this connection held the most ({largest.held})",
            )

    def _sweep(self) -> None:
        """Close every connection whose current frame has been arriving for longer than
        `partial_frame_seconds` (FRAME_TIMEOUT); runs a few times per that bound, so a
        frame is closed within 1.25 times it."""
        seconds = self.config.partial_frame_seconds
        loop = asyncio.get_running_loop()
        now = loop.time()
        for connection in [each for each in self._holding if each.frame_age(now) > seconds]:
            stats = self.stats
            stats.frame_timeouts += 1
            pending = connection.connection.pending_frame_bytes()
            connection.abandon(
                errors.FRAME_TIMEOUT,
                f"a frame of {pending} bytes did not arrive within {seconds} s "
                f"({connection.held} bytes received); closing the connection",
            )
        if not self._closing:
            self._sweeper = loop.call_later(seconds / _SWEEPS_PER_FRAME_BOUND, self._sweep)

    def release(self, connection: _ServerProtocol) -> None:
        """The connection holds nothing any more (it closed)."""
        if connection.held:
            self.stats.partial_frame_bytes -= connection.held
            connection.held = 0
        self._holding.discard(connection)

    async def shutdown(self) -> None:
        """Graceful: GoAway, let in-flight requests finish (bounded), then close."""
        if self._closing:
            return
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.go_away()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), self.config.shutdown_grace_seconds)
        for connection in list(self._connections):
            connection.abort_requests()
        await asyncio.sleep(0)
        for connection in list(self._connections):
            connection.close()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("stopped; %d requests served", self.stats.requests)


class _ServerProtocol(asyncio.Protocol):
    def __init__(self, node: NodeServer) -> None:
        self.node = node
        config = node.config
        self.connection = link.new_connection(
            Role.SERVER,
            cluster=config.cluster,
            name=config.name,
            secret=config.secret,
            streams_max=config.streams_max,
            frame_bytes_max=config.frame_bytes_max,
        )
        self.transport: asyncio.Transport | None = None
        self.tasks: dict[int, asyncio.Task[schema.Response]] = {}
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._flush_scheduled = False
        self._backlog: list[Event] = []
        self._backlog_scheduled = False
        self.held = 0  # bytes of an incomplete frame, as counted by the node
        self._frames_seen = 0  # connection.frames_received when the partial frame began
        self._partial_since = 0.0  # loop time the partial frame began (or reading resumed)
        self._paused = False  # reading paused because the peer does not read its answers
        self.abandoned = False

    # -- transport callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = link.as_transport(transport)
        self.node.stats.connections_accepted += 1
        self.node.stats.connections_open += 1
        self.node._connections.add(self)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            self.node.config.handshake_timeout_seconds, self._handshake_expired
        )
        if not self.node.accepting:
            self.close()

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        try:
            events = connection.receive_data(data)
        except Exception as error:  # a bug: the peer's bytes must yield events, never raise
            self.node.stats.internal_errors += 1
            log.error("closing connection: reading its bytes raised %r", error, exc_info=error)
            self.abandon(errors.INTERNAL, _short_detail(error))
            return
        if connection.buffered or self.held:  # a frame is incomplete, or was
            self._hold()
            if self.abandoned:
                return  # closed past the node's buffering bound: start none of its requests
        if self._backlog_scheduled:
            self._backlog.extend(events)  # keep arrival order behind the deferred events
            return
        self._process(events)

    def _process(self, events: list[Event]) -> None:
        """Handle events, yielding to the loop every `node_events_per_turn_max` of them.

        Yielding lets the log start the fsync of the requests handled so far (and their
        answers go out) while the rest are handled, so client, node and disk work at the
        same time instead of in lock-step (measured at 64 in flight: ~15% more patches/s).
        """
        for index, event in enumerate(events):
            if index == limits.node_events_per_turn_max:
                self._backlog = events[index:]
                self._backlog_scheduled = True
                asyncio.get_running_loop().call_soon(self._resume)
                break
            if isinstance(event, RequestReceived):
                self._start(event.stream, event.message, event.payload)
            elif isinstance(event, StreamCancelled):
                task = self.tasks.pop(event.stream, None)
                if task is not None:
                    task.cancel()
            elif isinstance(event, HandshakeComplete):
                self._cancel_handshake_timer()
            elif isinstance(event, ConnectionFailed):
                self._connection_failed(event)
        self.flush()
        if self.connection.state is State.CLOSED and not self._backlog_scheduled:
            self.close()

    def _connection_failed(self, event: ConnectionFailed) -> None:
        """Count and log why the peer's connection failed: a failed handshake on the secret
        is an auth failure (a warning naming the peer: a misconfigured client, or someone
        guessing), anything else a protocol failure."""
        if event.code == errors.AUTH_FAILED.code:
            self.node.stats.auth_failures += 1
            peer = self.transport.get_extra_info("peername") if self.transport else None
            where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "an unknown peer"
            name = self.connection.peer_name or "unnamed"
            log.warning("authentication failed for %s (%s): %s", where, name, event.message)
            return
        self.node.stats.protocol_failures += 1
        log.info("closing connection: %s (%d)", event.message, event.code)

    def _hold(self) -> None:
        """Keep the node's count of this connection's partial frame, and when it began."""
        before = self.held
        self.held = held = self.connection.buffered
        frames = self.connection.frames_received
        if held and (not before or frames != self._frames_seen):
            self._partial_since = asyncio.get_running_loop().time()  # a new frame
            self._frames_seen = frames
        self.node.hold(self, before)

    def frame_age(self, now: float) -> float:
        """Seconds the current partial frame has been arriving (0 while we are not reading:
        the peer does not read our answers, so its frame cannot complete)."""
        return 0.0 if self._paused else now - self._partial_since

    def abandon(self, info: errors.ErrorInfo, message: str) -> None:
        """Close the connection for a bound of the node, telling the peer why."""
        self.abandoned = True
        self.node.release(self)
        if self.connection.abandon(info, message) is not None:
            log.info("closing connection: %s (%d)", message, info.code)
        self.close()

    def _resume(self) -> None:
        self._backlog_scheduled = False
        events, self._backlog = self._backlog, []
        if self.transport is not None and not self.transport.is_closing():
            self._process(events)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost()
        self._cancel_handshake_timer()
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()
        self.node.release(self)
        if self in self.node._connections:
            self.node._connections.discard(self)
            self.node.stats.connections_open -= 1

    def pause_writing(self) -> None:
        # The peer is not reading its answers: stop taking new requests from it.
        self._paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._partial_since = asyncio.get_running_loop().time()  # its frame's clock restarts
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- requests -----------------------------------------------------------------------

    def _start(self, stream: int, request: schema.Request, payload: bytes) -> None:
        """Admit a request and start it through `dispatch`, the one path to the store: the
        one place it takes its node-wide slot (its connection took a stream slot when it
        admitted the request).

        From here every request ends in exactly one `_finish`, whatever it raises: at once
        (answered synchronously, or failed while starting), or from the done callback of
        its future (started at once by the store's fast form: a patch's durability) or of
        its task (an awaited operation). A task and two coroutine frames per request
        measured about a fifth of the node's CPU per patch, hence the future form."""
        node = self.node
        node.stats.requests += 1
        started = time.perf_counter()
        operation = type(request)
        if not node.begin():
            detail = f"node has {node.config.node_requests_max} requests in flight"
            self._answer(stream, schema.Failure(errors.OVERLOADED.code, detail))
            return
        try:
            outcome = dispatch(node.service, request, payload, node.address)
        except Exception as error:  # every failure becomes an answer
            outcome = self._not_dispatched(request, error)
        if isinstance(outcome, asyncio.Future):
            done = functools.partial(self._future_done, stream, operation, started)
            outcome.add_done_callback(done)
        elif isinstance(outcome, types.CoroutineType):
            task = asyncio.get_running_loop().create_task(outcome)
            self.tasks[stream] = task
            # A callback, not a `finally` in the coroutine: a task cancelled before it
            # ever ran (a CANCEL in the same read as its request) runs no `finally`.
            task.add_done_callback(functools.partial(self._task_done, stream, operation, started))
        else:  # an answer (a coroutine's type is the exact one `async def` makes)
            self._finish(stream, cast(schema.Response, outcome), operation, started)

    def _future_done(
        self, stream: int, operation: type, started: float, future: asyncio.Future[None]
    ) -> None:
        # The common case inline (durable, nothing to report): one call less per patch.
        if not future.cancelled() and future.exception() is None:
            self._finish(stream, schema.DONE, operation, started)
        else:
            self._finish(stream, self._outcome(future), operation, started)

    def _task_done(
        self, stream: int, operation: type, started: float, task: asyncio.Task[schema.Response]
    ) -> None:
        if self.tasks.get(stream) is task:
            del self.tasks[stream]
        self._finish(stream, self._outcome(task), operation, started)

    def _outcome(
        self, future: asyncio.Future[schema.Response] | asyncio.Future[None]
    ) -> schema.Response:
        """The answer a finished request's future stands for."""
        if future.cancelled():
            detail = "the request did not finish before the node stopped"
            return schema.Failure(errors.SHUTTING_DOWN.code, detail)
        error = future.exception()
        if error is not None:
            return self._failure(error)
        result = future.result()
        return schema.DONE if result is None else result

    def _not_dispatched(
        self, request: schema.Request, error: Exception
    ) -> schema.Failure | Coroutine[Any, Any, schema.NodeStatus]:
        """A request `dispatch` did not start. A Status is the node's to answer, not the
        store's: dispatch (the store's path) has no handler for it, so it is answered
        here, where it costs the data path nothing. Anything else is the failure."""
        if type(request) is schema.Status:
            return self.node.status()
        return self._failure(error)

    def _failure(self, error: BaseException) -> schema.Failure:
        """The one place an exception from the service becomes an answer: a BraidError its
        code; anything else (a bug) INTERNAL with a short detail, logged with its
        traceback and counted."""
        if isinstance(error, BraidError):
            return schema.Failure(error.code, error.detail)
        self.node.stats.internal_errors += 1
        log.error("request failed: INTERNAL %r", error, exc_info=error)
        return schema.Failure(errors.INTERNAL.code, _short_detail(error))

    def _finish(
        self, stream: int, response: schema.Response, operation: type, started: float
    ) -> None:
        """The one place a request gives its slots back: the node-wide one here, the
        connection's stream slot when the answer is sent (or dropped: cancelled, closed);
        and the one place its latency is counted."""
        try:
            self._answer(stream, response)
        finally:
            self.node.end()
            self.node.observe(operation, response, started)
        self.flush_soon()

    def _answer(self, stream: int, response: schema.Response) -> None:
        try:
            self.connection.send_response(stream, response)
        except Exception as error:  # an answer that does not encode: a bug
            response = self._failure(error)
            self.connection.send_response(stream, response)
        if isinstance(response, schema.Failure):
            by_code = self.node.stats.by_code
            by_code[response.code] = by_code.get(response.code, 0) + 1

    # -- lifecycle ------------------------------------------------------------------------

    def flush_soon(self) -> None:
        """Write at the end of this loop iteration: answers finishing together share one
        write (one system call) instead of one each."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        link.flush(self.connection, self.transport)

    def go_away(self) -> None:
        self.connection.go_away(errors.SHUTTING_DOWN, "the node is shutting down")
        self.flush()

    def abort_requests(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()

    def close(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _handshake_expired(self) -> None:
        if self.connection.state is State.HANDSHAKE:
            log.info("closing connection: no handshake within the timeout")
            self.close()

    def _cancel_handshake_timer(self) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
