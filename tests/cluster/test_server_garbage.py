"""A real `braid serve` under garbage: any byte string yields messages or a protocol error
that closes only that connection; a wrong secret, cluster id or protocol version is refused
with its code; the node keeps serving its other connections and nothing stored changes.
Randomness is seeded (helpers.SEED); every loop is bounded in count and time."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import pytest

import braid
from braid import errors, limits
from braid.client import Client
from braid.core.wire import schema
from braid.core.wire.frames import FRAME_HEADER, FrameType, encode_frame
from braid.errors import BraidError
from braid.model import DocumentInfo, Key
from tests.cluster.helpers import (
    IDLE_SECONDS,
    PROTOCOL_FAILURE_CODES,
    SECRET,
    SEED,
    RawPeer,
    Received,
    Servers,
    connect,
    update_for,
)
from tests.support.wire import handshake_frame

T = TypeVar("T")

# == 1. garbage ==================================================================================

WRONG_SECRET = "not-the-cluster-secret"  # 16 bytes or more, as every secret must be
GOOD_SPACE = "good-space"
FUZZ_KEY = Key("fuzz-space", "disk_fuzz-target-never-written")
FUZZ_CASES = 1200
FUZZ_CONCURRENCY = 24
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

        assert await refusal(address, secret=WRONG_SECRET) == (errors.AUTH_FAILED.code, True)
        assert await refusal(address, cluster="other") == (errors.CLUSTER_MISMATCH.code, True)
        assert await refusal(address, version=99) == (errors.VERSION_UNSUPPORTED.code, True)
        strangers = ((WRONG_SECRET, "braid", 4005), (SECRET, "other-cluster", 4004))
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
