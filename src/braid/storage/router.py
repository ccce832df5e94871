"""The embedded store: routes each key to its engine (DESIGN §1).

`mem_…` keys go to the memory engine; every other key (`disk_…` and, in embedded mode,
everything else) goes to the durable engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence

from braid.errors import INVALID_KEY, BraidError
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.storage.api import DataService, DocumentHistory
from braid.storage.durable import DurableEngine
from braid.storage.memory import MemoryEngine

MEMORY_PREFIX = "mem_"


class Store:
    """The embedded document store: the DataService API over the memory and durable engines."""

    def __init__(self, durable: DurableEngine, memory: MemoryEngine | None = None) -> None:
        self.durable = durable
        self.memory = memory or MemoryEngine()

    def _engine(self, key: Key) -> DataService:
        if not isinstance(key, Key):
            raise BraidError(INVALID_KEY, f"expected braid.Key, got {type(key).__name__}")
        return self.memory if key.key.startswith(MEMORY_PREFIX) else self.durable

    async def initialize(self, key: Key, update: Update) -> None:
        await self._engine(key).initialize(key, update)

    def patch(self, key: Key, updates: Sequence[Update]) -> Awaitable[None]:
        # Not a coroutine of its own: hands back the engine's, saving a frame per write.
        return self._engine(key).patch(key, updates)

    async def get(self, key: Key) -> DocumentChange:
        return await self._engine(key).get(key)

    # The fast forms (see DataService): whatever the key's engine answers.

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        return self._engine(key).patch_nowait(key, updates, encoded)

    def get_nowait(self, key: Key) -> DocumentChange | None:
        return self._engine(key).get_nowait(key)

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        return await self._engine(key).compute(key, method, seq)

    async def history(self, key: Key) -> DocumentHistory:
        return await self._engine(key).history(key)

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        return await self._engine(key).snapshot(key, seq, document, history)

    async def delete(self, key: Key) -> None:
        await self._engine(key).delete(key)

    async def inventory(self) -> list[DocumentInfo]:
        documents = await self.durable.inventory() + await self.memory.inventory()
        return sorted(documents, key=lambda info: (info.key.space, info.key.key))

    async def close(self, key: Key | None = None) -> None:
        if key is not None:
            await self._engine(key).close(key)
            return
        await self.memory.close()
        await self.durable.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
