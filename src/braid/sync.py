"""braid without async, for scripts and notebooks: `braid.sync.open(...)` and
`braid.sync.connect(...)` with the same methods as the async store and client, each a plain
call that returns when the operation is done.

    import braid, braid.sync

    with braid.sync.open("DIR") as store:
        key = braid.Key("space-name", "doc-1")
        store.initialize(key, braid.Update(seq_begin=1, seq_end=1, redo='{"x":1}'))
        print(store.get(key).document)

Each sync object runs the async store or client on an event loop of its own, in a daemon
thread started when it opens and stopped when it closes, so it works where a loop is
already running (a notebook) and from several threads at once (calls are handed to the loop
with `run_coroutine_threadsafe`). The answers and errors are the async API's, unchanged;
after `close()` every call fails with STORE_CLOSED. A call interrupted in the calling thread
(Ctrl-C) is cancelled on the loop, as an awaited call would be.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from braid import errors
from braid.client import Client, Target
from braid.client import connect as connect_async
from braid.core.wire import schema
from braid.errors import BraidError
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.storage.api import DataService, DocumentHistory
from braid.storage.durable import DurableConfig, DurableEngine
from braid.storage.router import Store

T = TypeVar("T")
S = TypeVar("S", bound=DataService)

_STOP_SECONDS_MAX = 10.0  # joining the loop's thread at close


class _LoopThread:
    """An event loop running forever in a daemon thread, until `stop`."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # interrupted here (KeyboardInterrupt): cancel it there too
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(_STOP_SECONDS_MAX)
        if not self._thread.is_alive():
            self.loop.close()


async def _called(operation: Callable[..., Awaitable[T]], *arguments: Any) -> T:
    return await operation(*arguments)


class _Sync(Generic[S]):
    """The DataService API, each method a blocking call run on the object's own loop."""

    def __init__(self, runner: _LoopThread, service: S, what: str) -> None:
        self._runner = runner
        self._service = service
        self._what = what
        self._closed = False
        self._lock = threading.Lock()

    def _run(self, operation: Callable[..., Awaitable[T]], *arguments: Any) -> T:
        """`operation(*arguments)` called and awaited on the loop (the store and client
        are not thread-safe: nothing of theirs runs in the calling thread)."""
        if self._closed:
            raise BraidError(errors.STORE_CLOSED, f"this {self._what} is closed")
        return self._runner.run(_called(operation, *arguments))

    def initialize(self, key: Key, update: Update) -> None:
        """Create the document; DOCUMENT_EXISTS if it is there already."""
        self._run(self._service.initialize, key, update)

    def patch(self, key: Key, updates: Sequence[Update]) -> None:
        """Append deltas (the first at head + 1); returns once they are durable."""
        self._run(self._service.patch, key, updates)

    def get(self, key: Key) -> DocumentChange:
        """The document: every redo merged, with its head seq."""
        return self._run(self._service.get, key)

    def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        """HEAD_PATCH: the patch from seq to head. REWIND: the patch from head back to seq."""
        return self._run(self._service.compute, key, method, seq)

    def history(self, key: Key) -> DocumentHistory:
        """The document's retained deltas, oldest first, as stored."""
        return self._run(self._service.history, key)

    def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        """Compact: keep `history` newest deltas, fold the rest up to seq; how many went."""
        return self._run(self._service.snapshot, key, seq, document, history)

    def delete(self, key: Key) -> None:
        self._run(self._service.delete, key)

    def inventory(self) -> list[DocumentInfo]:
        """Every document with its head seq, delta count and size."""
        return self._run(self._service.inventory)

    def close(self, key: Key | None = None) -> None:
        """With a key: release the document's memory. Without: close the store (or client)
        and stop its loop; closing again does nothing."""
        if key is not None:
            self._run(self._service.close, key)
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._runner.run(_called(self._service.close))
        finally:
            self._runner.stop()

    def __enter__(self: _SelfSync) -> _SelfSync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_SelfSync = TypeVar("_SelfSync", bound="_Sync[Any]")


class SyncStore(_Sync[Store]):
    """`braid.sync.open`'s answer: the embedded store, without async."""


class SyncClient(_Sync[Client]):
    """`braid.sync.connect`'s answer: the network client, without async."""

    def locate(self, key: Key) -> Target:
        return self._run(self._service.locate, key)

    def status(self) -> schema.NodeStatus:
        """The node's status (see `Client.status`)."""
        return self._run(self._service.status)


def open(
    directory: str | os.PathLike[str],
    config: DurableConfig | None = None,
    *,
    create: bool = True,
    read_only: bool = False,
) -> SyncStore:
    """`braid.open` without async: the embedded store in `directory` (see `braid.open`)."""
    runner = _LoopThread("braid-sync-store")
    try:
        create = create and not read_only
        durable = runner.run(
            DurableEngine.open(directory, config, create=create, read_only=read_only)
        )
    except BaseException:
        runner.stop()
        raise
    return SyncStore(runner, Store(durable), "store")


async def _connected(addresses: Sequence[str] | str, options: dict[str, Any]) -> Client:
    return await connect_async(addresses, **options)


def connect(addresses: Sequence[str] | str, **options: Any) -> SyncClient:
    """`braid.connect` without async: the same arguments (secret, cluster, timeout, locator,
    tls, name, rng); bad settings raise at once, as there."""
    runner = _LoopThread("braid-sync-client")
    try:
        client = runner.run(_connected(addresses, options))
    except BaseException:
        runner.stop()
        raise
    return SyncClient(runner, client, "client")
