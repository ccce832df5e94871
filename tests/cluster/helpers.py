"""Helpers for the real-process tests: `braid serve` processes and a raw protocol peer.

`ServerProcess` runs `python -m braid.cli.main serve` on 127.0.0.1 (never another address)
and knows how to wait for its ready file, kill it, stop it and read its memory use.
`Servers` starts them and, in its `stop_all` (the `servers` fixture's finalizer), kills every
process still running, whether the test passed or not.

`RawPeer` speaks the wire protocol byte by byte, without `braid.connect`'s guard rails: it
can send any bytes, break the handshake on purpose (wrong secret, cluster or version),
exceed the server's stream bound, or never read. `collect` reads what the server answers
and checks that it is made of whole, decodable frames.

Every wait here is bounded in time; nothing waits on the server without a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import braid
from braid import errors, limits
from braid.client import Client
from braid.core.wire import schema
from braid.core.wire.connection import NONCE_BYTES
from braid.core.wire.frames import Frame, FrameDecoder, FrameType, encode_frame
from braid.errors import BraidError
from braid.model import Key, Update
from tests.support.wire import handshake_frame, handshake_proof, request_frame

HOST = "127.0.0.1"  # the only address these tests ever use
SECRET = "cluster-test-secret"
CLUSTER = "braid"
SEGMENT_BYTES = 1 << 20  # small WAL segments: the default preallocates 32 MiB each
START_SECONDS_MAX = 20.0
READ_BYTES_MAX = 64 * 1024 * 1024  # what `collect` accepts from the server, at most
PORT_TRIES_MAX = 50

# Codes that mean "the peer broke the protocol or failed the handshake": each closes the
# connection that caused it, and only that one.
PROTOCOL_FAILURE_CODES = frozenset(
    info.code
    for info in (
        errors.PROTOCOL_ERROR,
        errors.FRAME_TOO_LARGE,
        errors.VERSION_UNSUPPORTED,
        errors.CLUSTER_MISMATCH,
        errors.AUTH_FAILED,
        errors.FLOW_CONTROL_ERROR,
    )
)


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago, for a server restarted on it.

    Picked below Linux's ephemeral range (32768 and up by default) when one is free there:
    while the server is down, a client's own reconnect attempts draw source ports from
    that range and could take (or, connecting to itself, occupy) a port chosen by binding
    port 0. Falls back to port 0's choice after PORT_TRIES_MAX busy candidates.
    """
    rng = random.Random()
    for _ in range(PORT_TRIES_MAX):
        port = rng.randint(20_000, 32_000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        chosen: int = probe.getsockname()[1]
        return chosen


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc/PID/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


# -- server processes ---------------------------------------------------------------------------


@dataclass
class ServerProcess:
    """One `braid serve` process over a data directory; restartable on the same port."""

    data: Path
    port: int = 0
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    address: str = ""
    starts: int = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data.with_name(self.data.name + ".log")

    async def start(self) -> str:
        """Start the process and wait (bounded) until it serves; returns HOST:PORT."""
        assert not self.alive, "already running"
        ready = self.data.with_name(self.data.name + ".ready")
        ready.unlink(missing_ok=True)
        self.starts += 1
        command = [
            sys.executable,
            "-m",
            "braid.cli.main",
            "serve",
            "--data",
            str(self.data),
            "--listen",
            f"{HOST}:{self.port}",
            "--ready-file",
            str(ready),
            "--wal-segment-bytes",
            str(SEGMENT_BYTES),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                env=dict(os.environ, BRAID_SECRET=SECRET),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_SECONDS_MAX
        while not (ready.exists() and ready.read_text()):
            if not self.alive:
                raise AssertionError(f"braid serve exited during start-up:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"braid serve not ready in {START_SECONDS_MAX} s")
            await asyncio.sleep(0.02)
        self.address = ready.read_text()
        self.port = int(self.address.rpartition(":")[2])
        return self.address

    def kill(self) -> None:
        """SIGKILL, then reap the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self) -> None:
        """SIGTERM: the graceful shutdown. Does not wait."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    async def wait_exit(self, seconds: float) -> int | None:
        """The exit status, or None if still running after `seconds`."""
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while self.process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.process.poll()

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@dataclass
class Servers:
    """Starts `braid serve` processes under one directory and kills them all at the end."""

    directory: Path
    started: list[ServerProcess] = field(default_factory=list)

    def new(self, name: str, *extra_args: str, port: int = 0) -> ServerProcess:
        server = ServerProcess(self.directory / name, port, tuple(extra_args))
        self.started.append(server)
        return server

    async def start(self, name: str, *extra_args: str, port: int = 0) -> ServerProcess:
        server = self.new(name, *extra_args, port=port)
        await server.start()
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.kill()


# -- documents ----------------------------------------------------------------------------------


def redo_for(seq: int) -> str:
    """The redo of delta `seq` of every test document: deterministic, so any seq's whole
    document can be computed (`document_at`) and a wrong answer noticed."""
    return json.dumps({"seq": seq, f"slot{seq % 5}": seq, "pad": "x" * (seq % 7)})


def document_at(seq: int) -> dict[str, object]:
    """The merge of redo_for(1..seq)."""
    document: dict[str, object] = {}
    for each in range(1, seq + 1):
        document.update(json.loads(redo_for(each)))
    return document


def update_for(seq: int) -> Update:
    return Update(seq, seq, who="tests", redo=redo_for(seq), undo="{}")


# -- the raw peer ---------------------------------------------------------------------------


@dataclass
class Received:
    """What the server sent on one connection, decoded, and whether it closed it."""

    messages: list[tuple[FrameType, int, object]] = field(default_factory=list)
    answers: dict[int, schema.Response] = field(default_factory=dict)  # by stream
    closed: bool = False  # the server closed the connection (EOF or reset)
    leftover: int = 0  # bytes of an incomplete frame at the end

    def take(self, frame: Frame) -> None:
        message = decode_message(frame)
        if frame.type is FrameType.RESPONSE:
            assert isinstance(message, schema.RESPONSE_TYPES)
            assert frame.end, "a response ends its stream"
            assert frame.stream not in self.answers, f"two answers on stream {frame.stream}"
            self.answers[frame.stream] = message
        self.messages.append((frame.type, frame.stream, message))

    def failures(self) -> list[int]:
        """Codes of every Refuse and GoAway received."""
        return [
            message.code
            for _, _, message in self.messages
            if isinstance(message, schema.Refuse | schema.GoAway)
        ]


def decode_message(frame: Frame) -> object:
    """A frame the server sent, decoded by its type; raises if it does not decode."""
    if frame.type is FrameType.HANDSHAKE:
        return schema.handshake_decoder.decode(frame.payload)
    if frame.type is FrameType.RESPONSE:
        return schema.response_decoder.decode(frame.payload)
    if frame.type is FrameType.CONTROL:
        return schema.control_decoder.decode(frame.payload)
    raise AssertionError(f"the server sent a {frame.type.name} frame")


class RawPeer:
    """One TCP connection to a server, driven byte by byte.

    Plain socket operations, not a transport: when the server closes (or resets) the
    connection while we are still writing, a transport would drop what the server sent
    last (its GoAway, say) along with the connection; here the failed write is noted and
    reading goes on to the end of what the server sent.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.decoder = FrameDecoder(READ_BYTES_MAX)
        self.received = Received()
        self.changed = asyncio.Event()  # set whenever something arrives or the server closes
        self.reading = asyncio.Event()  # clear: we read nothing (the server's answers pile up)
        self.reading.set()
        self.bad_frame: str | None = None
        self.write_failed = False
        self.next_stream = 1
        self.streams_max = 0
        self._sending: asyncio.Future[None] | None = None
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())

    @classmethod
    async def open(cls, address: str, seconds: float = 5.0) -> RawPeer:
        host, _, port = address.rpartition(":")
        assert host == HOST, f"tests use {HOST} only, not {host}"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(seconds):
                await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def send_nowait(self, data: bytes) -> None:
        """Queue data behind what is being sent; it goes out in order."""
        previous = self._sending
        self._sending = asyncio.ensure_future(self._send_after(previous, data))

    async def send(self, data: bytes, seconds: float = 5.0) -> bool:
        """Send and wait until the bytes are in the kernel; False once a write failed (the
        server closed) or if they are not taken within `seconds`."""
        self.send_nowait(data)
        return await self.drain(seconds)

    async def drain(self, seconds: float) -> bool:
        """Wait (at most `seconds`) for everything queued to be sent; True if it was."""
        sending = self._sending
        if sending is not None:
            try:
                async with asyncio.timeout(seconds):
                    await asyncio.shield(sending)
            except TimeoutError:
                return False
        return not self.write_failed

    async def _send_after(self, previous: asyncio.Future[None] | None, data: bytes) -> None:
        if previous is not None:
            await previous
        if self.write_failed or self.sock.fileno() < 0:
            return
        try:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        except OSError:
            self.write_failed = True  # the server closed; keep reading what it sent

    def stop_reading(self) -> None:
        """Read nothing more: the server's answers pile up in the socket buffers."""
        self.reading.clear()

    def resume_reading(self) -> None:
        self.reading.set()

    async def close(self) -> None:
        """Stop reading and sending, then close the socket (in that order: the event loop
        must forget the descriptor before it can be reused)."""
        tasks = [self._reader, *([self._sending] if self._sending is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.sock.close()

    async def _read_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(10_000_000):  # bounded: far more reads than any test makes
            await self.reading.wait()
            try:
                data = await loop.sock_recv(self.sock, 1 << 16)
            except OSError:
                data = b""
            if not data:
                self.received.closed = True
                self.changed.set()
                return
            self._take(data)

    async def collect(self, idle_seconds: float, total_seconds: float) -> Received:
        """Read until the server closes, or sends nothing for `idle_seconds`, or
        `total_seconds` pass. Every byte must belong to a whole frame that decodes."""
        deadline = time.monotonic() + total_seconds
        while not self.received.closed and time.monotonic() < deadline:
            if not await self._wait(min(idle_seconds, deadline - time.monotonic())):
                break
        self._check()
        self.received.leftover = self.decoder.buffered
        return self.received

    async def read_until(self, done: Callable[[Received], bool], seconds: float) -> bool:
        """Read until done(received) holds (True), or the server closes or `seconds` pass
        (False)."""
        deadline = time.monotonic() + seconds
        while not done(self.received):
            self._check()
            if self.received.closed or time.monotonic() >= deadline:
                return False
            await self._wait(deadline - time.monotonic())
        self._check()
        return True

    async def next_message(self, seconds: float) -> tuple[FrameType, int, object] | None:
        """The next message the server sends (None if it closed or stayed silent)."""
        seen = len(self.received.messages)
        if await self.read_until(lambda received: len(received.messages) > seen, seconds):
            return self.received.messages[seen]
        return None

    async def _wait(self, seconds: float) -> bool:
        """Wait at most `seconds` for news; False when none came."""
        self.changed.clear()
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await self.changed.wait()
        except TimeoutError:
            return False
        return True

    def _check(self) -> None:
        assert self.bad_frame is None, self.bad_frame

    def _take(self, data: bytes) -> None:
        self.changed.set()
        if self.bad_frame is not None:
            return
        try:
            for frame in self.decoder.feed(data):
                self.received.take(frame)
        except Exception as error:  # raised in a task nobody awaits: the next read raises it
            self.bad_frame = f"the server sent a bad frame: {error!r}"

    # -- the handshake --------------------------------------------------------------------

    async def hello(
        self,
        *,
        cluster: str = CLUSTER,
        version_min: int = schema.PROTOCOL_VERSION,
        version_max: int = schema.PROTOCOL_VERSION,
    ) -> tuple[bytes, object]:
        """Send Hello; returns our nonce and the server's answer (Welcome or Refuse)."""
        nonce = os.urandom(NONCE_BYTES)
        hello = schema.Hello(version_min, version_max, cluster, "raw-peer", nonce)
        await self.send(handshake_frame(hello))
        answer = await self.next_message(5.0)
        assert answer is not None, "no answer to Hello"
        return nonce, answer[2]

    async def handshake(self, secret: str = SECRET, cluster: str = CLUSTER) -> object:
        """The whole client handshake; returns the server's last answer (Ready or Refuse)."""
        nonce, welcome = await self.hello(cluster=cluster)
        if not isinstance(welcome, schema.Welcome):
            return welcome
        expected = handshake_proof(SECRET.encode(), b"braid-server", nonce, welcome.nonce, CLUSTER)
        assert welcome.proof == expected, "the server does not prove the secret"
        client_proof = handshake_proof(
            secret.encode(), b"braid-client", welcome.nonce, nonce, cluster
        )
        await self.send(handshake_frame(schema.Auth(client_proof)))
        answer = await self.next_message(5.0)
        assert answer is not None, "no answer to Auth"
        if isinstance(answer[2], schema.Ready):
            self.streams_max = answer[2].streams_max
        return answer[2]

    async def ready(self) -> None:
        answer = await self.handshake()
        assert isinstance(answer, schema.Ready), answer

    def request(self, message: schema.Request) -> tuple[int, bytes]:
        """A request frame on the next stream (not sent): (stream id, bytes)."""
        stream = self.next_stream
        self.next_stream += 2
        return stream, request_frame(stream, message)

    @staticmethod
    def cancel(stream: int) -> bytes:
        return encode_frame(FrameType.CANCEL, stream, b"")


# -- shared by the test_server_* files ------------------------------------------------

T = TypeVar("T")

SEED = 20_251_121
SLACK_SECONDS = 0.75  # how far past its timeout a failing call may return
RSS_GROWTH_BYTES_MAX = 100 * 1024 * 1024
GRACE_SECONDS = limits.shutdown_grace_seconds_max  # the server's default grace period
RETRYABLE_NETWORK_CODES = frozenset(
    info.code
    for info in (
        errors.CONNECTION_LOST,
        errors.TIMEOUT,
        errors.UNREACHABLE,
        errors.SHUTTING_DOWN,
        errors.OVERLOADED,
    )
)


async def connect(address: str, timeout: float) -> Client:
    return await braid.connect([address], secret=SECRET, timeout=timeout)


def code_name(code: int) -> str:
    info = errors.lookup(code)
    return info.name if info is not None else str(code)


def expect(condition: bool, message: Callable[[], str]) -> None:
    """assert, with a message built only on failure."""
    if not condition:
        raise AssertionError(message())


IDLE_SECONDS = 0.25  # a connection the server neither answers nor closes is left after this


@dataclass
class Call:
    operation: str
    seconds: float
    code: int  # 0: success


@dataclass
class Writer:
    """Patches and reads one document through the shared client, checking every answer.

    `acked` is the last acknowledged seq: it must never be lost. `attempted` is the
    highest seq ever sent: nothing above it may appear. A patch that failed retryably may
    or may not have been applied, so the next read resynchronises; every document read
    must be exactly the merge of redos 1..seq (`document_at`).
    """

    key: Key
    acked: int = 1
    attempted: int = 1
    head: int | None = 1  # known head seq; None after an ambiguous failure
    head_unacknowledged: bool = False  # head came from a read of an unacknowledged patch
    calls: list[Call] = field(default_factory=list)

    async def timed(self, operation: str, call: Awaitable[T]) -> T:
        """Await a client call, recording how long it took and how it ended."""
        started = time.monotonic()
        try:
            result = await call
        except BraidError as error:
            self.calls.append(Call(operation, time.monotonic() - started, error.code))
            raise
        self.calls.append(Call(operation, time.monotonic() - started, 0))
        return result

    async def read(self, client: Client) -> None:
        try:
            change = await self.timed("get", client.get(self.key))
        except BraidError as error:
            assert error.retryable and error.code in RETRYABLE_NETWORK_CODES, error
            return
        assert self.acked <= change.seq <= self.attempted, (self.key, change.seq, self)
        assert json.loads(change.document) == document_at(change.seq), (self.key, change)
        self.head = change.seq
        self.head_unacknowledged = change.seq > self.acked

    async def write(self, client: Client) -> None:
        assert self.head is not None
        seq = self.head + 1
        self.attempted = max(self.attempted, seq)
        try:
            await self.timed("patch", client.patch(self.key, [update_for(seq)]))
        except BraidError as error:
            self.head = None
            if error.code == errors.HEAD_SEQ_OFF.code:
                # Only when the head we built on was read but never acknowledged (and then
                # lost with the process): not a wrong answer, a resync.
                assert self.head_unacknowledged, error
                return
            assert error.retryable and error.code in RETRYABLE_NETWORK_CODES, error
            return
        self.acked = self.head = seq

    async def run(self, client: Client, stop: asyncio.Event, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for _ in range(1_000_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            if self.head is not None:
                await self.write(client)
            await self.read(client)
            if self.calls[-1].code:
                await asyncio.sleep(0.01)  # the server is down: do not spin
