"""The one path from a decoded request to the store, through the `DataService` contract.

`dispatch` is the only place a request meets the service. It answers in one of three forms:
- a response, when the answer is known at once (a get the engine answers now, a Locate);
- a future, when the engine started the request at once and will finish it later (a patch
  waiting for its durability): no task, no coroutine frame per request;
- a coroutine, when the request must be awaited (every other operation, and a patch or get
  whose fast form said None); the server runs it as a task.

Patches and gets try the service's fast forms first (`patch_nowait`, `get_nowait`, which an
engine may always decline with None) and fall back to the awaitable; nothing here knows
which engine is behind the service. Under replication a write becomes request -> validate ->
propose: this module is where that changes. It raises for a request it cannot start
(bad input, an unknown message); the server turns that into the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from braid.core.wal.patch_record import patch_record
from braid.core.wire import schema
from braid.errors import UNSUPPORTED_MESSAGE, BraidError
from braid.model import DocumentChange, DocumentInfo
from braid.storage.api import DataService

Outcome = schema.Response | asyncio.Future[None] | Coroutine[Any, Any, schema.Response]


def dispatch(
    service: DataService, request: schema.Request, payload: bytes, address: str
) -> Outcome:
    """Start `request` (decoded from `payload`, this node serving at `address`): its answer,
    its completion future, or the coroutine to await for its answer (see the module)."""
    if isinstance(request, schema.Patch):
        key, updates = request.key, request.updates
        started = service.patch_nowait(key, updates, patch_record(payload))
        return _patch(service, request) if started is None else started
    if isinstance(request, schema.Get):
        change = service.get_nowait(request.key)
        if change is None:
            return _get(service, request)
        return schema.Change(change.document, change.seq, change.reads)
    if isinstance(request, schema.Initialize):
        return _initialize(service, request)
    if isinstance(request, schema.Compute):
        return _compute(service, request)
    if isinstance(request, schema.Snapshot):
        return _snapshot(service, request)
    if isinstance(request, schema.Delete):
        return _delete(service, request)
    if isinstance(request, schema.Inventory):
        return _inventory(service)
    if isinstance(request, schema.Release):
        return _release(service, request)
    if isinstance(request, schema.History):
        return _history(service, request)
    if isinstance(request, schema.Locate):
        return schema.Located(partition=0, replicas=[address], leader=address)
    raise BraidError(UNSUPPORTED_MESSAGE, f"no handler for {type(request).__name__}")


# The awaited forms. Each calls the service inside its coroutine, so a request cancelled
# before its task ever ran leaves no service coroutine un-awaited.


async def _patch(service: DataService, request: schema.Patch) -> schema.Response:
    await service.patch(request.key, request.updates)
    return schema.DONE


async def _get(service: DataService, request: schema.Get) -> schema.Response:
    return _change(await service.get(request.key))


async def _initialize(service: DataService, request: schema.Initialize) -> schema.Response:
    await service.initialize(request.key, request.update)
    return schema.DONE


async def _compute(service: DataService, request: schema.Compute) -> schema.Response:
    return _change(await service.compute(request.key, request.method, request.seq))


async def _snapshot(service: DataService, request: schema.Snapshot) -> schema.Response:
    removed = await service.snapshot(request.key, request.seq, request.document, request.history)
    return schema.Count(removed)


async def _delete(service: DataService, request: schema.Delete) -> schema.Response:
    await service.delete(request.key)
    return schema.DONE


async def _inventory(service: DataService) -> schema.Response:
    return schema.InventoryList([_item(info) for info in await service.inventory()])


async def _history(service: DataService, request: schema.History) -> schema.Response:
    history = await service.history(request.key)
    return schema.HistoryList(history.deltas, history.compacted_through, history.compacted_exact)


async def _release(service: DataService, request: schema.Release) -> schema.Response:
    await service.close(request.key)
    return schema.DONE


def _change(change: DocumentChange) -> schema.Change:
    return schema.Change(change.document, change.seq, change.reads)


def _item(info: DocumentInfo) -> schema.InventoryItem:
    return schema.InventoryItem(info.key, info.seq, info.deltas, info.bytes)
