"""A real `braid serve` overloaded: requests past the per-connection or per-node bound are
answered OVERLOADED at once, the rest succeed, and the server's memory stays bounded, also
against a peer that sends but never reads (the server stops reading from it)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any, TypeVar

import pytest

import braid
from braid import errors
from braid.client import Client
from braid.core.wire import schema
from braid.core.wire.frames import FRAME_HEADER, FrameType
from braid.model import Key
from tests.cluster.helpers import (
    GRACE_SECONDS,
    IDLE_SECONDS,
    RSS_GROWTH_BYTES_MAX,
    RawPeer,
    Servers,
    connect,
    document_at,
    update_for,
)

T = TypeVar("T")

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
