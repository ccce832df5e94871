"""braid: a replicated, durable store for document logs.

The public API::

    store = await braid.open("DIR")          # or: async with braid.open("DIR") as store:
    key = braid.Key("space-name", "doc-1")
    await store.initialize(key, braid.Update(seq_begin=1, seq_end=1, redo='{"x":1}'))
    change = await store.get(key)            # .document, .seq, .reads
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

from braid.client import Client, connect
from braid.errors import BraidError
from braid.model import (
    HEAD_PATCH,
    REWIND,
    ComputeMethod,
    DocumentChange,
    DocumentInfo,
    Key,
    Update,
)
from braid.storage.durable import DurableConfig, DurableEngine
from braid.storage.router import Store

__all__ = [
    "HEAD_PATCH",
    "REWIND",
    "BraidError",
    "Client",
    "ComputeMethod",
    "DocumentChange",
    "DocumentInfo",
    "DurableConfig",
    "Key",
    "Store",
    "Update",
    "connect",
    "open",
]
__version__ = "0.1.0"


class _Opening:
    """What `braid.open` returns: await it, or use it with `async with`."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        config: DurableConfig | None,
        create: bool,
        read_only: bool,
    ) -> None:
        self._directory = directory
        self._config = config
        self._create = create
        self._read_only = read_only
        self._store: Store | None = None

    async def _open(self) -> Store:
        durable = await DurableEngine.open(
            self._directory, self._config, create=self._create, read_only=self._read_only
        )
        return Store(durable)

    def __await__(self) -> Generator[Any, None, Store]:
        return self._open().__await__()

    async def __aenter__(self) -> Store:
        self._store = await self._open()
        return self._store

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._store is not None
        await self._store.close()


def open(
    directory: str | os.PathLike[str],
    config: DurableConfig | None = None,
    *,
    create: bool = True,
    read_only: bool = False,
) -> _Opening:
    """Open (creating if needed) the embedded durable store in `directory`. A directory
    that exists and holds other files is not made a store: that is STORE_NOT_FOUND, naming
    them (an empty directory is fine).

    `read_only=True` opens an existing store without writing anything to it (reads work,
    writes fail with STORE_READ_ONLY); it fails with STORE_LOCKED while a writer holds it.
    """
    return _Opening(directory, config, create and not read_only, read_only)
