"""A real `braid serve` process on 127.0.0.1 under garbage, crashes, overload and SIGTERM.

These make the issue's acceptance points true against real processes (helpers.ServerProcess):

1. Garbage: any byte string yields messages or a protocol error that closes only that
   connection; a wrong secret, cluster id or protocol version is refused with its code; the
   node keeps serving its other connections and nothing stored changes.
2. SIGKILL and restart: a client reconnects by itself; a call in flight at the kill succeeds
   or fails with a retryable code, never hangs past its timeout, never answers wrongly; and
   every acknowledged patch survives.
3. Overload: requests past the per-connection or per-node bound are answered OVERLOADED at
   once, the rest succeed, and the server's memory stays bounded, also against a peer that
   sends but never reads (the server stops reading from it).
4. SIGTERM: requests in flight complete (or fail with SHUTTING_DOWN), new ones are refused,
   the process exits 0 within the grace period, and the store reopens with every
   acknowledged write.

Every loop is bounded in count and in time; every process is killed by the `servers`
fixture's finalizer, whatever the outcome. Randomness is seeded (SEED) and reported.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
from helpers import (
    PROTOCOL_FAILURE_CODES,
    SECRET,
    SEGMENT_BYTES,
    RawPeer,
    Received,
    Servers,
    document_at,
    free_port,
    handshake_frame,
    update_for,
)

import braid
from braid import errors, limits
from braid.client import Client
from braid.core.wire import schema
from braid.core.wire.frames import FRAME_HEADER, FrameType, encode_frame
from braid.errors import BraidError
from braid.model import DocumentInfo, Key, Update

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


# == 1. garbage ==================================================================================

GOOD_SPACE = "good-space"
FUZZ_KEY = Key("fuzz-space", "disk_fuzz-target-never-written")
FUZZ_CASES = 1200
FUZZ_CONCURRENCY = 24
IDLE_SECONDS = 0.25  # a connection the server neither answers nor closes is left after this
CASE_SECONDS_MAX = 3.0  # below the server's 5 s handshake timeout: a close is the server's


@dataclass
class Case:
    """One garbage connection: what it sends, and the code the server must refuse it with
    (None: any outcome that keeps the protocol's promise)."""

    name: str
    chunks: list[bytes]
    handshake: bool = False  # complete a real handshake before sending the chunks
    code: int | None = None


def split(rng: random.Random, data: bytes) -> list[bytes]:
    """Cut data into 1-4 writes at random places: the outcome must not depend on it."""
    cuts = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, 3)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges) if b > a] or [b""]


def random_header(rng: random.Random, payload: bytes) -> bytes:
    """A frame header that is often valid but not always: type, flags, reserved and length
    are each broken now and then."""
    kind = rng.choice([*range(1, 8), 1, 2, 2, 0, 8, 255])
    flags = rng.choice([0, 0, 1, 1, 2, 255])
    reserved = rng.choice([0, 0, 0, 0, 1])
    length = len(payload) if rng.random() < 0.8 else rng.randint(0, 2**32 - 1)
    stream = rng.choice([0, 1, 2, 3, rng.randint(0, 2**32 - 1)])
    return FRAME_HEADER.pack(length, stream, kind, flags, reserved) + payload


def junk(rng: random.Random, depth: int = 0) -> Any:
    """A random msgpack-able value. Strings are drawn from characters no space name may
    hold, so no junk ever makes a valid key (and no write can come of it)."""
    choice = rng.randint(0, 6 if depth < 3 else 4)
    if choice == 0:
        return rng.randint(-(2**63), 2**64 - 1)
    if choice == 1:
        return "".join(rng.choice("XYZ _!") for _ in range(rng.randint(0, 12)))
    if choice == 2:
        return rng.randbytes(rng.randint(0, 40))
    if choice == 3:
        return rng.choice([None, True, False, 0.5, -1])
    if choice == 4:
        return rng.randint(0, 127)
    if choice == 5:
        return [junk(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    return {str(junk(rng, depth + 1)): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Overwrite 1-3 random bytes (the key's space cannot become GOOD_SPACE in 3 bytes)."""
    mutable = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        mutable[rng.randrange(len(mutable))] = rng.randrange(256)
    return bytes(mutable)


def handshaked_garbage(rng: random.Random) -> bytes:
    """1-6 frames after a good handshake: junk requests, mutated reads, stray frames."""
    frames = bytearray()
    stream = 1
    for _ in range(rng.randint(1, 6)):
        get = schema.encode(schema.Get(FUZZ_KEY))
        kind = rng.randint(0, 6)
        if kind == 0:  # a request whose payload is random bytes
            frames += encode_frame(FrameType.REQUEST, stream, rng.randbytes(rng.randint(0, 64)))
        elif kind == 1:  # a request tag (or any small int) followed by junk fields
            tag = rng.choice([20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 60, 1, 100])
            fields = [junk(rng, 1) for _ in range(rng.randint(0, 4))]
            payload = msgspec.msgpack.encode([tag, *fields])
            frames += encode_frame(FrameType.REQUEST, stream, payload)
        elif kind == 2:  # a read request with a few bytes overwritten, header included
            frames += mutate(rng, encode_frame(FrameType.REQUEST, stream, get))
        elif kind == 3:  # a frame header of any sort around a random payload
            frames += random_header(rng, rng.randbytes(rng.randint(0, 32)))
        elif kind == 4:  # a valid read, then a cancel of a random or the same stream
            frames += encode_frame(FrameType.REQUEST, stream, get)
            frames += encode_frame(FrameType.CANCEL, rng.choice([stream, rng.randint(0, 99)]), b"")
        elif kind == 5:  # frames a client never sends, or control junk
            other = rng.choice([FrameType.RESPONSE, FrameType.PUSH, FrameType.WINDOW])
            frames += encode_frame(other, rng.randint(0, 9), rng.randbytes(rng.randint(0, 8)))
        else:
            payload = rng.choice([schema.encode(schema.Ping(rng.randint(0, 99))), b"\x93"])
            frames += encode_frame(FrameType.CONTROL, rng.choice([0, 0, 1]), payload)
        stream = max(1, stream + rng.choice([2, 2, 2, 0, -2]))  # sometimes out of order
    return bytes(frames)


def hello_frame(**fields: Any) -> bytes:
    values: dict[str, Any] = {
        "version_min": schema.PROTOCOL_VERSION,
        "version_max": schema.PROTOCOL_VERSION,
        "cluster": "braid",
        "name": "fuzz",
        "nonce": bytes(16),
    }
    values.update(fields)
    return handshake_frame(schema.Hello(**values))


def fixed_cases() -> list[Case]:
    """Garbage with a known answer: each must be refused with exactly this code."""
    huge = FRAME_HEADER.pack(2**31, 0, FrameType.HANDSHAKE, 0, 0)
    over = FRAME_HEADER.pack(limits.frame_bytes_max + 1, 1, FrameType.REQUEST, 0, 0)
    get = encode_frame(FrameType.REQUEST, 1, schema.encode(schema.Get(FUZZ_KEY)))
    protocol, too_large = errors.PROTOCOL_ERROR.code, errors.FRAME_TOO_LARGE.code
    # [tag 1, 1, 1, cluster: str of bytes FF FE, name "x", nonce: 16 bytes]
    hello_bad = b"\x96\x01\x01\x01\xa2\xff\xfe\xa1x\xc4\x10" + bytes(16)
    key_bad = b"\x92\x16\x92\xa2\xff\xfe\xa1k"  # [22 (Get), [str FF FE, "k"]]
    return [
        Case("2 GB frame before the handshake", [huge], code=too_large),
        Case(
            "2 GB frame header alone, one byte at a time",
            list(map(bytes, zip(huge))),
            code=too_large,
        ),
        Case("2 GB frame after the handshake", [huge], handshake=True, code=too_large),
        Case("a frame one byte over the limit", [over], handshake=True, code=too_large),
        Case("unknown frame type", [FRAME_HEADER.pack(0, 0, 99, 0, 0)], code=protocol),
        Case("reserved bits set", [FRAME_HEADER.pack(0, 0, 1, 0, 7)], code=protocol),
        Case("a request before the handshake", [get], code=protocol),
        Case(
            "a handshake frame that is not msgpack", [handshake_frame_raw(b"\xc1")], code=protocol
        ),
        Case("Auth instead of Hello", [handshake_frame(schema.Auth(bytes(32)))], code=protocol),
        Case("Hello with a short nonce", [hello_frame(nonce=b"1234")], code=protocol),
        Case("Hello then garbage", [hello_frame(), b"\x00" * 40], code=protocol),
        Case("Hello again after Ready", [hello_frame()], handshake=True, code=protocol),
        Case(
            "a response sent by the client",
            [encode_frame(FrameType.RESPONSE, 1, b"\x91\x3c")],
            handshake=True,
            code=protocol,
        ),
        Case("request streams going backwards", [get, get], handshake=True, code=protocol),
        # msgpack's str must be UTF-8; msgspec says so with UnicodeDecodeError.
        Case("Hello whose cluster is not UTF-8", [handshake_frame_raw(hello_bad)], code=protocol),
        Case("a request whose key is not UTF-8", [request_raw(key_bad)], True, protocol),
        # Arrays nested past msgspec's depth limit raise RecursionError.
        Case("a request nested 10,000 deep", [request_raw(b"\x91" * 10_000)], True, protocol),
        Case("a truncated frame, then silence", [FRAME_HEADER.pack(100, 0, 1, 0, 0) + b"x" * 50]),
        Case("nothing at all", [b""]),
    ]


def handshake_frame_raw(payload: bytes) -> bytes:
    return encode_frame(FrameType.HANDSHAKE, 0, payload)


def request_raw(payload: bytes) -> bytes:
    return encode_frame(FrameType.REQUEST, 1, payload)


def random_cases(rng: random.Random, count: int) -> list[Case]:
    cases = []
    for number in range(count):
        shape = number % 4
        if shape == 0:
            data = rng.randbytes(rng.choice([1, 11, 12, 13, 100, rng.randint(0, 4096)]))
            cases.append(Case(f"random bytes #{number}", split(rng, data)))
        elif shape == 1:
            data = random_header(rng, rng.randbytes(rng.randint(0, 64)))
            cases.append(Case(f"random frame #{number}", split(rng, data)))
        elif shape == 2:
            data = hello_frame() + rng.randbytes(rng.randint(1, 512))
            cases.append(Case(f"Hello then random bytes #{number}", split(rng, data)))
        else:
            data = handshaked_garbage(rng)
            cases.append(Case(f"garbage after handshake #{number}", split(rng, data), True))
    return cases


async def run_case(address: str, case: Case) -> str:
    """Send one case on a fresh connection; check what the server did; name the outcome."""
    peer = await RawPeer.open(address)
    try:
        if case.handshake:
            await peer.ready()
        for chunk in case.chunks:
            await peer.send(chunk)
            await asyncio.sleep(0.001)  # separate reads on the server, most of the time
        # A case with a known refusal waits for it, however slow the server is today.
        idle_seconds = IDLE_SECONDS if case.code is None else CASE_SECONDS_MAX
        received = await peer.collect(idle_seconds, CASE_SECONDS_MAX)
    finally:
        await peer.close()
    check_garbage_outcome(case, received)
    if received.closed:
        return "refused and closed"
    return "answered" if received.answers else "silent"


def check_garbage_outcome(case: Case, received: Received) -> None:
    """The promise: messages, or one protocol error that closes the connection."""
    failures = received.failures()
    what = f"{case.name}: {case.chunks!r:.300} -> {received.messages!r:.600}"
    assert all(code in PROTOCOL_FAILURE_CODES for code in failures), what
    assert len(failures) <= 1, what
    if failures:
        kind = type(received.messages[-1][2])
        assert kind in (schema.Refuse, schema.GoAway), "the error is not last: " + what
        assert received.closed, "not closed after the error: " + what
        assert received.leftover == 0, "a frame cut short: " + what
    else:
        assert not received.closed, "closed without saying why: " + what
    for answer in received.answers.values():
        if isinstance(answer, schema.Failure):
            assert errors.lookup(answer.code) is not None, "uncatalogued code: " + what
    if case.code is not None:
        assert failures == [case.code], f"expected {case.code}: " + what


async def refusal(address: str, **how: Any) -> tuple[int, bool]:
    """Handshake wrongly (`secret`, `cluster` or `version`); (the Refuse code, closed?)."""
    peer = await RawPeer.open(address)
    try:
        if "version" in how:
            _, answer = await peer.hello(version_min=how["version"], version_max=how["version"])
        else:
            answer = await peer.handshake(
                secret=how.get("secret", SECRET), cluster=how.get("cluster", "braid")
            )
        assert isinstance(answer, schema.Refuse), answer
        received = await peer.collect(CASE_SECONDS_MAX, CASE_SECONDS_MAX)
        return answer.code, received.closed
    finally:
        await peer.close()


async def write_documents(client: Client, count: int) -> list[Key]:
    keys = [Key(GOOD_SPACE, f"disk_doc-{number}") for number in range(count)]
    for number, key in enumerate(keys):
        await client.initialize(key, update_for(1))
        for seq in range(2, 3 + 2 * number):
            await client.patch(key, [update_for(seq)])
    return keys


async def stored(client: Client, keys: list[Key]) -> tuple[list[DocumentInfo], list[Any]]:
    """Everything a client can see of the store: the inventory and each document's text,
    seq and its whole undo history (compute REWIND to 0 reads every delta)."""
    documents = []
    for key in keys:
        change = await client.get(key)
        rewound = await client.compute(key, braid.REWIND, 0)
        documents.append((key, change.document, change.seq, rewound.document))
    return await client.inventory(), documents


async def keep_reading(client: Client, key: Key, expected: str, stop: asyncio.Event) -> int:
    """The node keeps serving: read one document over and over while the garbage flows."""
    reads = 0
    for _ in range(10_000):
        if stop.is_set():
            break
        change = await client.get(key)
        assert change.document == expected
        reads += 1
        await asyncio.sleep(0.01)
    return reads


@pytest.mark.timeout(90)
async def test_garbage_closes_only_its_connection_and_changes_nothing(servers: Servers) -> None:
    """Acceptance 1. Against a real server holding documents: refusals with their codes for
    a wrong secret (4005), cluster id (4004) and protocol version (4003), also through
    braid.connect; then FUZZ_CASES seeded garbage connections (random bytes, random and
    2 GB frame headers, truncated frames, Hello then garbage, garbage after a good
    handshake) — each yields decodable messages or one protocol error that closes that
    connection. Meanwhile a good client keeps reading on its connection; afterwards it, and
    a new client, see a byte-identical store, and the server process is still alive."""
    server = await servers.start("node")
    address = server.address
    async with await connect(address, timeout=5) as client:
        keys = await write_documents(client, 6)
        before = await stored(client, keys)
        channel = client._channels[address]  # to show that this very connection survives

        assert await refusal(address, secret="not-the-secret") == (errors.AUTH_FAILED.code, True)
        assert await refusal(address, cluster="other") == (errors.CLUSTER_MISMATCH.code, True)
        assert await refusal(address, version=99) == (errors.VERSION_UNSUPPORTED.code, True)
        strangers = (("not-the-secret", "braid", 4005), (SECRET, "other-cluster", 4004))
        for secret, cluster, code in strangers:
            async with braid.connect([address], secret=secret, cluster=cluster) as stranger:
                with pytest.raises(BraidError) as refused:
                    await stranger.get(keys[0])
                assert refused.value.code == code and not refused.value.retryable

        rng = random.Random(SEED)
        cases = fixed_cases() + random_cases(rng, FUZZ_CASES)
        gate = asyncio.Semaphore(FUZZ_CONCURRENCY)

        async def bounded(case: Case) -> str:
            async with gate:
                return await run_case(address, case)

        stop = asyncio.Event()
        reader = asyncio.create_task(keep_reading(client, keys[0], before[1][0][1], stop))
        started = time.monotonic()
        try:
            outcomes = Counter(await asyncio.gather(*(bounded(case) for case in cases)))
        finally:
            stop.set()
        reads = await reader
        print(f"SEED={SEED}: {dict(outcomes)} in {time.monotonic() - started:.1f} s; {reads} reads")
        assert reads > 0
        assert outcomes["refused and closed"] > len(cases) // 4  # the fuzz did reach errors
        assert outcomes["answered"] > 0  # and valid requests among the garbage

        assert server.alive
        assert await stored(client, keys) == before  # on the connection opened before
        assert client._channels[address] is channel and channel.usable
    async with await connect(address, timeout=5) as fresh:
        assert await stored(fresh, keys) == before  # and on a new one
    assert server.alive
    assert "Traceback" not in server.log_text()


# == 2. SIGKILL and restart ======================================================================

KILL_TIMEOUT_SECONDS = 1.0  # the client's timeout per call
KILL_WORKERS = 4


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


async def wait_for_progress(writers: list[Writer], seconds: float) -> None:
    marks = [writer.acked for writer in writers]
    deadline = time.monotonic() + seconds
    while any(w.acked <= mark for w, mark in zip(writers, marks, strict=True)):
        assert time.monotonic() < deadline, "the client did not recover after the restart"
        await asyncio.sleep(0.02)


async def kill_restart_rounds(servers: Servers, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    server = servers.new("node", port=free_port())
    address = await server.start()
    client = await connect(address, timeout=KILL_TIMEOUT_SECONDS)
    writers = [Writer(Key("kill-space", f"disk_doc-{n}")) for n in range(KILL_WORKERS)]
    for writer in writers:
        await client.initialize(writer.key, update_for(1))
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(client, stop, 30.0 + 3 * rounds)) for w in writers]
    try:
        await wait_for_progress(writers, 5.0)
        for _ in range(rounds):
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            server.kill()  # requests are in flight: the writers never pause
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            await server.start()  # same port, same data directory
            assert server.address == address
            await wait_for_progress(writers, 10.0)  # the same client object, reconnected
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    for writer in writers:  # every acknowledged patch is there after the restarts
        writer.head = None
        await writer.read(client)
        assert writer.head is not None and writer.head >= writer.acked
    await client.close()
    server.kill()
    async with braid.open(server.data, braid.DurableConfig(SEGMENT_BYTES)) as store:
        for writer in writers:  # and after a last SIGKILL, in the files themselves
            change = await store.get(writer.key)
            assert writer.acked <= change.seq <= writer.attempted
            assert json.loads(change.document) == document_at(change.seq)

    calls = [call for writer in writers for call in writer.calls]
    slowest = max(call.seconds for call in calls)
    codes = Counter(code_name(call.code) for call in calls if call.code)
    print(
        f"seed {seed}: {len(calls)} calls, {rounds} kills, failures {dict(codes)}, "
        f"slowest {slowest:.2f} s, acked {[w.acked for w in writers]}"
    )
    assert slowest <= KILL_TIMEOUT_SECONDS + SLACK_SECONDS
    assert codes["CONNECTION_LOST"] > 0, "no request was in flight at any kill"


@pytest.mark.timeout(90)
async def test_sigkill_and_restart_client_reconnects_without_wrong_answers(
    servers: Servers,
) -> None:
    """Acceptance 2, four rounds. Writers patch and read through one client (timeout 1 s)
    without pause while the server is SIGKILLed and restarted on the same port and data:
    every call succeeds with exactly the right document or fails retryably within its
    timeout (+ slack); some calls were in flight at a kill (CONNECTION_LOST seen); the same
    client object makes progress after each restart; every acknowledged patch is present,
    through the client and in the files after a final SIGKILL."""
    await kill_restart_rounds(servers, rounds=4, seed=SEED)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_sigkill_and_restart_many_rounds(servers: Servers) -> None:
    """Acceptance 2 at length: thirty kill/restart rounds, other seed."""
    await kill_restart_rounds(servers, rounds=30, seed=SEED + 1)


# == 3. overload ==================================================================================

STREAMS_MAX = 8
NODE_REQUESTS_MAX = 16
BOUNDS = ("--streams-max", str(STREAMS_MAX), "--node-requests-max", str(NODE_REQUESTS_MAX))
OVERLOAD_KEY = Key("load-space", "disk_doc")
# The server answers a get of a cached document synchronously, inside the read that brought
# it (a fast path): it never stays in flight. A compute runs as a task, after the read: it
# stays in flight until the loop's next turn, so computes from many connections read in one
# turn add up against the node-wide bound.
GET = schema.Get(OVERLOAD_KEY)
COMPUTE = schema.Compute(OVERLOAD_KEY, braid.HEAD_PATCH, 0)
BURST_CONNECTIONS = 16
BURST_REQUESTS = 50_000


def overloaded_kind(answer: schema.Response) -> str:
    """'ok', or which bound refused it: 'connection' or 'node'."""
    if isinstance(answer, schema.Change):
        assert answer.seq == 1 and json.loads(answer.document) == document_at(1), answer
        return "ok"
    assert isinstance(answer, schema.Failure), answer
    assert answer.code == errors.OVERLOADED.code, answer
    return "node" if answer.detail.startswith("node has") else "connection"


async def send_batch(
    peer: RawPeer, count: int, seconds: float, read: schema.Request = GET
) -> Counter[str]:
    """Send `count` reads in one write; wait for every answer; count them by kind."""
    streams = []
    data = bytearray()
    for _ in range(count):
        stream, frame = peer.request(read)
        streams.append(stream)
        data += frame
    await peer.send(bytes(data))
    # Refusals are answered at once, admitted requests when they finish: any order.
    answered = await peer.read_until(
        lambda received: all(stream in received.answers for stream in streams), seconds
    )
    assert answered, f"not every request answered within {seconds} s"
    return Counter(overloaded_kind(peer.received.answers.pop(stream)) for stream in streams)


async def overloaded_server(servers: Servers) -> tuple[Any, Client]:
    server = await servers.start("node", *BOUNDS)
    client = await connect(server.address, timeout=5)
    await client.initialize(OVERLOAD_KEY, update_for(1))
    return server, client


@pytest.mark.timeout(60)
async def test_requests_past_the_connection_bound_are_overloaded(servers: Servers) -> None:
    """Acceptance 3, per connection: one write of 8x streams_max reads on a raw connection
    (bypassing the client's own bound) gets streams_max answers and OVERLOADED (4007) for
    each request past the bound, all at once, for reads the server answers at once (get)
    and reads it runs as tasks (compute) alike; the connection stays usable."""
    server, client = await overloaded_server(servers)
    peer = await RawPeer.open(server.address)
    try:
        await peer.ready()
        assert peer.streams_max == STREAMS_MAX
        for read in (GET, COMPUTE):
            counts = await send_batch(peer, 8 * STREAMS_MAX, 10.0, read)
            # The whole write arrives in one read on loopback: the first streams_max
            # requests are admitted before any is answered, every later one is refused.
            assert counts == {"ok": STREAMS_MAX, "connection": 7 * STREAMS_MAX}, (read, counts)
            assert await send_batch(peer, STREAMS_MAX, 10.0, read) == {"ok": STREAMS_MAX}
        assert not peer.received.closed
    finally:
        await peer.close()
        await client.close()


@pytest.mark.timeout(90)
async def test_a_burst_past_the_node_bound_is_overloaded_in_bounded_memory(
    servers: Servers,
) -> None:
    """Acceptance 3, per node: BURST_CONNECTIONS raw connections pipeline BURST_REQUESTS
    computes in all (each write far past both bounds). Every request gets exactly one
    answer, the document or OVERLOADED; both the connection bound and the node bound refuse
    some; a correct client is served right after; the server's RSS grows by less than
    RSS_GROWTH_BYTES_MAX."""
    server, client = await overloaded_server(servers)
    expected = (await client.get(OVERLOAD_KEY)).document
    peers = [await RawPeer.open(server.address) for _ in range(BURST_CONNECTIONS)]
    try:
        for peer in peers:
            await peer.ready()
        await asyncio.gather(*(send_batch(peer, 100, 10.0, COMPUTE) for peer in peers))
        rss_before = server.rss_bytes()
        batch = 250
        batches = BURST_REQUESTS // (batch * BURST_CONNECTIONS)

        async def pipeline(peer: RawPeer) -> Counter[str]:
            counts: Counter[str] = Counter()
            for _ in range(batches):
                counts += await send_batch(peer, batch, 20.0, COMPUTE)
            return counts

        started = time.monotonic()
        totals: Counter[str] = Counter()
        for counts in await asyncio.gather(*(pipeline(peer) for peer in peers)):
            totals += counts
        rss_after = server.rss_bytes()
        print(
            f"burst {dict(totals)} in {time.monotonic() - started:.1f} s; RSS "
            f"{rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
        )
        assert sum(totals.values()) == batches * batch * BURST_CONNECTIONS
        assert totals["ok"] > 0 and totals["connection"] > 0 and totals["node"] > 0
        assert rss_after - rss_before < RSS_GROWTH_BYTES_MAX
        assert (await client.get(OVERLOAD_KEY)).document == expected
    finally:
        for peer in peers:
            await peer.close()
        await client.close()
    assert server.alive


async def push_until_stalled(peer: RawPeer, seconds: float) -> tuple[int, int, bool]:
    """Pipeline reads without reading answers, until our writes stall for a whole second
    (the server no longer reads from us) or `seconds` pass: (requests, bytes, stalled)."""
    # Reads of a long key: fewer requests per byte pushed, each answered NOT_FOUND.
    key = Key("load-space", "disk_" + "k" * 400)
    requests = 0
    pushed_bytes = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and pushed_bytes < 256 * 2**20:
        chunk = b"".join(peer.request(schema.Get(key))[1] for _ in range(200))
        peer.send_nowait(chunk)
        requests += 200
        pushed_bytes += len(chunk)
        if not await peer.drain(1.0):
            assert not peer.write_failed, "the server closed the connection"
            return requests, pushed_bytes, True
    return requests, pushed_bytes, False


@pytest.mark.timeout(60)
async def test_a_peer_that_never_reads_cannot_grow_the_server(servers: Servers) -> None:
    """Acceptance 3, slow reader: a raw connection pushes requests for up to 3 s and never
    reads. The server stops reading from it (our writes stall: the socket buffers are full),
    its RSS stays within RSS_GROWTH_BYTES_MAX, other clients are served meanwhile, and once
    the peer reads again every request it sent is answered and the connection works. Then
    another peer stalls the same way and SIGTERM still stops the node promptly."""
    server, client = await overloaded_server(servers)
    peer = await RawPeer.open(server.address)
    stuck = await RawPeer.open(server.address)
    try:
        await peer.ready()
        await stuck.ready()
        peer.stop_reading()
        rss_before = server.rss_bytes()
        requests, pushed_bytes, stalled = await push_until_stalled(peer, 3.0)
        rss_after = server.rss_bytes()
        change = await client.get(OVERLOAD_KEY)  # the node still serves others
        assert change.seq == 1
        print(
            f"pushed {requests} requests ({pushed_bytes / 2**20:.1f} MiB), stalled={stalled}, "
            f"RSS {rss_before / 2**20:.0f} -> {rss_after / 2**20:.0f} MiB"
        )
        assert stalled, "the server kept reading from a peer that does not read"
        assert rss_after - rss_before < RSS_GROWTH_BYTES_MAX
        assert not peer.received.closed
        peer.resume_reading()
        assert await peer.read_until(lambda received: len(received.answers) >= requests, 30.0)
        assert len(peer.received.answers) == requests
        for answer in peer.received.answers.values():
            assert isinstance(answer, schema.Failure), answer
            assert answer.code in (errors.DOCUMENT_NOT_FOUND.code, errors.OVERLOADED.code)
        assert await send_batch(peer, 1, 5.0) == {"ok": 1}  # reading resumed

        stuck.stop_reading()
        assert (await push_until_stalled(stuck, 3.0))[2]
        started = time.monotonic()
        server.terminate()
        assert await server.wait_exit(GRACE_SECONDS + 5.0) == 0, server.log_text()
        assert time.monotonic() - started < GRACE_SECONDS
    finally:
        await peer.close()
        await stuck.close()
        await client.close()


@pytest.mark.timeout(60)
async def test_cancelled_requests_give_their_node_slot_back(servers: Servers) -> None:
    """A request its client cancels at once (its CANCEL arrives in the same read as the
    REQUEST) gives its node-wide slot back: after node_requests_max such cancels of each
    kind of read, a new request on another connection is still served, and SIGTERM stops
    the node at once (nothing is left in flight)."""
    server, client = await overloaded_server(servers)
    peer = await RawPeer.open(server.address)
    reads: list[schema.Request] = [
        schema.Get(OVERLOAD_KEY),
        schema.Compute(OVERLOAD_KEY, braid.HEAD_PATCH, 0),
        schema.Locate(OVERLOAD_KEY),
        schema.Inventory(),
    ]
    try:
        await peer.ready()
        for read in reads:
            data = bytearray()
            for _ in range(NODE_REQUESTS_MAX):
                stream, frame = peer.request(read)
                data += frame + RawPeer.cancel(stream)
            await peer.send(bytes(data))
            await peer.collect(IDLE_SECONDS, 1.0)
        assert (await client.get(OVERLOAD_KEY)).seq == 1
        started = time.monotonic()
        server.terminate()
        assert await server.wait_exit(GRACE_SECONDS + 5.0) == 0
        assert time.monotonic() - started < 3.0
    finally:
        await peer.close()
        await client.close()


@pytest.mark.timeout(60)
async def test_unauthenticated_peers_cannot_make_the_server_buffer_much(
    servers: Servers,
) -> None:
    """Before the handshake a peer has proven nothing: 8 connections that each announce a
    16 MiB handshake frame and try to send all but its last byte must not grow the server's
    RSS by more than 32 MiB (a handshake message is a few hundred bytes). The server refuses
    such a frame from its header and closes, so the sending may stop early."""
    server = await servers.start("node")
    rss_before = server.rss_bytes()
    frame_bytes = 16 * 2**20
    header = FRAME_HEADER.pack(frame_bytes, 0, FrameType.HANDSHAKE, 0, 0)
    body = bytes(frame_bytes - 1)
    peers = []
    try:
        for _ in range(8):
            peer = await RawPeer.open(server.address)
            peers.append(peer)
            peer.send_nowait(header)
            for offset in range(0, len(body), 1 << 20):
                peer.send_nowait(body[offset : offset + (1 << 20)])
                if not await peer.drain(5.0):
                    break  # the server refused the frame and closed the connection
        await asyncio.sleep(0.3)
        growth = server.rss_bytes() - rss_before
        print(f"RSS grew by {growth / 2**20:.0f} MiB")
        assert growth < 32 * 2**20
    finally:
        for peer in peers:
            await peer.close()


# == 4. SIGTERM ==================================================================================

BLOB = "b" * 100_000  # a redo this large is synced off the loop thread: requests stay in flight


def blob_update(seq: int) -> Update:
    return Update(seq, seq, who="tests", redo=json.dumps({"seq": seq, "blob": BLOB}), undo="{}")


def answered(stream: int) -> Callable[[Received], bool]:
    return lambda received: stream in received.answers


async def initializer(
    peer: RawPeer, keys: dict[int, Key], window: int, stop: asyncio.Event
) -> None:
    """Keep `window` initializes of new documents in flight on a raw connection until the
    server closes it (or `stop`); keys[stream] records which document each stream made."""
    for number in range(100_000):
        if stop.is_set() or peer.received.closed:
            return
        open_streams = [s for s in keys if s not in peer.received.answers]
        if len(open_streams) >= window or peer.received.failures():
            await peer.read_until(answered(open_streams[0] if open_streams else 0), 0.5)
            continue
        key = Key("term-space", f"disk_raw-{number}")
        stream, frame = peer.request(schema.Initialize(key, blob_update(1)))
        keys[stream] = key
        if not await peer.send(frame):
            return


@pytest.mark.timeout(90)
async def test_sigterm_finishes_in_flight_requests_and_exits_cleanly(servers: Servers) -> None:
    """Acceptance 4. With writes in flight (a raw connection keeping 16 large initializes
    outstanding, and clients patching), SIGTERM: every connection gets GoAway
    (SHUTTING_DOWN); each request the server had received (stream <= GoAway.last_stream)
    is answered Done or SHUTTING_DOWN before the close; a request sent after the GoAway gets
    SHUTTING_DOWN or the connection closes; client calls succeed or fail retryably; the
    process exits 0 well within the grace period; and the reopened store holds every
    acknowledged write, exactly."""
    server = await servers.start("node")
    client = await connect(server.address, timeout=5)
    writers = [Writer(Key("term-space", f"disk_doc-{n}")) for n in range(3)]
    for writer in writers:
        await client.initialize(writer.key, update_for(1))
    loaded = await RawPeer.open(server.address)
    idle = await RawPeer.open(server.address)
    await loaded.ready()
    await idle.ready()
    keys: dict[int, Key] = {}
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(client, stop, 20.0)) for w in writers]
    pusher = asyncio.create_task(initializer(loaded, keys, 16, stop))
    try:
        await asyncio.sleep(0.5)
        assert len(loaded.received.answers) > 0
        started = time.monotonic()
        server.terminate()
        goaway = await idle.next_message(5.0)
        assert goaway is not None and isinstance(goaway[2], schema.GoAway), goaway
        assert goaway[2].code == errors.SHUTTING_DOWN.code
        stream, frame = idle.request(schema.Get(writers[0].key))
        await idle.send(frame)
        await idle.collect(1.0, 5.0)
        late = idle.received.answers.get(stream)
        assert late is None or (
            isinstance(late, schema.Failure) and late.code == errors.SHUTTING_DOWN.code
        ), late
        status = await server.wait_exit(GRACE_SECONDS + 5.0)
        elapsed = time.monotonic() - started
        await pusher
        await loaded.collect(0.5, 5.0)  # to the end of what the server sent
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        pusher.cancel()
        await client.close()
        await loaded.close()
        await idle.close()
    assert status == 0, server.log_text()
    assert elapsed < GRACE_SECONDS, elapsed
    assert loaded.received.closed

    goaways = [m for _, _, m in loaded.received.messages if isinstance(m, schema.GoAway)]
    expect(
        len(goaways) == 1 and goaways[0].code == errors.SHUTTING_DOWN.code,
        lambda: (
            f"GoAway {goaways}; last messages {loaded.received.messages[-4:]}, closed "
            f"{loaded.received.closed}, {len(keys)} sent, write failed {loaded.write_failed}; "
            f"server log:\n{server.log_text()}"
        ),
    )
    last_stream = goaways[0].last_stream
    answers = loaded.received.answers
    acknowledged = []
    for stream, key in keys.items():
        answer = answers.get(stream)
        if stream <= last_stream:
            assert answer is not None, f"request {stream} was received but never answered"
        if answer is not None and not isinstance(answer, schema.Done):
            assert isinstance(answer, schema.Failure), answer
            assert answer.code == errors.SHUTTING_DOWN.code, answer
        if isinstance(answer, schema.Done):
            acknowledged.append(key)
    calls = [call for writer in writers for call in writer.calls]
    print(
        f"SIGTERM -> exit {status} in {elapsed:.2f} s; raw: {len(acknowledged)} acked of "
        f"{len(keys)}, GoAway.last_stream={last_stream}; client calls "
        f"{Counter(code_name(call.code) if call.code else 'ok' for call in calls)}"
    )
    assert acknowledged
    assert max(call.seconds for call in calls) <= 5 + SLACK_SECONDS

    async with braid.open(server.data, braid.DurableConfig(SEGMENT_BYTES)) as store:
        for key in acknowledged:
            change = await store.get(key)
            assert change.seq == 1 and json.loads(change.document)["blob"] == BLOB
        for writer in writers:
            change = await store.get(writer.key)
            assert writer.acked <= change.seq <= writer.attempted
            assert json.loads(change.document) == document_at(change.seq)
    assert "Traceback" not in server.log_text()
