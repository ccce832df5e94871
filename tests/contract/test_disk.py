"""The Disk port's contract (braid.ports.Disk), run against the real adapter on real files and
the simulated one; then what only the simulated disk does: lose, on a crash, exactly what
was not durable (and nothing that was), fail a sync for good, and refuse a full disk
having written nothing."""

from __future__ import annotations

import errno
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from braid.ports import Disk
from braid.runtime.disk import RealDisk
from braid.sim.disk import SimDisk, SimulatedCrash


@pytest.fixture(params=["real", "sim"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    if request.param == "real":
        real = RealDisk(tmp_path)
        yield real
        real.close()
    else:
        yield SimDisk()


def test_files_are_created_zeroed_written_read_and_listed(disk: Disk) -> None:
    """create gives a zero-filled file of the size asked; writes land where they are put,
    past the end too; list is sorted and shows directories made."""
    disk.make_directory("wal")
    disk.create("wal/b", 16)
    assert disk.read("wal/b") == bytes(16)
    disk.write("wal/b", 4, b"abcd")
    disk.write("wal/b", 14, b"xyz")
    assert disk.read("wal/b") == bytes(4) + b"abcd" + bytes(6) + b"xyz"
    assert disk.size("wal/b") == 17
    disk.create("wal/a", 0)
    disk.sync("wal/b")
    disk.sync_directory("wal")
    assert disk.list("wal") == ["a", "b"]
    assert disk.list("") == ["wal"]
    assert disk.exists("wal/a") and disk.exists("wal") and not disk.exists("wal/c")


def test_rename_and_remove(disk: Disk) -> None:
    """rename moves a file's content to its new name (replacing nothing else); remove
    forgets it; creating an existing name fails."""
    disk.create("spare", 8)
    disk.write("spare", 0, b"header")
    disk.rename("spare", "seg-1")
    assert disk.read("seg-1").startswith(b"header")
    assert not disk.exists("spare")
    with pytest.raises(FileExistsError):
        disk.create("seg-1", 8)
    disk.remove("seg-1")
    assert disk.list("") == []
    with pytest.raises(FileNotFoundError):
        disk.read("seg-1")


def test_write_synced_writes_where_told_and_reads_take_ranges(disk: Disk) -> None:
    """write_synced returns how much it wrote (all of it, on these disks) and the bytes are
    there; read takes an offset and a length, and reads to the end without one; open_synced
    of a missing file raises at once."""
    disk.create("seg", 16)
    assert disk.write_synced("seg", 3, memoryview(b"header")) == 6
    assert disk.read("seg") == bytes(3) + b"header" + bytes(7)
    assert disk.read("seg", 3, 4) == b"head"
    assert disk.read("seg", 12) == bytes(4)
    disk.rename("seg", "seg-1")  # a descriptor kept for the old name is not reused
    assert disk.write_synced("seg-1", 0, b"xy") == 2
    assert disk.read("seg-1", 0, 5) == b"xy\0he"
    disk.open_synced("seg-1")  # ready: nothing changes
    assert disk.read("seg-1", 0, 2) == b"xy"
    with pytest.raises(FileNotFoundError):
        disk.open_synced("missing")


def test_synced_data_survives_every_crash() -> None:
    """What was synced (data by sync, names by sync_directory) is there after any crash."""
    for seed in range(200):
        disk = SimDisk()
        disk.create("log", 64)
        disk.sync_directory("")
        disk.write("log", 0, b"durable!")
        disk.sync("log")
        disk.write("log", 8, b"maybe")
        disk.crash(random.Random(seed))
        assert disk.read("log")[:8] == b"durable!", seed


def test_a_crash_keeps_a_prefix_of_unsynced_writes_the_last_torn() -> None:
    """Unsynced writes after a crash: a prefix of them in order, the last kept one cut at
    some byte; over many seeds every outcome occurs (none, some, all, torn)."""
    outcomes = set()
    for seed in range(400):
        disk = SimDisk()
        disk.create("log", 32)
        disk.sync_directory("")
        disk.write("log", 0, b"aaaa")
        disk.write("log", 4, b"bbbb")
        disk.crash(random.Random(seed))
        data = disk.read("log")[:8]
        expected_prefixes = {b"aaaa"[:n] + bytes(8 - n) for n in range(5)} | {
            b"aaaa" + b"bbbb"[:n] + bytes(4 - n) for n in range(5)
        }
        assert data in expected_prefixes, (seed, data)
        outcomes.add(data)
    assert bytes(8) in outcomes and b"aaaabbbb" in outcomes
    assert len(outcomes) >= 6, "torn writes at several bytes"


def test_a_crash_may_lose_names_not_synced() -> None:
    """A file created or renamed without sync_directory may or may not be there after a
    crash (both happen over seeds); a synced directory keeps its names."""
    seen = set()
    for seed in range(100):
        disk = SimDisk()
        disk.create("kept", 4)
        disk.sync_directory("")
        disk.create("spare", 4)
        disk.crash(random.Random(seed))
        assert disk.exists("kept")
        seen.add(disk.exists("spare"))
    assert seen == {True, False}


def test_a_failed_sync_is_final() -> None:
    """fail_next_sync: that sync raises EIO and every later sync of the file fails too, so
    nothing it covered is ever reported durable (fsyncgate: a failed sync is not retried)."""
    disk = SimDisk()
    disk.create("log", 16)
    disk.sync_directory("")
    disk.write("log", 0, b"lost")
    disk.fail_next_sync("log")
    with pytest.raises(OSError) as failed:
        disk.sync("log")
    assert failed.value.errno == errno.EIO
    disk.write("log", 4, b"more")
    with pytest.raises(OSError) as again:
        disk.sync("log")
    assert again.value.errno == errno.EIO


def test_a_full_disk_refuses_having_written_nothing() -> None:
    """capacity_bytes: a create or a growing write past it raises ENOSPC and changes
    nothing; overwriting allocated bytes still works."""
    disk = SimDisk(capacity_bytes=100)
    disk.create("a", 60)
    with pytest.raises(OSError) as full:
        disk.create("b", 60)
    assert full.value.errno == errno.ENOSPC
    assert not disk.exists("b")
    with pytest.raises(OSError):
        disk.write("a", 50, bytes(60))
    assert disk.size("a") == 60
    disk.write("a", 0, b"x" * 60)
    assert disk.read("a") == b"x" * 60


def test_the_simulated_machine_stops_at_the_change_it_was_told() -> None:
    """crash_after(3): two changes are made, the third raises SimulatedCrash without being
    made (a write is left pending: the crash that follows may keep it), and every change
    after it fails too until the crash. Reads still work; the crash lets the disk go on."""
    disk = SimDisk()
    disk.create("log", 8)
    disk.sync_directory("")
    disk.crash_after(3)
    disk.write("log", 0, b"ab")
    disk.sync("log")
    with pytest.raises(SimulatedCrash):
        disk.write("log", 2, b"cd")
    with pytest.raises(SimulatedCrash):
        disk.rename("log", "other")
    assert disk.read("log", 0, 4) == b"abcd"  # what the system sees, durable or not
    kept = set()
    for seed in range(40):
        machine = SimDisk()
        machine.create("log", 8)
        machine.sync_directory("")
        machine.crash_after(1)
        with pytest.raises(SimulatedCrash):
            machine.write("log", 0, b"wxyz")
        machine.crash(random.Random(seed))
        kept.add(machine.read("log", 0, 4))
        machine.write("log", 4, b"ok")  # the machine runs again after the crash
    assert b"wxyz" in kept and bytes(4) in kept, kept  # kept whole, lost, and (often) torn
    disk.crash(random.Random(0))
    disk.rename("log", "other")
    assert disk.list("") == ["other"]


def test_a_scattered_tear_keeps_any_of_the_last_writes_sectors() -> None:
    """With scattered_tears, the last kept write comes back either cut at a byte or with any
    of its 512-byte sectors (cut at the disk's sector boundaries, not the write's), in no
    order: over seeds a later sector is kept while an earlier one is lost."""
    first_lost_later_kept = False
    for seed in range(200):
        disk = SimDisk(scattered_tears=True)
        disk.create("log", 2048)
        disk.sync_directory("")
        disk.write("log", 256, b"\x01" * 1536)  # sectors: 256..511, 512..1023, ...
        disk.crash(random.Random(seed))
        written = disk.read("log")[256:1792]
        kept = written.count(1)
        prefix = written == b"\x01" * kept + bytes(1536 - kept)
        pieces = [written[0:256], written[256:768], written[768:1280], written[1280:1536]]
        sectors = all(piece in (bytes(len(piece)), b"\x01" * len(piece)) for piece in pieces)
        assert prefix or sectors, seed
        if pieces[0] == bytes(256) and pieces[-1] == b"\x01" * 256:
            first_lost_later_kept = True
    assert first_lost_later_kept


def test_an_unsynced_create_is_whole_after_its_next_sync(disk: Disk) -> None:
    """create(synced=False) gives the same zero-filled file; a write and one sync later the
    zeros and the write are both there (one sync covers both)."""
    disk.create("seg", 16, synced=False)
    assert disk.read("seg") == bytes(16)
    disk.write("seg", 0, b"head")
    disk.sync("seg")
    assert disk.read("seg") == b"head" + bytes(12)


def test_a_crash_before_the_sync_of_an_unsynced_create_may_lose_its_zeros() -> None:
    """On the simulated disk, the zeros of create(synced=False) are pending like any write:
    a crash before the sync may keep none of them (the file comes back shorter), while a
    synced create's zeros always survive whole."""
    sizes = set()
    for seed in range(20):
        disk = SimDisk()
        disk.create("kept", 8)
        disk.create("seg", 16, synced=False)
        disk.sync_directory("")
        disk.crash(random.Random(seed))
        assert disk.read("kept") == bytes(8)
        assert set(disk.read("seg")) <= {0}
        sizes.add(disk.size("seg"))
    assert min(sizes) < 16 and max(sizes) == 16, sizes
