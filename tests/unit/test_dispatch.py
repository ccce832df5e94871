"""`dispatch` is the node's one path from a decoded request to the store: every request
type, whether the service's fast forms answer or decline, gives the same answer."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence

import msgspec
import pytest

from braid import errors
from braid.core.wire import schema
from braid.model import ComputeMethod, DocumentChange, DocumentInfo, Key, Update
from braid.runtime.dispatch import Outcome, dispatch
from braid.storage.api import DataService
from braid.storage.memory import MemoryEngine

ADDRESS = "127.0.0.1:7400"
KEY = Key("unit-space", "doc")


class Declining(MemoryEngine):
    """A memory engine whose fast forms always decline: every request is awaited."""

    def patch_nowait(  # type: ignore[override]
        self, key: Key, updates: Sequence[Update], encoded: bytes | None = None
    ) -> asyncio.Future[None] | None:
        return None

    def get_nowait(self, key: Key) -> DocumentChange | None:  # type: ignore[override]
        return None


async def settle(outcome: Outcome) -> schema.Response:
    """The answer an outcome stands for, as the server would send it."""
    if isinstance(outcome, asyncio.Future):
        await outcome
        return schema.DONE
    if isinstance(outcome, Coroutine):
        return await outcome
    return outcome


def requests() -> list[schema.Request]:
    return [
        schema.Initialize(KEY, Update(1, 1, redo='{"a":1}', undo="{}")),
        schema.Patch(KEY, [Update(2, 2, redo='{"b":2}', undo='{"b":null}')]),
        schema.Get(KEY),
        schema.Compute(KEY, ComputeMethod.REWIND, 1),
        schema.Snapshot(KEY, 2, '{"a":1,"b":2}', 0),
        schema.Inventory(),
        schema.Locate(KEY),
        schema.Release(KEY),
        schema.Delete(KEY),
    ]


async def answers(service: DataService) -> list[schema.Response]:
    result = []
    for request in requests():
        outcome = dispatch(service, request, schema.encode(request), ADDRESS)
        result.append(await settle(outcome))
    return result


async def test_fast_and_awaited_paths_answer_alike() -> None:
    """The same requests against an engine whose fast forms answer and one whose fast forms
    decline: equal answers, request by request (and none a Failure)."""
    fast, slow = await answers(MemoryEngine()), await answers(Declining())
    assert fast == slow
    assert not any(isinstance(answer, schema.Failure) for answer in fast)
    assert fast[2] == schema.Change('{"a":1,"b":2}', 2, 2)
    assert fast[6] == schema.Located(partition=0, replicas=[ADDRESS], leader=ADDRESS)


async def test_the_fast_forms_answer_without_a_coroutine() -> None:
    """A patch the engine starts at once is a future; a get it answers at once a Change;
    neither is a coroutine (no task per request on the node's hot path)."""
    engine = MemoryEngine()
    await engine.initialize(KEY, Update(1, 1, redo="{}", undo="{}"))
    patch = schema.Patch(KEY, [Update(2, 2, redo='{"b":2}', undo='{"b":null}')])
    assert isinstance(dispatch(engine, patch, schema.encode(patch), ADDRESS), asyncio.Future)
    get = schema.Get(KEY)
    assert dispatch(engine, get, schema.encode(get), ADDRESS) == schema.Change('{"b":2}', 2, 2)


async def test_a_request_that_cannot_start_raises() -> None:
    """Bad input met while starting raises from `dispatch` itself (the server answers it)."""
    get = schema.Get(Key("unit-space", "missing"))
    with pytest.raises(errors.BraidError) as caught:
        dispatch(MemoryEngine(), get, schema.encode(get), ADDRESS)
    assert caught.value.code == errors.DOCUMENT_NOT_FOUND.code


def test_an_inventory_item_is_a_document_info_as_an_array() -> None:
    """InventoryItem declares no fields of its own (DocumentInfo's, once) and encodes as the
    array [key, seq, deltas, bytes], the bytes of protocol version 1."""
    item = schema.InventoryItem(KEY, 4, 3, 200)
    assert isinstance(item, DocumentInfo)
    assert msgspec.msgpack.encode(item) == msgspec.msgpack.encode(
        [["unit-space", "doc"], 4, 3, 200]
    )
