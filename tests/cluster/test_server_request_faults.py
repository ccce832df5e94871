"""The node server's request mechanism against a store that fails in every way it can
(issue 7, row 11): raising at once on the fast path, failing its durability future later,
raising in a task, returning an answer that does not encode. Every request gets exactly one
answer with a code, its connection stays open, and its node-wide slot comes back: after
several times `node_requests_max` such requests nothing is in flight and a good request is
served. The server runs in this test's event loop on 127.0.0.1, behind a raw peer: the
mechanism itself, whatever the real store happens to raise today
(test_server_failing_requests.py floods a real `braid serve`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence

import pytest

from braid import errors
from braid.core.wire import schema
from braid.model import ComputeMethod, DocumentChange, Key, Update
from braid.runtime.server import NodeServer, ServerConfig
from braid.storage.router import Store
from tests.cluster.helpers import CLUSTER, HOST, SECRET, RawPeer

NODE_REQUESTS_MAX = 16
STREAMS_MAX = 8
ROUNDS = 3 * NODE_REQUESTS_MAX // STREAMS_MAX  # batches of STREAMS_MAX: 3x the node bound
SECONDS = 10.0


class FaultyStore(Store):
    """Every request fails; how depends on the key (see `failing_requests`)."""

    def __init__(self) -> None:  # no engines: nothing here reaches one
        pass

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        if key.key == "raise-now":
            raise ValueError("patch raised at once")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        error = KeyError("durability failed") if key.key == "fail-later" else None
        asyncio.get_running_loop().call_soon(future.set_exception, error or _braid_error())
        return future

    def get_nowait(self, key: Key) -> DocumentChange | None:
        if key.key == "raise-now":
            raise ZeroDivisionError("get raised at once")
        if key.key == "unencodable":
            return DocumentChange("\ud800", 1, 1)  # msgspec cannot encode a lone surrogate
        return None  # take the ordinary path: a task

    async def get(self, key: Key) -> DocumentChange:
        raise RuntimeError("get raised in its task")

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        await asyncio.sleep(0)
        raise OSError("compute raised after a turn of the loop")


def _braid_error() -> errors.BraidError:
    return errors.BraidError(errors.WAL_FAILED, "the log failed")


def failing_requests() -> Iterator[tuple[schema.Request, int, str]]:
    """(request, expected code, a word of the expected detail)."""
    internal = errors.INTERNAL.code
    yield schema.Patch(Key("space", "raise-now"), [Update(2, 2)]), internal, "ValueError"
    yield schema.Patch(Key("space", "fail-later"), [Update(2, 2)]), internal, "KeyError"
    yield schema.Patch(Key("space", "braid"), [Update(2, 2)]), errors.WAL_FAILED.code, "log"
    yield schema.Get(Key("space", "raise-now")), internal, "ZeroDivisionError"
    yield schema.Get(Key("space", "unencodable")), internal, "UnicodeEncodeError"
    yield schema.Get(Key("space", "task")), internal, "RuntimeError"
    yield schema.Compute(Key("space", "a"), ComputeMethod.REWIND, 0), internal, "OSError"
    yield schema.Delete(Key("space", "a")), internal, "AttributeError"  # no engine at all


async def test_every_failing_request_is_answered_and_frees_its_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """For each way of failing, 3 x node_requests_max requests each get one answer with the
    expected code and a detail naming the exception, none OVERLOADED; the connection stays
    open; afterwards the node has nothing in flight, counted one internal error (and logged
    one traceback) per INTERNAL answer, and answers a good request (Locate)."""
    config = ServerConfig(
        CLUSTER, SECRET.encode(), streams_max=STREAMS_MAX, node_requests_max=NODE_REQUESTS_MAX
    )
    node = NodeServer(FaultyStore(), config)
    await node.start(HOST, 0)
    peer = await RawPeer.open(node.address)
    internal = 0
    try:
        await peer.ready()
        with caplog.at_level(logging.ERROR, logger="braid.server"):
            for request, code, word in failing_requests():
                for _ in range(ROUNDS):
                    for answer in await batch(peer, request, STREAMS_MAX):
                        assert isinstance(answer, schema.Failure), (request, answer)
                        assert (answer.code, word in answer.detail) == (code, True), answer
                        internal += answer.code == errors.INTERNAL.code
        assert not peer.received.closed and not peer.received.failures()
        assert node.stats.in_flight == 0
        assert node.stats.overloaded == 0
        assert node.stats.internal_errors == internal
        assert len([r for r in caplog.records if r.exc_info]) == internal
        (located,) = await batch(peer, schema.Locate(Key("space", "a")), 1)
        assert isinstance(located, schema.Located), located
    finally:
        await peer.close()
        await node.shutdown()


async def batch(peer: RawPeer, request: schema.Request, count: int) -> list[schema.Response]:
    """Send `count` copies in one write and wait (bounded) for every answer."""
    frames = [peer.request(request) for _ in range(count)]
    assert await peer.send(b"".join(frame for _, frame in frames))
    streams = [stream for stream, _ in frames]
    assert await peer.read_until(
        lambda received: all(stream in received.answers for stream in streams), SECONDS
    )
    return [peer.received.answers.pop(stream) for stream in streams]


class _RaisingDecoder:
    def decode(self, payload: bytes) -> schema.Request:
        raise RuntimeError("the decoder raised")


async def test_a_connection_whose_bytes_raise_is_closed_with_internal(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Should decoding a request ever raise (a bug: the connection promises events, never
    exceptions, for the peer's bytes), the node tells that peer INTERNAL with the cause in
    a GoAway and closes only that connection, counts and logs it once, holds nothing in
    flight, and serves the next connection."""
    config = ServerConfig(CLUSTER, SECRET.encode())
    node = NodeServer(FaultyStore(), config)
    await node.start(HOST, 0)
    peer = await RawPeer.open(node.address)
    other = None
    try:
        await peer.ready()
        with monkeypatch.context() as patched, caplog.at_level(logging.ERROR, "braid.server"):
            patched.setattr(schema, "request_decoder", _RaisingDecoder())
            _, frame = peer.request(schema.Locate(Key("space", "a")))
            await peer.send(frame)
            received = await peer.collect(SECONDS, SECONDS)
        assert received.closed
        (goaway,) = [m for _, _, m in received.messages if isinstance(m, schema.GoAway)]
        assert goaway.code == errors.INTERNAL.code and "RuntimeError" in goaway.message
        assert node.stats.internal_errors == 1 and node.stats.in_flight == 0
        assert len([record for record in caplog.records if record.exc_info]) == 1
        other = await RawPeer.open(node.address)
        await other.ready()
        (located,) = await batch(other, schema.Locate(Key("space", "a")), 1)
        assert isinstance(located, schema.Located), located
    finally:
        await peer.close()
        if other is not None:
            await other.close()
        await node.shutdown()
