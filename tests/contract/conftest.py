"""The engines the DataService contract suite runs against, and the `service` fixture.

Every test in `test_data_service.py` takes the `service` fixture and runs once per entry of
`ENGINES`. A factory is an async context manager that, given a fresh temporary directory,
yields a `ServiceUnderTest`: the DataService API plus `key(name)`, which makes a key that
routes to the engine under test. To run the suite against another engine — such as the
network client `braid.connect`, which is here as "server" — add one entry to `ENGINES`; the
tests do not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

import braid
import braid.sync
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.storage.api import DataService, DocumentHistory
from braid.storage.durable import DurableEngine
from braid.storage.memory import MemoryEngine

# Small WAL segments: the default preallocates 32 MiB per segment (plus a spare), which is
# all zeros and fsyncs per test for no gain in coverage here.
DURABLE_CONFIG = braid.DurableConfig(segment_bytes=1 << 20)
SPACE = "contract-space"


class ServiceUnderTest:
    """One engine behind the DataService API, with a helper to make keys that reach it."""

    def __init__(self, api: DataService, key_prefix: str) -> None:
        self.api = api
        self.key_prefix = key_prefix

    def key(self, name: str) -> Key:
        """A key named `name` that routes to the engine under test."""
        return Key(SPACE, self.key_prefix + name)

    async def initialize(self, key: Key, update: Update) -> None:
        await self.api.initialize(key, update)

    async def patch(self, key: Key, updates: Sequence[Update]) -> None:
        await self.api.patch(key, updates)

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        return self.api.patch_nowait(key, updates, encoded)

    async def get(self, key: Key) -> DocumentChange:
        return await self.api.get(key)

    def get_nowait(self, key: Key) -> DocumentChange | None:
        return self.api.get_nowait(key)

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        return await self.api.compute(key, method, seq)

    async def history(self, key: Key) -> DocumentHistory:
        return await self.api.history(key)

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        return await self.api.snapshot(key, seq, document, history)

    async def delete(self, key: Key) -> None:
        await self.api.delete(key)

    async def inventory(self) -> list[DocumentInfo]:
        return await self.api.inventory()

    async def close(self, key: Key | None = None) -> None:
        await self.api.close(key)


Factory = Callable[[Path], AbstractAsyncContextManager[ServiceUnderTest]]


@contextlib.asynccontextmanager
async def _memory_engine(directory: Path) -> AsyncIterator[ServiceUnderTest]:
    engine = MemoryEngine()
    try:
        yield ServiceUnderTest(engine, "")
    finally:
        await engine.close()


@contextlib.asynccontextmanager
async def _durable_engine(directory: Path) -> AsyncIterator[ServiceUnderTest]:
    engine = await DurableEngine.open(directory / "store", DURABLE_CONFIG)
    try:
        yield ServiceUnderTest(engine, "")
    finally:
        await engine.close()


def _store(key_prefix: str) -> Factory:
    @contextlib.asynccontextmanager
    async def factory(directory: Path) -> AsyncIterator[ServiceUnderTest]:
        async with braid.open(directory / "store", DURABLE_CONFIG) as store:
            yield ServiceUnderTest(store, key_prefix)

    return factory


SECRET = "contract-cluster-secret"


@contextlib.asynccontextmanager
async def _node(directory: Path) -> AsyncIterator[str]:
    """A real `braid serve` process on 127.0.0.1 over `directory`; yields its address."""
    ready = directory / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "braid.cli.main",
            "serve",
            "--data",
            str(directory / "store"),
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(ready),
            "--wal-segment-bytes",
            str(1 << 20),
        ],
        env=dict(os.environ, BRAID_SECRET=SECRET),
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(400):  # 20 s at most
            if ready.exists() and ready.read_text():
                break
            assert process.poll() is None, "braid serve exited during start-up"
            await asyncio.sleep(0.05)
        yield ready.read_text()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def _served(directory: Path) -> AsyncIterator[ServiceUnderTest]:
    """The network client (braid.connect) against a real `braid serve` process."""
    async with (
        _node(directory) as address,
        braid.connect([address], secret=SECRET, timeout=10) as client,
    ):
        yield ServiceUnderTest(client, "disk_")


class AsyncOverSync:
    """A sync store or client (braid.sync) seen through the async API, each call made from
    a worker thread, so the suite's concurrent calls reach the sync object from several
    threads at once. It has no fast forms (like the network client)."""

    def __init__(self, sync: braid.sync.SyncStore | braid.sync.SyncClient) -> None:
        self.sync = sync

    async def initialize(self, key: Key, update: Update) -> None:
        await asyncio.to_thread(self.sync.initialize, key, update)

    async def patch(self, key: Key, updates: Sequence[Update]) -> None:
        await asyncio.to_thread(self.sync.patch, key, updates)

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        return None

    async def get(self, key: Key) -> DocumentChange:
        return await asyncio.to_thread(self.sync.get, key)

    def get_nowait(self, key: Key) -> DocumentChange | None:
        return None

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        return await asyncio.to_thread(self.sync.compute, key, method, seq)

    async def history(self, key: Key) -> DocumentHistory:
        return await asyncio.to_thread(self.sync.history, key)

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        return await asyncio.to_thread(self.sync.snapshot, key, seq, document, history)

    async def delete(self, key: Key) -> None:
        await asyncio.to_thread(self.sync.delete, key)

    async def inventory(self) -> list[DocumentInfo]:
        return await asyncio.to_thread(self.sync.inventory)

    async def close(self, key: Key | None = None) -> None:
        await asyncio.to_thread(self.sync.close, key)


@contextlib.asynccontextmanager
async def _sync_store(directory: Path) -> AsyncIterator[ServiceUnderTest]:
    """braid.sync.open: the embedded store without async (durable keys)."""
    sync = braid.sync.open(directory / "store", DURABLE_CONFIG)
    try:
        yield ServiceUnderTest(AsyncOverSync(sync), "disk_")
    finally:
        sync.close()


@contextlib.asynccontextmanager
async def _sync_served(directory: Path) -> AsyncIterator[ServiceUnderTest]:
    """braid.sync.connect: the network client without async, against a real node."""
    async with _node(directory) as address:
        sync = await asyncio.to_thread(braid.sync.connect, [address], secret=SECRET, timeout=10)
        try:
            yield ServiceUnderTest(AsyncOverSync(sync), "disk_")
        finally:
            sync.close()


# The engines the contract runs against; "server" is the network client against a real
# `braid serve` process. Add an entry and every contract test runs against it, unchanged.
ENGINES: dict[str, Factory] = {
    "memory": _memory_engine,
    "durable": _durable_engine,
    "store-mem": _store("mem_"),
    "store-disk": _store("disk_"),
    "server": _served,
    "sync-store": _sync_store,
    "sync-server": _sync_served,
}


# Engines whose every test starts a process and that add no code path of their own to the
# default run: "sync-server" is the sync wrapper (run in full as "sync-store") over the
# network client (run in full as "server"); test_sync.py reaches a node through it in the
# default run, and `make test-slow` runs the whole suite through it.
SLOW_ENGINES = frozenset({"sync-server"})


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.slow) if name in SLOW_ENGINES else name
        for name in ENGINES
    ]
)
async def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ServiceUnderTest]:
    """The DataService under test, fresh and empty for each test."""
    async with ENGINES[request.param](tmp_path) as under_test:
        yield under_test
