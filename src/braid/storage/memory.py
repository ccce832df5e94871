"""The in-memory engine (keys beginning `mem_`): fast, and gone when the process ends."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from braid.core.document import DocumentLog, check_initialize, check_updates
from braid.errors import DOCUMENT_NOT_FOUND, STORE_CLOSED, BraidError
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.storage.api import DocumentHistory


class MemoryEngine:
    def __init__(self) -> None:
        self._documents: dict[Key, DocumentLog] = {}
        self._closed = False

    def _document(self, key: Key) -> DocumentLog:
        if self._closed:
            raise BraidError(STORE_CLOSED, "the memory engine is closed")
        document = self._documents.get(key)
        if document is None:
            raise BraidError(DOCUMENT_NOT_FOUND, f"no document {key}")
        return document

    async def initialize(self, key: Key, update: Update) -> None:
        if self._closed:
            raise BraidError(STORE_CLOSED, "the memory engine is closed")
        check_initialize(update)
        if key in self._documents:
            raise DocumentLog.refuse_initialize_existing()
        self._documents[key] = DocumentLog([update])

    async def patch(self, key: Key, updates: Sequence[Update]) -> None:
        self._patch(key, updates)

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None]:
        """`patch` at once (memory never waits): an already finished future. Nothing is
        logged, so `encoded` is not needed."""
        self._patch(key, updates)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _patch(self, key: Key, updates: Sequence[Update]) -> None:
        check_updates(updates)
        document = self._document(key)
        document.append(updates, document.check_patch(updates))

    async def get(self, key: Key) -> DocumentChange:
        return self._document(key).get()

    def get_nowait(self, key: Key) -> DocumentChange:
        """`get` at once: memory always can."""
        return self._document(key).get()

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        return self._document(key).compute(method, seq)

    async def history(self, key: Key) -> DocumentHistory:
        log = self._document(key)
        return DocumentHistory(list(log.deltas), log.compacted_through, log.compacted_exact)

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        log = self._document(key)
        fold = log.plan_fold(seq, document, history)
        if fold is None:
            return 0
        log.apply_fold(fold)
        return fold.count - 1

    async def delete(self, key: Key) -> None:
        self._document(key)
        del self._documents[key]

    async def inventory(self) -> list[DocumentInfo]:
        return [
            DocumentInfo(key, log.head, len(log.deltas), log.bytes)
            for key, log in self._documents.items()
        ]

    async def close(self, key: Key | None = None) -> None:
        if key is None:
            self._closed = True
            self._documents.clear()
        # Releasing one document would lose it: memory is its only home. Nothing to do.
