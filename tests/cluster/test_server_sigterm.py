"""A real `braid serve` stopped with SIGTERM: requests in flight complete (or fail with
SHUTTING_DOWN), new ones are refused, the process exits 0 within the grace period, and
the store reopens with every acknowledged write."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

import pytest

import braid
from braid import errors
from braid.core.wire import schema
from braid.model import Key, Update
from tests.cluster.helpers import (
    GRACE_SECONDS,
    SEGMENT_BYTES,
    SLACK_SECONDS,
    RawPeer,
    Received,
    Servers,
    Writer,
    code_name,
    connect,
    document_at,
    expect,
    update_for,
)

T = TypeVar("T")

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
