"""The DataService fast forms (`patch_nowait`, `get_nowait`), run against every engine.

The node server has one dispatch (runtime/dispatch.py): it tries the fast form and, when
that declines with None, awaits the ordinary method. These tests prove that taking the fast
form is never observably different: the same documents, the same errors, and no read that
shows a write before it is acknowledged. An engine may decline every time (the network
client does); then the tests check the fallback alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pytest

import braid
from braid import Update
from braid.core.wal.patch_record import patch_record
from braid.core.wire import schema
from braid.model import DocumentChange, Key

if TYPE_CHECKING:
    from tests.contract.conftest import ServiceUnderTest


def delta(seq: int) -> Update:
    return Update(seq, seq, redo=f'{{"n":{seq},"s{seq}":"v"}}', undo=f'{{"s{seq}":null}}')


async def patch_fast(
    service: ServiceUnderTest, key: Key, updates: Sequence[Update], encoded: bytes | None = None
) -> None:
    """Patch the way the node does: the fast form, else the awaitable."""
    started = service.patch_nowait(key, updates, encoded)
    if started is None:
        await service.patch(key, updates)
    else:
        await started


async def get_fast(service: ServiceUnderTest, key: Key) -> DocumentChange:
    """Get the way the node does: the fast form, else the awaitable."""
    change = service.get_nowait(key)
    return await service.get(key) if change is None else change


async def test_fast_patches_and_gets_equal_the_awaited_ones(service: ServiceUnderTest) -> None:
    """Two documents written alike, one through the fast forms (with and without the record
    cut from the request's bytes), one through the awaitables, read back the same by both
    kinds of get."""
    fast, slow = service.key("fast"), service.key("slow")
    for key in (fast, slow):
        await service.initialize(key, Update(1, 1, redo='{"n":1}', undo="{}"))
    for seq in range(2, 12):
        updates = [delta(seq)]
        encoded = patch_record(schema.encode(schema.Patch(fast, updates))) if seq % 2 else None
        await patch_fast(service, fast, updates, encoded)
        await service.patch(slow, updates)
    expected = await service.get(slow)
    assert expected.seq == 11
    for read in (await get_fast(service, fast), await service.get(fast)):
        assert (read.document, read.seq, read.reads) == (
            expected.document,
            expected.seq,
            expected.reads,
        )


async def test_a_fast_read_never_shows_an_unacknowledged_write(
    service: ServiceUnderTest,
) -> None:
    """While a patch's future is not done, `get_nowait` declines (None); once it is done,
    every read shows the patch."""
    key = service.key("pending")
    await service.initialize(key, Update(1, 1, redo='{"n":1}', undo="{}"))
    for seq in range(2, 8):
        started = service.patch_nowait(key, [delta(seq)])
        if started is None:
            await service.patch(key, [delta(seq)])
        else:
            if not started.done():
                assert service.get_nowait(key) is None
            await started
        assert (await get_fast(service, key)).seq == seq


async def test_fast_forms_fail_as_the_awaitables_do(service: ServiceUnderTest) -> None:
    """A missing document (DOCUMENT_NOT_FOUND), a patch off the head (HEAD_SEQ_OFF), an
    empty patch (EMPTY_PATCH): the same code whether it is raised by the fast form, by
    its future, or by the awaitable it declined to."""
    missing, key = service.key("missing"), service.key("present")
    await service.initialize(key, Update(1, 1, redo='{"n":1}', undo="{}"))
    cases: list[tuple[Key, list[Update], str]] = [
        (missing, [delta(2)], "DOCUMENT_NOT_FOUND"),
        (key, [delta(5)], "HEAD_SEQ_OFF"),
        (key, [], "EMPTY_PATCH"),
    ]
    for target, updates, name in cases:
        with pytest.raises(braid.BraidError) as awaited:
            await service.patch(target, updates)
        with pytest.raises(braid.BraidError) as fast:
            await patch_fast(service, target, updates)
        assert (fast.value.name, fast.value.code) == (awaited.value.name, awaited.value.code)
        assert fast.value.name == name
    with pytest.raises(braid.BraidError) as caught:
        await get_fast(service, missing)
    assert caught.value.name == "DOCUMENT_NOT_FOUND"
    assert (await get_fast(service, key)).seq == 1  # nothing above was applied
