"""The DataService API every engine (and the network client) serves — DESIGN §1.

Besides the awaitable operations, two non-coroutine forms of the hot ones, `patch_nowait`
and `get_nowait`, for the node server: they answer at once when the engine can (no task,
no coroutine frame per request) and return None when it cannot, and the caller then awaits
the ordinary method. An engine that never can simply returns None. The node has one
dispatch (runtime/dispatch.py) that tries the fast form and falls back to the awaitable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Protocol

import msgspec

from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update


class DocumentHistory(msgspec.Struct, frozen=True, array_like=True):
    """What `history` answers: a document's retained deltas, oldest first, exactly as
    stored, and how far its history was compacted. A compaction folds the oldest deltas
    into one (kind "compacted", undo `{}`) ending at `compacted_through` (0: never
    compacted); `compacted_exact` is False when that fold could not be expressed as one
    exact merge patch (then no patch from inside it can be computed)."""

    deltas: list[Update]
    compacted_through: int = 0
    compacted_exact: bool = True

    @property
    def head(self) -> int:
        return self.deltas[-1].seq_end


class DataService(Protocol):
    async def initialize(self, key: Key, update: Update) -> None:
        """Create the document; DOCUMENT_EXISTS if it is there already."""

    def patch(self, key: Key, updates: Sequence[Update]) -> Awaitable[None]:
        """Append deltas; the first seq_begin must be head + 1 (else HEAD_SEQ_OFF).
        (Declared as returning an awaitable so a router may hand back an engine's coroutine.)"""

    def patch_nowait(
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        """`patch` without a coroutine: check and start it now and return the future of its
        completion (durability, for a durable engine), or None when it cannot start without
        waiting (then await `patch`). Raises what `patch` would for bad input. `encoded`,
        when given, is `PatchOp(key, updates)` already encoded (core/wal/patch_record.py);
        an engine that logs may write it as is."""

    async def get(self, key: Key) -> DocumentChange:
        """The document: every redo merged, with its head seq."""

    def get_nowait(self, key: Key) -> DocumentChange | None:
        """`get` without a coroutine: the answer when it is known now, None when it would
        have to wait (then await `get`). Raises what `get` would (DOCUMENT_NOT_FOUND)."""

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        """HEAD_PATCH: the patch from seq to head. REWIND: the patch from head back to seq."""

    async def history(self, key: Key) -> DocumentHistory:
        """The document's retained deltas, oldest first, as stored (DOCUMENT_NOT_FOUND
        when absent)."""

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        """Compact: keep `history` newest deltas, fold the older ones up to seq into one.
        Returns how many deltas were removed."""

    async def delete(self, key: Key) -> None:
        """Remove the document."""

    async def inventory(self) -> list[DocumentInfo]:
        """Every document with its head seq, delta count and approximate size."""

    async def close(self, key: Key | None = None) -> None:
        """With a key: release the document's memory. Without: close the whole store."""
