"""`braid.connect`: the document API over the network, the same methods as `braid.open`.

Every request is routed through a `Locator` (`locate(key)`, the seeds' getDataTarget); the
single-node `StaticLocator` answers "that node", and the cluster will answer per partition.
One multiplexed connection per node, opened on first use and reopened by itself after the
node goes away.

Errors and retries: a failure arrives as `BraidError` with the server's catalogued code.
Retryable codes are retried with jittered exponential backoff, within `retries_max` and the
overall timeout, when doing so cannot apply a write twice: reads always; writes only when
the code guarantees the write did not run (OVERLOADED, UNREACHABLE). A write that failed
with CONNECTION_LOST, TIMEOUT or SHUTTING_DOWN may have been applied, so it is raised (still
marked retryable) for the caller to decide: a retried patch that was applied fails with
HEAD_SEQ_OFF, never twice.

Bad arguments fail here, with the codes an embedded store gives, before anything is sent:
a request whose numbers or text the wire cannot carry, or whose frame would pass the frame
limit, never reaches the connection, whose other streams are never disturbed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
from collections.abc import Awaitable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from braid import errors, limits
from braid.core.document import (
    SEQ_MAX,
    check_compute_arguments,
    check_initialize,
    check_patch_size,
    check_seq_in_range,
    check_snapshot_arguments,
    check_updates,
)
from braid.core.wire import schema
from braid.core.wire.connection import (
    ConnectionFailed,
    GoAwayReceived,
    HandshakeComplete,
    ResponseReceived,
    Role,
    StreamCancelled,
)
from braid.core.wire.frames import FRAME_HEADER_SIZE
from braid.errors import BraidError, ErrorInfo
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.runtime import link
from braid.storage.api import DocumentHistory

T = TypeVar("T")
_SWEEP_SECONDS = limits.client_deadline_sweep_seconds  # how often deadlines are checked
_REQUESTS_PER_WRITE = limits.client_requests_per_write_max  # pipelining: one write for these
_NOT_APPLIED = frozenset({errors.OVERLOADED.code, errors.UNREACHABLE.code})
_READ_ONLY = (
    schema.Get,
    schema.Compute,
    schema.Inventory,
    schema.Locate,
    schema.Status,
    schema.History,
)
_GREETING_BYTES = 16  # of a peer's first bytes, quoted when they are not braid's protocol


@dataclass(frozen=True)
class Target:
    """Where a key lives: its partition, the nodes that hold it, and which one leads."""

    partition: int
    replicas: tuple[str, ...]
    leader: str
    archived: bool = False


class Locator(Protocol):
    async def locate(self, key: Key | None) -> Target: ...

    def cached(self, key: Key | None) -> Target | None:
        """The answer `locate` would give, when it is known without waiting; else None."""
        ...

    def invalidate(self, key: Key | None, hint: str | None = None) -> None: ...


class StaticLocator:
    """A fixed list of nodes, the first leading everything: a single node, for now."""

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise BraidError(errors.INVALID_SETTING, "connect needs at least one address")
        for address in addresses:
            parse_address(address)
        self._target = Target(0, tuple(addresses), addresses[0])

    async def locate(self, key: Key | None) -> Target:
        return self._target

    def cached(self, key: Key | None) -> Target | None:
        return self._target

    def invalidate(self, key: Key | None, hint: str | None = None) -> None:
        """Nothing to forget: the list is static."""


def parse_address(address: str, *, allow_any_port: bool = False) -> tuple[str, int]:
    """HOST:PORT; port 0 ("pick one") only where `allow_any_port` (a listen address)."""
    host, _, port = address.rpartition(":")
    lowest = 0 if allow_any_port else 1
    if not host or not port.isdigit() or not lowest <= int(port) < 65536:
        ports = "0 to 65535, 0 picking a free one" if allow_any_port else "1 to 65535"
        raise BraidError(
            errors.INVALID_SETTING,
            f"address {address!r} is not HOST:PORT (a host, a colon, a port of {ports})",
        )
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ClientConfig:
    secret: bytes
    cluster: str = "braid"
    name: str = "braid-client"
    timeout_seconds: float = limits.client_timeout_seconds  # a whole call, retries included
    connect_timeout_seconds: float = limits.client_connect_timeout_seconds
    retries_max: int = limits.client_retries_max
    backoff_seconds_min: float = limits.client_backoff_seconds_min
    backoff_seconds_max: float = limits.client_backoff_seconds_max
    frame_bytes_max: int = limits.frame_bytes_max
    tls: ssl.SSLContext | None = None


def error_from(code: int, detail: str) -> BraidError:
    info = errors.lookup(code)
    if info is None:  # a newer server's code: keep it, with what we can say about it
        info = ErrorInfo(
            code,
            "UNKNOWN_CODE",
            "An error code this client does not know.",
            retryable=False,
            user_fixable=False,
        )
    return BraidError(info, detail)


class _Channel(asyncio.Protocol):
    """One connection to one node, multiplexing requests."""

    def __init__(self, config: ClientConfig, address: str) -> None:
        self.address = address
        self.connection = link.new_connection(
            Role.CLIENT,
            cluster=config.cluster,
            name=config.name,
            secret=config.secret,
            frame_bytes_max=config.frame_bytes_max,
        )
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.usable = True
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[int, asyncio.Future[schema.Response]] = {}
        self._deadlines: dict[int, float] = {}  # loop time by which each stream must answer
        self._sweeper: asyncio.TimerHandle | None = None
        self._room_waiters: list[asyncio.Future[None]] = []
        self._flush_scheduled = False
        self._unflushed = 0
        self._retiring = False  # usable no more; closed once its last answer arrives
        self._greeting = b""  # the peer's first bytes, kept until a frame arrives

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = link.as_transport(transport)
        self.connection.initiate()
        self._flush()

    def data_received(self, data: bytes) -> None:
        if not self.connection.frames_received and len(self._greeting) < _GREETING_BYTES:
            self._greeting += data[: _GREETING_BYTES - len(self._greeting)]
        for event in self.connection.receive_data(data):
            if isinstance(event, ResponseReceived):
                self._deadlines.pop(event.stream, None)
                future = self._waiting.pop(event.stream, None)
                if future is not None and not future.done():
                    future.set_result(event.message)
                if self._room_waiters:
                    self._wake_room_waiter()
                if self._retiring and not self._waiting:
                    self.close()
            elif isinstance(event, HandshakeComplete):
                if not self.ready.done():
                    self.ready.set_result(None)
            elif isinstance(event, GoAwayReceived):
                self.usable = False  # requests in flight may finish; new ones go elsewhere
            elif isinstance(event, StreamCancelled):
                future = self._waiting.pop(event.stream, None)
                if future is not None and not future.done():
                    detail = f"{self.address} abandoned the request; it may have been applied"
                    future.set_exception(BraidError(errors.CONNECTION_LOST, detail))
            elif isinstance(event, ConnectionFailed):
                self._fail(self._failure(event))
        self._flush()

    def _failure(self, event: ConnectionFailed) -> BraidError:
        """The error a failed connection stands for, said from the client's side: bytes
        that are not frames, before any frame, mean the address is not a braid node; else
        the connection's own message (for a failed proof: the cluster secrets differ)."""
        address = self.address
        garbled = event.code in (errors.FRAME_TOO_LARGE.code, errors.PROTOCOL_ERROR.code)
        if garbled and not self.ready.done() and not self.connection.frames_received:
            detail = (
                f"{address} is not a braid node: it answered braid's handshake with "
                f"{self._greeting!r}, which is not braid's protocol (a node's metrics port "
                "speaks HTTP; clients connect to the node's --listen address)"
            )
            return BraidError(errors.NOT_A_BRAID_NODE, detail)
        return error_from(event.code, f"{address}: {event.message}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost()
        detail = f"connection to {self.address} closed" + (f": {exc}" if exc else "")
        if not self.ready.done():  # nothing was sent but the handshake: unreachable
            detail += (
                " before it answered braid's handshake (is it a braid node's --listen "
                "address? a node serving TLS needs --tls-ca)"
            )
            self._fail(BraidError(errors.UNREACHABLE, detail))
            return
        self._fail(BraidError(errors.CONNECTION_LOST, detail))

    def _fail(self, error: BraidError) -> None:
        self.usable = False
        if not self.ready.done():
            self.ready.set_exception(error)
            self.ready.exception()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._deadlines.clear()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(error)
        for waiter in self._room_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._room_waiters.clear()
        if self.transport is not None:
            # What the connection queued goes out first: a handshake this side refused
            # ends with a Refuse telling the node why (it counts and logs failed auths).
            link.flush(self.connection, self.transport)
            self.transport.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._unflushed = 0
        link.flush(self.connection, self.transport)

    def submit(
        self, message: schema.Request, deadline: float
    ) -> tuple[int, asyncio.Future[schema.Response]]:
        """Send a request; the future gets its response, the connection's failure, or
        TIMEOUT once `deadline` (loop time) has passed.

        The caller must first check `has_room()` (or wait in `wait_for_room()`). Requests
        sent in one loop iteration share one write.
        """
        if not self.usable:
            raise BraidError(errors.CONNECTION_LOST, f"{self.address} is going away")
        try:
            stream = self.connection.send_request(message)
        except Exception as error:
            # The client's checks let through something the codec refuses: a bug. The
            # connection may have counted a stream that was never sent, a slot it would
            # never get back, so it takes no new requests; those in flight still finish.
            self._retire()
            raise BraidError(errors.INTERNAL, f"cannot encode {message!r}: {error!r}") from None
        future: asyncio.Future[schema.Response] = self._loop.create_future()
        self._waiting[stream] = future
        self._deadlines[stream] = deadline
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(_SWEEP_SECONDS, self._sweep)
        self._unflushed += 1
        if self._unflushed >= _REQUESTS_PER_WRITE:
            self._flush()  # the node can start on these while we prepare the rest
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return stream, future

    def _retire(self) -> None:
        self.usable = False
        self._retiring = True
        if not self._waiting:
            self.close()

    def has_room(self) -> bool:
        return self.connection.can_send_request()

    async def wait_for_room(self) -> None:
        """Wait until another request may be sent (the server's streams_max bound)."""
        while self.usable and not self.connection.can_send_request():
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._room_waiters.append(waiter)
            await waiter

    def abandon(self, stream: int) -> None:
        """The caller gave up on a stream (timeout, cancel): tell the server, free the slot."""
        self._deadlines.pop(stream, None)
        if self._waiting.pop(stream, None) is not None:
            self.connection.cancel(stream)
            self._flush()
            self._wake_room_waiter()

    def _sweep(self) -> None:
        """Fail requests past their deadline with TIMEOUT. One periodic sweep per
        connection instead of a timer per request: deadlines are honoured within
        `_SWEEP_SECONDS`, and a request costs no timer."""
        self._sweeper = None
        now = self._loop.time()
        expired = [stream for stream, deadline in self._deadlines.items() if deadline <= now]
        for stream in expired:
            future = self._waiting.get(stream)
            self.abandon(stream)
            if future is not None and not future.done():
                detail = f"no answer from {self.address} in time"
                future.set_exception(BraidError(errors.TIMEOUT, detail))
        if self._deadlines and self.usable:
            self._sweeper = self._loop.call_later(_SWEEP_SECONDS, self._sweep)

    def _wake_room_waiter(self) -> None:
        while self._room_waiters:
            waiter = self._room_waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class Client:
    """The DataService API against braid nodes (see `braid.connect`)."""

    def __init__(
        self, config: ClientConfig, locator: Locator, rng: random.Random | None = None
    ) -> None:
        """`rng` jitters the retry backoff; pass a seeded one for a repeatable run (the
        default is seeded from os.urandom, so clients that fail together spread out)."""
        self.config = config
        self.locator = locator
        self._channels: dict[str, _Channel] = {}
        self._connecting: dict[str, asyncio.Task[_Channel]] = {}
        self._random = rng if rng is not None else random.Random(os.urandom(16))
        self._closed = False
        # With the default frame limit every request that passed the checks fits a frame
        # (limits.py asserts it); only a smaller configured limit needs a look per request.
        self._small_frames = config.frame_bytes_max < limits.frame_bytes_max

    # -- the DataService API -----------------------------------------------------------------

    # Updates are checked here with the engines' own checks before they are sent, so bad
    # input fails with the same code as in an embedded store, without a round trip (and the
    # node checks again: it trusts no client).

    async def initialize(self, key: Key, update: Update) -> None:
        check_initialize(update)
        message = schema.Initialize(key, update)
        self._check_frame(message, _updates_frame_bytes([update], check_patch_size([update])))
        await self._call(key, message)

    def patch(self, key: Key, updates: Sequence[Update]) -> Awaitable[None]:
        # Not a coroutine of its own (as `Store.patch`): bad updates raise at the call, and
        # awaiting the result awaits `_call` directly, one frame less per patch.
        check_updates(updates)
        message = schema.Patch(key, list(updates))
        size = check_patch_size(updates)
        if self._small_frames:
            self._check_frame(message, _updates_frame_bytes(updates, size))
        return cast(Awaitable[None], self._call(key, message))

    async def get(self, key: Key) -> DocumentChange:
        return _change(await self._call(key, schema.Get(key)))

    # DataService's fast forms: a remote answer always needs awaiting (the caller awaits
    # `patch` and `get` instead).

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        return None

    def get_nowait(self, key: Key) -> DocumentChange | None:
        return None

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        check_compute_arguments(method, seq)
        return _change(await self._call(key, schema.Compute(key, method, seq)))

    async def history(self, key: Key) -> DocumentHistory:
        response = await self._call(key, schema.History(key))
        assert isinstance(response, schema.HistoryList)
        return DocumentHistory(
            response.deltas, response.compacted_through, response.compacted_exact
        )

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        check_snapshot_arguments(seq, document, history)
        check_seq_in_range(seq)
        check_encodable(document, "snapshot document")
        # Every history past the number of deltas keeps them all: the same answer, in range.
        message = schema.Snapshot(key, seq, document, min(history, SEQ_MAX))
        utf8_max = limits.utf8_bytes_per_character_max
        self._check_frame(message, len(document) * utf8_max + limits.request_envelope_bytes_max)
        response = await self._call(key, message)
        assert isinstance(response, schema.Count)
        return response.count

    async def delete(self, key: Key) -> None:
        await self._call(key, schema.Delete(key))

    async def inventory(self) -> list[DocumentInfo]:
        response = await self._call(None, schema.Inventory())
        assert isinstance(response, schema.InventoryList)
        return [
            DocumentInfo(item.key, item.seq, item.deltas, item.bytes) for item in response.documents
        ]

    async def locate(self, key: Key) -> Target:
        response = await self._call(key, schema.Locate(key))
        assert isinstance(response, schema.Located)
        return Target(
            response.partition, tuple(response.replicas), response.leader, response.archived
        )

    async def status(self) -> schema.NodeStatus:
        """The node's status (schema.NodeStatus: version, cluster, uptime, documents,
        durable and applied lsn, operations pending, connections, what recovery did)."""
        response = await self._call(None, schema.Status())
        assert isinstance(response, schema.NodeStatus)
        return response

    async def close(self, key: Key | None = None) -> None:
        if key is not None:
            await self._call(key, schema.Release(key))
            return
        self._closed = True
        for task in self._connecting.values():
            task.cancel()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_frame(self, message: schema.Request, bound: int) -> None:
        """Refuse a request whose frame would pass the frame limit, before it is sent.

        `bound` is a cheap upper bound of the frame's size, so only a request near the
        limit is encoded to measure it. With the default limits a request that passed the
        checks always fits (limits.py asserts it); a client configured with a smaller limit
        relies on this.
        """
        limit = self.config.frame_bytes_max
        if bound <= limit:  # (always, with the default limit: limits.py asserts it)
            return
        size = FRAME_HEADER_SIZE + len(schema.encode(message))
        if size > limit:
            raise BraidError(
                errors.RECORD_TOO_LARGE,
                f"the request's frame would be {size} bytes; the frame limit is {limit}",
            )

    # -- routing, retries ------------------------------------------------------------------------

    async def _call(self, key: Key | None, message: schema.Request) -> schema.Response | None:
        """Send `message` to the key's leader, with retries; its response, or None for Done
        (so that a write awaited through this returns None, as the embedded store's)."""
        if self._closed:
            raise BraidError(errors.STORE_CLOSED, "this client is closed")
        if key is not None and not isinstance(key, Key):
            raise BraidError(errors.INVALID_KEY, f"expected braid.Key, got {type(key).__name__}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout_seconds
        attempt = 0
        while True:
            try:
                # One coroutine for the common case (route known, connection up with room):
                # the ordinary path's extra awaits measured ~10% of the client's CPU per call.
                channel = self._ready_channel(key)
                if channel is None:
                    channel = await self._route(key, deadline)
                stream, future = channel.submit(message, deadline)
                try:
                    response = await future
                except BaseException:
                    channel.abandon(stream)  # timed out or cancelled: free the stream
                    raise
                if type(response) is schema.Done:
                    return None
                if isinstance(response, schema.Failure):
                    raise error_from(response.code, response.detail)
                return response
            except BraidError as error:
                retry = error.retryable and (
                    isinstance(message, _READ_ONLY) or error.code in _NOT_APPLIED
                )
                delay = self._backoff(attempt)
                if not retry or attempt >= self.config.retries_max:
                    raise
                if loop.time() + delay >= deadline:
                    raise
                attempt += 1
                self.locator.invalidate(key)
                await asyncio.sleep(delay)

    def _ready_channel(self, key: Key | None) -> _Channel | None:
        """The connection to send on now, if the route is known and it is up with room."""
        target = self.locator.cached(key)
        if target is None:
            return None
        channel = self._channels.get(target.leader)
        if channel is None or not channel.usable or not channel.has_room():
            return None
        return channel

    async def _route(self, key: Key | None, deadline: float) -> _Channel:
        """Locate the key's leader, connect to it if needed, and wait for room there."""
        if deadline <= asyncio.get_running_loop().time():
            raise BraidError(errors.TIMEOUT, f"no answer within {self.config.timeout_seconds} s")
        target = await self.locator.locate(key)
        channel = self._channels.get(target.leader)
        if channel is None or not channel.usable:
            channel = await self._before(self._channel(target.leader), deadline, target.leader)
        if not channel.has_room():
            await self._before(channel.wait_for_room(), deadline, target.leader)
        return channel

    async def _before(self, awaitable: Awaitable[T], deadline: float, address: str) -> T:
        try:
            async with asyncio.timeout_at(deadline):
                return await awaitable
        except TimeoutError:
            raise BraidError(
                errors.TIMEOUT, f"{address}: no connection within {self.config.timeout_seconds} s"
            ) from None

    def _backoff(self, attempt: int) -> float:
        ceiling = min(
            self.config.backoff_seconds_max, self.config.backoff_seconds_min * (2**attempt)
        )
        return self._random.uniform(ceiling / 2, ceiling)  # jitter: spread retrying clients

    async def _channel(self, address: str) -> _Channel:
        channel = self._channels.get(address)
        if channel is not None and channel.usable:
            return channel
        task = self._connecting.get(address)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(address))
            self._connecting[address] = task
            task.add_done_callback(lambda _: self._connecting.pop(address, None))
        return await asyncio.shield(task)

    async def _connect(self, address: str) -> _Channel:
        host, port = parse_address(address)
        loop = asyncio.get_running_loop()
        seconds = self.config.connect_timeout_seconds
        connected: _Channel | None = None
        try:
            async with asyncio.timeout(seconds):
                _, channel = await loop.create_connection(
                    lambda: _Channel(self.config, address), host, port, ssl=self.config.tls
                )
                connected = channel
                await channel.ready
        except (OSError, TimeoutError) as error:
            if connected is None:
                detail = f"{address}: {error or f'no connection within {seconds} s'}"
            else:
                connected.close()
                detail = (
                    f"{address} accepted the connection but did not answer braid's handshake "
                    f"within {seconds} s: it is not a braid node (a node's metrics port, "
                    "another service?) or one that is not responding"
                )
            raise BraidError(errors.UNREACHABLE, detail) from None
        self._channels[address] = channel
        return channel


def _updates_frame_bytes(updates: Sequence[Update], size: int) -> int:
    """An upper bound of a request frame carrying `updates` whose `update_bytes` sum to
    `size` (see the frame assertion in limits.py)."""
    per_character = limits.utf8_bytes_per_character_max
    per_update = limits.kind_bytes_max * per_character + limits.update_envelope_bytes_max
    return size * per_character + len(updates) * per_update + limits.request_envelope_bytes_max


def check_encodable(text: str, what: str) -> None:
    """Refuse text the wire cannot carry as UTF-8 (a lone surrogate), as an engine would."""
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BraidError(
            errors.MALFORMED_JSON,
            f"{what} is not valid Unicode: a lone surrogate at character {error.start}",
        ) from None


def _change(response: schema.Response | None) -> DocumentChange:
    assert isinstance(response, schema.Change), response
    return DocumentChange(response.document, response.seq, response.reads)


def secret_from_environment() -> bytes | None:
    value = os.environ.get("BRAID_SECRET")
    return value.encode() if value else None


def check_secret(secret: bytes, how_to_make: str) -> None:
    """Refuse a cluster secret shorter than `limits.secret_bytes_min` (INVALID_SETTING): a
    guessable secret is an open door, so no command, node or client runs with one."""
    if len(secret) < limits.secret_bytes_min:
        raise BraidError(
            errors.INVALID_SETTING,
            f"the cluster secret is {len(secret)} bytes; it must be at least "
            f"{limits.secret_bytes_min} ({how_to_make})",
        )


class _Connecting:
    """What `braid.connect` returns: await it, or use it with `async with`."""

    def __init__(self, config: ClientConfig, locator: Locator, rng: random.Random | None) -> None:
        self._client = Client(config, locator, rng)

    async def _ready(self) -> Client:
        target = await self._client.locator.locate(None)
        with contextlib.suppress(BraidError):  # unreachable now is fine: retried per call
            await self._client._channel(target.leader)
        return self._client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._ready().__await__()

    async def __aenter__(self) -> Client:
        return await self._ready()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._client.close()


def connect(
    addresses: Sequence[str] | str,
    *,
    secret: bytes | str | None = None,
    cluster: str = "braid",
    timeout: float = limits.client_timeout_seconds,
    locator: Locator | None = None,
    tls: ssl.SSLContext | None = None,
    name: str = "braid-client",
    rng: random.Random | None = None,
) -> _Connecting:
    """Connect to braid nodes. `secret` defaults to the BRAID_SECRET environment variable;
    `rng` jitters retries (see `Client`)."""
    if isinstance(addresses, str):
        addresses = [addresses]
    if isinstance(secret, str):
        secret = secret.encode()
    secret = secret or secret_from_environment()
    if not secret:
        raise BraidError(
            errors.INVALID_SETTING,
            "no cluster secret: pass secret= or set BRAID_SECRET "
            "(`braid secret FILE` writes a strong one)",
        )
    check_secret(secret, "`braid secret FILE` writes a strong one")
    if not timeout > 0:
        raise BraidError(errors.INVALID_SETTING, f"timeout must be > 0, got {timeout!r}")
    config = ClientConfig(
        secret=secret, cluster=cluster, timeout_seconds=timeout, tls=tls, name=name
    )
    return _Connecting(config, locator or StaticLocator(list(addresses)), rng)
