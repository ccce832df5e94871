"""The DataService `history` operation, run against every engine (see conftest.py): a
document's retained deltas come back exactly as written, and a compaction shows as one
folded delta and how far it reaches."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

import braid
from braid import Update
from tests.contract.test_data_service import (
    HEAD,
    HISTORY,
    document_at,
    raises_braid,
    update,
    write_history,
)

if TYPE_CHECKING:
    from tests.contract.conftest import ServiceUnderTest


async def test_history_returns_every_delta_as_written(service: ServiceUnderTest) -> None:
    """history answers each delta with every field exactly as written (who, request, kind,
    active, asset_bytes, the redo and undo texts byte for byte), oldest first, and no
    compaction."""
    key = service.key("fields")
    first = Update(1, 1, "alice", "req-1", '{"a": 1}', '{"a":null}', True, 7, "edit")
    second = Update(2, 4, "bob", "", '{"b":"é"}', "{}", False, 0, "")
    await service.initialize(key, first)
    await service.patch(key, [second])
    history = await service.history(key)
    assert history.deltas == [first, second]
    assert (history.head, history.compacted_through, history.compacted_exact) == (4, 0, True)


async def test_history_of_a_multi_delta_document(service: ServiceUnderTest) -> None:
    """The contract's standard document: its history is the deltas written, in order."""
    key = await write_history(service)
    history = await service.history(key)
    written = [update(begin, end, redo, undo) for begin, end, redo, undo in HISTORY]
    assert history.deltas == written
    assert history.head == HEAD


async def test_history_after_a_snapshot_shows_the_fold(service: ServiceUnderTest) -> None:
    """After snapshot(5, keep 1): the deltas through seq 5 are one delta of kind "compacted"
    whose redo builds the document at 5 from {} (undo {}), compacted_through is 5, and the
    newest delta is kept as written."""
    key = await write_history(service)
    await service.snapshot(key, 5, json.dumps(document_at(5)), 1)
    history = await service.history(key)
    folded, kept = history.deltas
    assert (folded.seq_begin, folded.seq_end, folded.kind, folded.undo) == (1, 5, "compacted", "{}")
    assert json.loads(folded.redo) == document_at(5) | {"a": None}  # the deletion is kept
    assert kept == update(*HISTORY[-1])
    assert (history.compacted_through, history.compacted_exact) == (5, True)


@pytest.mark.parametrize("deleted", [False, True])
async def test_history_of_a_missing_document_is_not_found(
    service: ServiceUnderTest, deleted: bool
) -> None:
    """A key never written, or deleted, has no history: DOCUMENT_NOT_FOUND."""
    key = service.key("missing")
    if deleted:
        await service.initialize(key, update(1, 1, {"a": 1}))
        await service.delete(key)
    with raises_braid(braid.errors.DOCUMENT_NOT_FOUND.code, "DOCUMENT_NOT_FOUND"):
        await service.history(key)
