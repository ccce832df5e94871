"""The DataService API every engine (and the network client) serves — DESIGN §1."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update


class DataService(Protocol):
    async def initialize(self, key: Key, update: Update) -> None:
        """Create the document; DOCUMENT_EXISTS if it is there already."""

    def patch(self, key: Key, updates: Sequence[Update]) -> Awaitable[None]:
        """Append deltas; the first seq_begin must be head + 1 (else HEAD_SEQ_OFF).
        (Declared as returning an awaitable so a router may hand back an engine's coroutine.)"""

    async def get(self, key: Key) -> DocumentChange:
        """The document: every redo merged, with its head seq."""

    async def compute(self, key: Key, method: ComputeMethod, seq: int) -> DocumentChange:
        """HEAD_PATCH: the patch from seq to head. REWIND: the patch from head back to seq."""

    async def snapshot(self, key: Key, seq: int, document: str, history: int) -> int:
        """Compact: keep `history` newest deltas, fold the older ones up to seq into one.
        Returns how many deltas were removed."""

    async def delete(self, key: Key) -> None:
        """Remove the document."""

    async def inventory(self) -> list[DocumentInfo]:
        """Every document with its head seq, delta count and approximate size."""

    async def close(self, key: Key | None = None) -> None:
        """With a key: release the document's memory. Without: close the whole store."""
