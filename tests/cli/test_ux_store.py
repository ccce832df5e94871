"""Errors that never mislead, through the Python API: `braid.open` on a directory that is
not a store (issue 10, first block).

The rule lives in the engine's open (storage/scan.refuse_foreign_directory), so the API
refuses what the CLI refuses: a directory holding other files is never turned into a store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import braid
from braid import errors
from tests.support.files import tree


async def test_open_refuses_a_directory_holding_other_files(tmp_path: Path) -> None:
    """`braid.open(DIR, create=True)` on a directory of someone's files raises
    STORE_NOT_FOUND naming the directory and (at most three of) its files, and leaves the
    directory byte for byte unchanged: no LOCK, no log, no applied state."""
    directory = tmp_path / "photos"
    directory.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (directory / name).write_bytes(name.encode())
    (directory / "albums").mkdir()
    before = tree(directory)
    with pytest.raises(braid.BraidError) as refused:
        await braid.open(directory, create=True)
    assert refused.value.code == errors.STORE_NOT_FOUND.code
    assert f"{directory} is not a braid store" in refused.value.detail
    assert "holds other files (a.jpg, albums, b.jpg and 2 more)" in refused.value.detail
    assert tree(directory) == before


@pytest.mark.parametrize("present", [(), ("lost+found",), ("LOCK",)], ids=["empty", "lf", "lock"])
async def test_open_makes_a_store_of_an_empty_directory(
    tmp_path: Path, present: tuple[str, ...]
) -> None:
    """A directory that is empty, or holds only what a store or a fresh file system's root
    holds (LOCK, lost+found), becomes a store that keeps what is written to it."""
    directory = tmp_path / "store"
    directory.mkdir()
    for name in present:
        if name == "lost+found":
            (directory / name).mkdir()
        else:
            (directory / name).write_text("")
    key = braid.Key("chat", "room")
    async with braid.open(directory, create=True) as store:
        await store.initialize(key, braid.Update(seq_begin=1, seq_end=1, redo='{"x":1}'))
    async with braid.open(directory, create=False) as store:
        assert (await store.get(key)).document == '{"x":1}'


async def test_a_store_among_its_own_files_still_opens(tmp_path: Path) -> None:
    """A store whose directory also holds a stray file opens as before: the rule is about
    making new stores, never about refusing existing ones."""
    directory = tmp_path / "store"
    key = braid.Key("chat", "room")
    async with braid.open(directory) as store:
        await store.initialize(key, braid.Update(seq_begin=1, seq_end=1, redo='{"x":1}'))
    (directory / "README.txt").write_text("the operator's notes\n")
    async with braid.open(directory) as store:
        assert (await store.get(key)).seq == 1
