"""Parsed JSON in and out, run against every engine (see conftest.py): an update built from
JSON values with `Update.of` is stored as the JSON text it encodes to, and a get or compute
answer's `json()` is the document as a value, while the write path keeps JSON text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid import ComputeMethod, Update

if TYPE_CHECKING:
    from tests.contract.conftest import ServiceUnderTest


async def test_updates_from_values_and_answers_as_values(service: ServiceUnderTest) -> None:
    """Update.of encodes redo and undo (undo defaulting to an empty patch, seq_end to
    seq_begin); history keeps exactly that text; get().json() and compute().json() are the
    merged document and the head patch as values."""
    key = service.key("parsed")
    first = Update.of(1, {"title": "é", "tags": ["a"]}, who="alice")
    second = Update.of(2, {"tags": None, "n": 2}, {"tags": ["a"], "n": None}, seq_end=3)
    assert (first.seq_end, first.undo, second.seq_end) == (1, "{}", 3)
    await service.initialize(key, first)
    await service.patch(key, [second])
    history = await service.history(key)
    assert [delta.redo for delta in history.deltas] == [first.redo, second.redo]
    assert history.deltas[1].undo_json() == {"tags": ["a"], "n": None}
    change = await service.get(key)
    assert (change.json(), change.seq) == ({"title": "é", "n": 2}, 3)
    patch = await service.compute(key, ComputeMethod.HEAD_PATCH, 1)
    assert patch.json() == {"tags": None, "n": 2}
