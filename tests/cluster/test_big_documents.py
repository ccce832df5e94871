"""Issue 7, rows 7-10 over the network: a real `braid serve` on 127.0.0.1 and `braid.connect`.

What braid accepts must be readable through every interface (DESIGN §3 invariant 7), and a
bad request must fail with the embedded store's code without hurting anything else: the
node enforces the depth and size bounds itself (a raw peer skips the client's checks), and
the client refuses what the wire cannot carry before sending it, leaving the other streams
of its connection alone. Every refusal is followed by a check that nothing changed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import braid
from braid import HEAD_PATCH, REWIND, BraidError, Key, Update, limits
from braid.client import Client, ClientConfig, StaticLocator
from braid.core.wire import schema
from tests.cluster.helpers import SECRET, RawPeer, Servers, connect

SIZE = limits.document_bytes_max
DEPTH = limits.json_depth_max
TIMEOUT_SECONDS = 10.0


def pad(room: int, character: str = "x") -> str:
    return character * room


def update_of_size(seq: int, size: int, name: str, character: str = "x") -> Update:
    """An update whose `update_bytes` is exactly `size` (`character` is one code point)."""
    room = size - 64 - len("{}") - len('{"":""}') - len(name)
    return Update(seq, seq, redo=f'{{"{name}":"{pad(room, character)}"}}', undo="{}")


async def document(client: Client, key: Key) -> tuple[str, int]:
    change = await client.get(key)
    return change.document, change.seq


async def refused(call: Callable[[], Awaitable[Any]], code: int, cause: str) -> BraidError:
    """Run `call` (a client call may raise before returning its awaitable) and check that
    it fails with `code` and a message naming `cause`."""
    with pytest.raises(BraidError) as caught:
        await call()
    assert caught.value.code == code, caught.value
    assert cause in str(caught.value), caught.value
    return caught.value


def assert_all_read(results: list[Any], expected: tuple[str, int]) -> None:
    """Twenty reads around one refused call (the middle result, a BraidError returned by
    `refused`) all answered with the expected document."""
    assert isinstance(results[10], BraidError), results[10]
    reads = results[:10] + results[11:]
    assert [(change.document, change.seq) for change in reads] == [expected] * 20, reads


async def test_a_document_at_the_size_bound_reads_back_over_the_network(
    servers: Servers,
) -> None:
    """Row 8: deltas adding up to exactly document_bytes_max, of 4-byte UTF-8 characters
    (the largest answer per character), are acknowledged and read back by get,
    compute(HEAD_PATCH) and compute(REWIND) through a real node; the next byte is
    DOCUMENT_TOO_LARGE from the node, naming the bound and snapshot, and changes nothing.
    (Five 4 MB patches used to make a 20 MB document the network could not return.)"""
    server = await servers.start("node")
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        key = Key("big-space", "doc")
        first = update_of_size(1, SIZE // 2, "a", "\U0001f600")
        second = update_of_size(2, SIZE - SIZE // 2, "b", "\U0001f600")
        await client.initialize(key, first)
        await client.patch(key, [second])
        expected = {**json.loads(first.redo), **json.loads(second.redo)}
        text, seq = await document(client, key)
        assert (json.loads(text), seq) == (expected, 2)
        assert len(text.encode()) > 4 * (SIZE - 200)  # the answer is 4x the stored characters
        forward = await client.compute(key, HEAD_PATCH, 0)
        assert json.loads(forward.document) == expected
        back = await client.compute(key, REWIND, 1)
        assert json.loads(back.document) == {}
        error = await refused(lambda: client.patch(key, [Update(3, 3)]), 2009, str(SIZE))
        assert "snapshot" in str(error)
        assert await document(client, key) == (text, seq)


async def test_an_oversized_request_is_refused_before_sending_and_hurts_no_other_stream(
    servers: Servers,
) -> None:
    """Row 8: a 19 MB patch through braid.connect (it used to close the connection with
    CONNECTION_LOST, failing every request on it) is DOCUMENT_TOO_LARGE at the call, while
    20 reads sharing its connection all succeed; a client configured with a smaller frame
    limit refuses a larger request with RECORD_TOO_LARGE, also leaving its other streams
    alone. Nothing is written by either."""
    server = await servers.start("node")
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        key = Key("big-space", "doc")
        await client.initialize(key, Update(1, 1, redo='{"a":1}'))
        before = await document(client, key)
        redo = '{"b":"' + pad(19 * 1024 * 1024 // 5) + '"}'
        huge = [Update(seq, seq, redo=redo) for seq in range(2, 7)]  # 19 MB in five updates
        reads = [client.get(key) for _ in range(20)]
        results = await asyncio.gather(
            *reads[:10],
            refused(lambda: client.patch(key, huge), 2009, "a patch of"),
            *reads[10:],
            return_exceptions=True,
        )
        assert_all_read(results, before)
        assert await document(client, key) == before
        frame_bytes_max = 64 * 1024
        config = ClientConfig(secret=SECRET.encode(), frame_bytes_max=frame_bytes_max)
        small = Client(config, StaticLocator([server.address]))
        try:
            big = Update(2, 2, redo='{"b":"' + pad(100 * 1024) + '"}')
            results = await asyncio.gather(
                *[small.get(key) for _ in range(10)],
                refused(lambda: small.patch(key, [big]), 1008, f"frame limit is {frame_bytes_max}"),
                *[small.get(key) for _ in range(10)],
                return_exceptions=True,
            )
            assert_all_read(results, before)
        finally:
            await small.close()
        assert await document(client, key) == before


async def test_the_node_enforces_the_bounds_without_the_clients_checks(
    servers: Servers,
) -> None:
    """Rows 7 and 8 at the node: a raw peer (no client-side checks) sending a redo nested
    past json_depth_max, or a patch past document_bytes_max, gets MALFORMED_JSON or
    DOCUMENT_TOO_LARGE naming the cause, on a connection that keeps working; the
    document is unchanged."""
    server = await servers.start("node")
    key = Key("raw-space", "doc")
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        await client.initialize(key, Update(1, 1, redo='{"a":1}'))
        before = await document(client, key)
    peer = await RawPeer.open(server.address)
    try:
        await peer.ready()
        deep = '{"a":' * (DEPTH + 1) + "1" + "}" * (DEPTH + 1)
        requests: list[schema.Request] = [
            schema.Patch(key, [Update(2, 2, redo=deep)]),
            schema.Patch(key, [update_of_size(2, SIZE, "b")]),
            schema.Get(key),
        ]
        streams = []
        for message in requests:
            stream, frame = peer.request(message)
            streams.append(stream)
            assert await peer.send(frame)
        assert await peer.read_until(
            lambda received: all(stream in received.answers for stream in streams), 10.0
        )
        answers = [peer.received.answers[stream] for stream in streams]
    finally:
        await peer.close()
    assert isinstance(answers[0], schema.Failure), answers[0]
    assert (answers[0].code, f"deeper than {DEPTH}" in answers[0].detail) == (1003, True)
    assert isinstance(answers[1], schema.Failure), answers[1]
    assert (answers[1].code, str(SIZE) in answers[1].detail) == (2009, True)
    assert isinstance(answers[2], schema.Change), answers[2]
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        assert await document(client, key) == before


async def test_out_of_range_numbers_get_the_embedded_codes_and_leak_no_stream(
    servers: Servers, tmp_path: Any
) -> None:
    """Row 10: compute and snapshot with a seq of 2**64 through braid.connect are
    SEQ_BEYOND_HEAD (2008) and a negative seq or history INVALID_ARGUMENT (1007), the
    codes an embedded store gives; 300 of them (more than the 128 streams a connection
    has; each used to leak one, until every call timed out) leave the client working.
    A history of 2**64 keeps every delta, as embedded."""
    server = await servers.start("node")
    key = Key("range-space", "doc")
    async with braid.open(tmp_path / "embedded", braid.DurableConfig(1 << 20)) as store:
        await store.initialize(key, Update(1, 1, redo='{"a":1}'))
        embedded = {
            "compute": await codes(store.compute(key, HEAD_PATCH, 2**64)),
            "rewind": await codes(store.compute(key, REWIND, -1)),
            "snapshot": await codes(store.snapshot(key, 2**64, '{"a":1}', 0)),
            "history": await codes(store.snapshot(key, 1, '{"a":1}', -1)),
        }
        kept = await store.snapshot(key, 1, '{"a":1}', 2**64)
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        await client.initialize(key, Update(1, 1, redo='{"a":1}'))
        before = await document(client, key)
        for _ in range(75):
            network = {
                "compute": await codes(client.compute(key, HEAD_PATCH, 2**64)),
                "rewind": await codes(client.compute(key, REWIND, -1)),
                "snapshot": await codes(client.snapshot(key, 2**64, '{"a":1}', 0)),
                "history": await codes(client.snapshot(key, 1, '{"a":1}', -1)),
            }
            assert (
                network
                == embedded
                == {
                    "compute": 2008,
                    "rewind": 1007,
                    "snapshot": 2008,
                    "history": 1007,
                }
            )
        assert await client.snapshot(key, 1, '{"a":1}', 2**64) == kept == 0
        results = await asyncio.gather(*[client.get(key) for _ in range(200)])
        assert {(change.document, change.seq) for change in results} == {before}


async def codes(call: Awaitable[Any]) -> int:
    try:
        await call
    except BraidError as error:
        return error.code
    raise AssertionError("the call succeeded")


async def test_invalid_unicode_through_the_client_gets_the_embedded_codes(
    servers: Servers,
) -> None:
    """Row 9: a lone surrogate (invalid UTF-8 decoded) in redo, undo or who through
    braid.connect is MALFORMED_JSON or INVALID_UPDATE, in a snapshot document
    MALFORMED_JSON, instead of UnicodeEncodeError; the client keeps working and nothing
    is written."""
    server = await servers.start("node")
    key = Key("text-space", "doc")
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        await client.initialize(key, Update(1, 1, redo='{"a":1}'))
        before = await document(client, key)
        bad = '{"a":"\udcff"}'
        await refused(lambda: client.patch(key, [Update(2, 2, redo=bad)]), 1003, "lone surrogate")
        await refused(lambda: client.patch(key, [Update(2, 2, undo=bad)]), 1003, "lone surrogate")
        await refused(
            lambda: client.patch(key, [Update(2, 2, who="\ud800")]), 1004, "who is not valid"
        )
        await refused(lambda: client.snapshot(key, 1, bad, 0), 1003, "snapshot document")
        assert await document(client, key) == before


async def test_a_request_the_codec_refuses_costs_no_stream_slot(servers: Servers) -> None:
    """Row 10's second half: should a request that passed the client's checks still fail
    to encode (here forced by calling the internal `_call` without them), the call fails
    with INTERNAL and its connection takes no new requests, so the stream it may have
    counted is never missed: after 300 such calls (past the 128 streams of a connection)
    reads are answered at once, none timing out."""
    server = await servers.start("node")
    key = Key("range-space", "doc")
    async with await connect(server.address, TIMEOUT_SECONDS) as client:
        await client.initialize(key, Update(1, 1, redo='{"a":1}'))
        for _ in range(300):
            unchecked = schema.Compute(key, HEAD_PATCH, 2**64)
            assert await codes(client._call(key, unchecked)) == 9001
        results = await asyncio.gather(*[client.get(key) for _ in range(200)])
        assert {(change.document, change.seq) for change in results} == {('{"a":1}', 1)}
