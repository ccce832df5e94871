"""What `braid.sync` adds to the API it wraps (the contract suite runs it as "sync-store"
and "sync-server"): plain calls that work with or without a running event loop and from
several threads at once, a context manager, STORE_CLOSED after close, and the client's
status and locate."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import braid
import braid.sync
from braid import errors
from tests.contract.conftest import DURABLE_CONFIG, SECRET, _node

THREADS = 8
WRITES_PER_THREAD = 25


def test_a_sync_store_answers_plain_calls_and_closes(tmp_path: Path) -> None:
    """`with braid.sync.open(DIR)`: initialize, patch, get, compute and history answer as the
    async store does; after the block every call is STORE_CLOSED and closing again does
    nothing; the store reopens with what was written."""
    key = braid.Key("sync-space", "doc")
    with braid.sync.open(tmp_path / "store", DURABLE_CONFIG) as store:
        store.initialize(key, braid.Update(1, 1, redo='{"a":1}', undo='{"a":null}'))
        store.patch(key, [braid.Update(2, 2, redo='{"b":2}', undo='{"b":null}')])
        assert store.get(key) == braid.DocumentChange('{"a":1,"b":2}', 2, 2)
        assert store.compute(key, braid.REWIND, 1).document == '{"b":null}'
        assert len(store.history(key).deltas) == 2
    with pytest.raises(braid.BraidError) as closed:
        store.get(key)
    assert closed.value.code == errors.STORE_CLOSED.code
    store.close()
    with braid.sync.open(tmp_path / "store", read_only=True) as reopened:
        assert reopened.get(key).seq == 2


def test_a_sync_store_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    """Called from a coroutine (as in a notebook, whose loop is running), the sync store
    still answers: it runs on its own loop, never the caller's."""

    async def inside() -> str:
        with braid.sync.open(tmp_path / "store", DURABLE_CONFIG) as store:
            key = braid.Key("sync-space", "doc")
            store.initialize(key, braid.Update(1, 1, redo='{"in":"loop"}'))
            return store.get(key).document

    assert asyncio.run(inside()) == '{"in":"loop"}'


def test_threads_share_one_sync_store(tmp_path: Path) -> None:
    """Eight threads writing their own documents through one sync store at once: every
    write lands, in order, on its document."""
    with braid.sync.open(tmp_path / "store", DURABLE_CONFIG) as store:

        def writer(number: int) -> None:
            key = braid.Key("sync-space", f"thread-{number}")
            store.initialize(key, braid.Update(1, 1, redo='{"n":1}'))
            for seq in range(2, WRITES_PER_THREAD + 1):
                store.patch(key, [braid.Update(seq, seq, redo=f'{{"n":{seq}}}')])

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        documents = store.inventory()
    assert len(documents) == THREADS
    assert {info.seq for info in documents} == {WRITES_PER_THREAD}


async def test_a_sync_client_reaches_a_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`braid.sync.connect` to a real node: writes and reads, status and locate answer; a
    missing secret is INVALID_SETTING at once, before any thread is left running."""
    async with _node(tmp_path) as address:

        def use() -> tuple[str, int, str]:
            with braid.sync.connect([address], secret=SECRET, timeout=10) as client:
                key = braid.Key("sync-space", "remote")
                client.initialize(key, braid.Update(1, 1, redo='{"r":1}'))
                return (
                    client.get(key).document,
                    client.status().documents,
                    client.locate(key).leader,
                )

        assert await asyncio.to_thread(use) == ('{"r":1}', 1, address)
    monkeypatch.delenv("BRAID_SECRET", raising=False)
    before = threading.active_count()
    with pytest.raises(braid.BraidError) as refused:
        braid.sync.connect([address], secret=b"", timeout=1)
    assert refused.value.code == errors.INVALID_SETTING.code
    assert threading.active_count() == before
