"""A real `braid serve` flooded with requests whose handling raises (issue 7, row 11).

Each kind of failing request, sent as raw frames past the client's own checks, more times
than the node's in-flight bound (`limits.node_requests_max`), must get an answer with a
catalogued code whose detail names the cause, on a connection that stays open, and must give
its request slot back: afterwards the node has nothing in flight, a good client is served
normally (never OVERLOADED), every acknowledged write reads back exactly, and nothing that
was refused changed anything. The failures come from two sources: JSON nested far deeper
than any bound (a client would refuse to send it) and an applied state with a damaged page,
which makes every read or write of one document raise inside the store, on the fast path
(get, patch) and on the task path (compute, snapshot) alike.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from pathlib import Path

import pytest

import braid
from braid import errors, limits
from braid.core.wire import schema
from braid.model import Key, Update
from tests.cluster.helpers import (
    SEED,
    RawPeer,
    Received,
    ServerProcess,
    Servers,
    connect,
    document_at,
    free_port,
    update_for,
)
from tests.cluster.test_metrics import scrape

SPACE = "failing-space"
# Written before the damage: each reads back exactly, or its read fails with a code naming
# the damage (a damaged page of SQLite's b-tree can make neighbouring rows unreadable too).
EARLY_KEYS = [Key(SPACE, f"disk_early-{index}") for index in range(4)]
# Written after the restart, so served from the node's cache: must read back exactly.
GOOD_KEYS = [Key(SPACE, f"disk_good-{index}") for index in range(4)]
GOOD_SEQ = 5  # each early and good document holds deltas 1..GOOD_SEQ, all acknowledged
DAMAGED = Key(SPACE, "disk_damaged")
NEVER = Key(SPACE, "mem_never")  # initialized only by refused requests
BLOB_CHARACTERS = 60_000  # the damaged document's value: spans many overflow pages
DEPTH = 5_000  # far past any bound, and past Python's recursion limit
FLOOD_PER_KIND = limits.node_requests_max + 52  # each kind alone exceeds the node's bound
CONNECTIONS = 4
BATCH = 100  # requests per write, under the default streams_max (128): none is OVERLOADED
BATCH_SECONDS = 30.0
DEEP_CAUSE = re.compile(r"deep|depth|nest|recurs", re.IGNORECASE)
DAMAGE_CAUSE = re.compile(r"malformed|corrupt|damage|checksum|applied", re.IGNORECASE)
TRANSPORT_TRACEBACKS = ("data_received() call failed", "Exception in callback", "Fatal error")


def deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def blob(seed: int) -> str:
    """Incompressible text, so that its bytes appear as they are in applied.sqlite3."""
    return random.Random(seed).randbytes(BLOB_CHARACTERS // 2).hex()


def damage_page_inside(path: Path, text: str) -> int:
    """Overwrite, with 0xFF bytes, one SQLite page that holds only part of `text` (an
    overflow page in the middle of its chain); returns the page's offset."""
    data = path.read_bytes()
    page_bytes = int.from_bytes(data[16:18], "big")
    page_bytes = 65_536 if page_bytes == 1 else page_bytes
    start = data.find(text[:64].encode())
    assert start >= 0, f"the damaged document's value is not stored as is in {path}"
    offset = (start // page_bytes + 2) * page_bytes  # two pages on: well inside the value
    page = data[offset : offset + page_bytes]
    assert page[4:] in text.encode(), "that page does not hold only the document's value"
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(b"\xff" * page_bytes)
    return offset


async def write_documents(address: str, keys: list[Key]) -> None:
    client = await connect(address, timeout=10)
    try:
        for key in keys:
            await client.initialize(key, update_for(1))
            for seq in range(2, GOOD_SEQ + 1):
                await client.patch(key, [update_for(seq)])
    finally:
        await client.close()


async def prepare(servers: Servers, metrics_port: int) -> ServerProcess:
    """A node with one document whose applied-state page is damaged (between a graceful
    stop, which checkpoints, and a restart), the early documents written before and the
    good ones after."""
    server = await servers.start("node", "--metrics", f"127.0.0.1:{metrics_port}")
    await write_documents(server.address, EARLY_KEYS)
    value = blob(SEED)
    client = await connect(server.address, timeout=10)
    try:
        await client.initialize(DAMAGED, Update(1, 1, redo=json.dumps({"blob": value})))
    finally:
        await client.close()
    server.terminate()
    assert await server.wait_exit(20.0) == 0, server.log_text()
    damage_page_inside(server.data / "applied.sqlite3", value)
    await server.start()
    await write_documents(server.address, GOOD_KEYS)
    return server


def failing_requests() -> dict[str, schema.Request]:
    """One request of each kind that raises inside the node (or, once bounds and checksums
    catch them, fails with their code)."""
    deep = deep_json(DEPTH)
    return {
        "deep patch": schema.Patch(GOOD_KEYS[0], [Update(GOOD_SEQ + 1, GOOD_SEQ + 1, redo=deep)]),
        "deep initialize": schema.Initialize(NEVER, Update(1, 1, redo=deep)),
        "get damaged": schema.Get(DAMAGED),
        "patch damaged": schema.Patch(DAMAGED, [Update(2, 2, redo='{"x":1}')]),
        "compute damaged": schema.Compute(DAMAGED, braid.HEAD_PATCH, 0),
        "snapshot damaged": schema.Snapshot(DAMAGED, 1, "{}", 0),
    }


async def flood(peer: RawPeer, request: schema.Request, count: int) -> Counter[int]:
    """Send `count` copies of a request in batches; every one must be answered with a
    Failure on a connection that stays open. Returns the codes."""
    codes: Counter[int] = Counter()
    for first in range(0, count, BATCH):
        streams = []
        data = bytearray()
        for _ in range(min(BATCH, count - first)):
            stream, frame = peer.request(request)
            streams.append(stream)
            data += frame
        assert await peer.send(bytes(data), BATCH_SECONDS), "the node stopped reading"

        def all_answered(received: Received, streams: list[int] = streams) -> bool:
            return all(stream in received.answers for stream in streams)

        answered = await peer.read_until(all_answered, BATCH_SECONDS)
        assert answered, f"unanswered requests; closed={peer.received.closed}"
        for stream in streams:
            answer = peer.received.answers.pop(stream)
            assert isinstance(answer, schema.Failure), answer
            codes[answer.code] += 1
            check_failure(request, answer)
    return codes


def check_failure(request: schema.Request, answer: schema.Failure) -> None:
    """A catalogued code, never a bound's refusal, and a detail naming the cause."""
    info = errors.lookup(answer.code)
    assert info is not None, answer
    assert info not in (errors.OVERLOADED, errors.SHUTTING_DOWN), answer
    deep = isinstance(request, schema.Initialize) or (
        isinstance(request, schema.Patch) and request.key != DAMAGED
    )
    cause = DEEP_CAUSE if deep else DAMAGE_CAUSE
    assert cause.search(answer.detail), answer


@pytest.mark.timeout(240)
async def test_failing_requests_are_answered_and_give_their_slots_back(
    servers: Servers,
) -> None:
    """Issue 7 row 11: FLOOD_PER_KIND (> node_requests_max) requests of each failing kind
    (deep JSON in patch and initialize; get, patch, compute and snapshot of a document
    whose applied-state page is damaged) over CONNECTIONS raw connections each get a
    Failure with a catalogued code naming the cause, none OVERLOADED, and no connection is
    closed. Afterwards the node has nothing in flight, counts every INTERNAL answer in its
    metrics, logged no transport traceback, serves a good client normally (reads exact,
    a patch acknowledged), kept every acknowledged write (or reports the damage that hides
    it), and the refused writes changed nothing."""
    metrics_port = free_port()
    server = await prepare(servers, metrics_port)
    peers = [await RawPeer.open(server.address) for _ in range(CONNECTIONS)]
    totals: dict[str, Counter[int]] = {}
    started = time.monotonic()
    try:
        for peer in peers:
            await peer.ready()
        for name, request in failing_requests().items():
            shares = [FLOOD_PER_KIND // CONNECTIONS] * CONNECTIONS
            shares[0] += FLOOD_PER_KIND - sum(shares)
            counts = await asyncio.gather(
                *(flood(peer, request, share) for peer, share in zip(peers, shares, strict=True))
            )
            totals[name] = sum(counts, Counter())
            assert sum(totals[name].values()) == FLOOD_PER_KIND
        for peer in peers:
            assert not peer.received.closed and not peer.received.failures()
    finally:
        for peer in peers:
            await peer.close()
    print(f"flood in {time.monotonic() - started:.1f} s:", {k: dict(v) for k, v in totals.items()})

    samples = scrape(metrics_port)
    internal = sum(counts[errors.INTERNAL.code] for counts in totals.values())
    assert samples["braid_requests_in_flight"] == 0
    assert samples["braid_internal_errors_total"] == internal
    assert samples["braid_overloaded_total"] == 0
    log = server.log_path.read_text(errors="replace")
    for marker in TRANSPORT_TRACEBACKS:
        assert marker not in log, marker
    await check_good_client(server)


async def check_good_client(server: ServerProcess) -> None:
    """Served normally; acknowledged writes intact; refused writes changed nothing."""
    client = await connect(server.address, timeout=10)
    try:
        reads = await asyncio.gather(*(client.get(key) for key in GOOD_KEYS * 64))
        for change in reads:
            assert change.seq == GOOD_SEQ
            assert json.loads(change.document) == document_at(GOOD_SEQ)
        await client.patch(GOOD_KEYS[1], [update_for(GOOD_SEQ + 1)])
        assert (await client.get(GOOD_KEYS[1])).seq == GOOD_SEQ + 1
        with pytest.raises(braid.BraidError) as missing:
            await client.get(NEVER)  # the deep initializes left nothing
        assert missing.value.code == errors.DOCUMENT_NOT_FOUND.code
        with pytest.raises(braid.BraidError) as damaged:
            await client.get(DAMAGED)  # the damage is still reported, never served
        assert DAMAGE_CAUSE.search(damaged.value.detail), damaged.value
        for key in EARLY_KEYS:
            try:
                change = await client.get(key)
            except braid.BraidError as error:
                assert error.code != errors.OVERLOADED.code, error
                assert DAMAGE_CAUSE.search(error.detail), error
                continue
            assert change.seq == GOOD_SEQ
            assert json.loads(change.document) == document_at(GOOD_SEQ)
    finally:
        await client.close()
