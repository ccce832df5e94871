"""Regression tests for the single node's robustness rows of issue 7 (rows 1-6).

Each test damages a real store on real files (a real tmpfs where it needs a full disk or a
read-only mount) and drives it through the real CLI in its own process or the embedded API,
asserting the error code, that the message names the cause, that every acknowledged write
is still there, and that nothing unreported changed:

1. a second writer is refused (STORE_LOCKED) even after LOCK is removed;
2. a removed, renamed or truncated log tail, a removed first segment or applied state, is
   reported by `open` and `verify` alike (WAL_CORRUPT naming the file);
3. damage in the applied state is APPLIED_STATE_CORRUPT, never a raw SQLite or Unicode
   error and never wrong content; read-only commands write nothing;
4. a full disk refuses writes with DISK_FULL, keeps reads working, counts failed
   checkpoints, and the store continues once space returns, losing nothing;
5. unusable paths (a file as the store, a read-only mount, a segment that is a directory)
   are STORE_ACCESS naming the path, and reads work on a read-only store;
6. a store whose applied state cannot be written refuses a patch before logging it.

Cases that need root (mounting a tmpfs, acting as another user where root ignores file
modes) are skipped with the reason elsewhere; CI runs as root.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import braid
from braid import DurableConfig, Key, Update
from braid.errors import (
    APPLIED_STATE_CORRUPT,
    DISK_FULL,
    STORE_ACCESS,
    STORE_LOCKED,
    WAL_CORRUPT,
)
from braid.storage.wal import list_segments
from tests.support.files import file_hashes

SEGMENT_BYTES = 32 * 1024
CONFIG = DurableConfig(
    segment_bytes=SEGMENT_BYTES,
    checkpoint_records=128,
    checkpoint_interval_seconds=3600,
    checkpoint_on_close=False,
)
SPACE = "robust"
KEY = Key(SPACE, "doc")
CLI_SECONDS_MAX = 60


# Root ignores file modes; without these two capabilities it is held to them like anyone.
WITHOUT_DAC = [
    "setpriv",
    "--inh-caps=-dac_override,-dac_read_search",
    "--bounding-set=-dac_override,-dac_read_search",
]


def cli(*arguments: str, held_to_modes: bool = False) -> subprocess.CompletedProcess[str]:
    """Run `braid ARGUMENTS` in its own process; `held_to_modes` runs it without the
    capabilities that let root ignore file modes."""
    prefix = WITHOUT_DAC if held_to_modes and os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "braid.cli.main", *arguments],
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS_MAX,
        check=False,
    )


def redo(seq: int) -> str:
    return json.dumps({"seq": seq, f"field-{seq % 7}": f"value-{seq}-" + "x" * 400})


def expected_document(head: int) -> dict[str, object]:
    document: dict[str, object] = {}
    for seq in range(1, head + 1):
        document.update(json.loads(redo(seq)))
    return document


async def write_store(directory: Path, head: int, config: DurableConfig = CONFIG) -> None:
    """KEY at seq `head` (one delta per seq) and a small second document; with CONFIG this
    fills several segments, checkpoints most of it and leaves a tail only in the log."""
    async with braid.open(directory, config) as store:
        await store.initialize(KEY, Update(1, 1, redo=redo(1)))
        await store.initialize(Key(SPACE, "other"), Update(1, 1, redo='{"other":true}'))
        for seq in range(2, head + 1):
            await store.patch(KEY, [Update(seq, seq, redo=redo(seq))])


def build(directory: Path, head: int = 250) -> Path:
    asyncio.run(write_store(directory, head))
    return directory


async def read_head(directory: Path) -> tuple[dict[str, object], int]:
    async with braid.open(directory, CONFIG, create=False) as store:
        change = await store.get(KEY)
    return json.loads(change.document), change.seq


def open_error(directory: Path) -> braid.BraidError:
    """The error a read-write open raises (the test fails if it opens)."""

    async def attempt() -> braid.BraidError:
        try:
            store = await braid.open(directory, CONFIG, create=False)
        except braid.BraidError as error:
            return error
        await store.close()
        raise AssertionError(f"{directory} opened")

    return asyncio.run(attempt())


def verify_json(directory: Path) -> tuple[int, dict[str, Any]]:
    result = cli("verify", str(directory), "--json")
    return result.returncode, json.loads(result.stdout)


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: mounts a tmpfs or acts as another user")


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of `size` mounted at `directory` for the test's duration."""
    needs_root()
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def remount(directory: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(directory)], check=True)


# -- row 1: two writers -----------------------------------------------------------------------

HOLDER = """
import asyncio, sys, json
import braid
from braid import DurableConfig, Key, Update

async def main(directory):
    config = DurableConfig(segment_bytes=64 * 1024)
    key = Key("robust", "held")
    async with braid.open(directory, config) as store:
        await store.initialize(key, Update(1, 1, redo='{"n":1}'))
        print("ready", flush=True)
        sys.stdin.readline()
        for seq in range(2, 21):
            await store.patch(key, [Update(seq, seq, redo=json.dumps({"n": seq}))])
    print("done", flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_a_second_writer_is_refused_even_after_lock_is_removed(tmp_path: Path) -> None:
    """With the LOCK file removed (or replaced) under a running writer, a second opener
    still gets STORE_LOCKED naming the holder's pid, through the CLI and the API; the
    holder's writes all land and the log verifies clean."""
    directory = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "ready"
        (directory / "LOCK").unlink()
        patch = cli("doc", "patch", "--data", str(directory), SPACE, "held", "--seq", "2",
                    "--redo", '{"intruder":true}')  # fmt: skip
        assert patch.returncode == 1
        assert patch.stderr.startswith(f"error {STORE_LOCKED.code} STORE_LOCKED")
        (directory / "LOCK").write_text("not the holder\n")
        read = cli("doc", "get", "--data", str(directory), SPACE, "held")
        assert read.stderr.startswith(f"error {STORE_LOCKED.code} STORE_LOCKED")
        with pytest.raises(braid.BraidError) as refused:
            asyncio.run(read_head(directory))
        assert refused.value.code == STORE_LOCKED.code
        assert str(directory) in refused.value.detail
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "done"
        assert holder.wait(timeout=CLI_SECONDS_MAX) == 0
    finally:
        holder.kill()
        holder.wait()
    got = cli("doc", "get", "--data", str(directory), SPACE, "held", "--json")
    assert json.loads(got.stdout)["seq"] == 20
    assert cli("verify", str(directory)).returncode == 0


def test_lock_message_names_the_holder(tmp_path: Path) -> None:
    """STORE_LOCKED says which process holds the store."""
    directory = build(tmp_path / "store", head=3)

    async def twice() -> braid.BraidError:
        async with braid.open(directory, CONFIG):
            try:
                await braid.open(directory, CONFIG)
            except braid.BraidError as error:
                return error
        raise AssertionError("a second open succeeded")

    error = asyncio.run(twice())
    assert error.code == STORE_LOCKED.code
    assert f"pid {os.getpid()}" in error.detail


# -- row 2: a lost log tail -------------------------------------------------------------------


def newest_segment(directory: Path) -> Path:
    return list_segments(directory / "wal")[-1][1]


def _delete_every_segment(directory: Path) -> None:
    for _, path in list_segments(directory / "wal"):
        path.unlink()


def _rename_newest(directory: Path) -> None:
    newest_segment(directory).rename(directory / "wal" / "moved.wal")


LOST_TAIL: dict[str, Callable[[Path], None]] = {
    "delete newest": lambda d: newest_segment(d).unlink(),
    "rename newest": _rename_newest,
    "truncate newest to 16 bytes": lambda d: os.truncate(newest_segment(d), 16),
    "truncate newest to half": lambda d: os.truncate(newest_segment(d), SEGMENT_BYTES // 2),
    "delete first": lambda d: list_segments(d / "wal")[0][1].unlink(),
    "delete every segment": _delete_every_segment,
    "delete applied state": lambda d: (d / "applied.sqlite3").unlink(),
}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store: KEY at seq 250 over several segments, most of it checkpointed (the first
    segments released), the newest writes only in the log."""
    directory = build(tmp_path_factory.mktemp("pristine") / "store")
    assert len(list_segments(directory / "wal")) >= 2
    assert (directory / "wal" / "seg-00000001.wal").exists() is False
    return directory


@pytest.mark.parametrize("damage", sorted(LOST_TAIL))
def test_a_lost_log_tail_is_reported_by_open_and_verify_alike(
    pristine: Path, tmp_path: Path, damage: str
) -> None:
    """Removing or truncating log files (or the applied state the log no longer covers)
    is WAL_CORRUPT from a read-write open, from a read-only command and from `braid verify`,
    naming the file; verify changes nothing."""
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    newest = newest_segment(directory).name
    LOST_TAIL[damage](directory)
    before = file_hashes(directory)
    status, verdict = verify_json(directory)
    assert file_hashes(directory) == before
    error = open_error(directory)
    assert error.code == WAL_CORRUPT.code, error
    assert (status, verdict["opens"], verdict["code"]) == (2, False, error.code)
    if "newest" in damage:
        assert newest in error.detail
    read = cli("doc", "get", "--data", str(directory), SPACE, "doc")
    assert read.stderr.startswith(f"error {WAL_CORRUPT.code} WAL_CORRUPT")
    assert file_hashes(directory) == before


def test_the_intact_copy_reads_back_everything(pristine: Path, tmp_path: Path) -> None:
    """The baseline the lost-tail cases damage: verify is clean and seq 250 reads back."""
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    assert verify_json(directory)[0] == 0
    assert asyncio.run(read_head(directory)) == (expected_document(250), 250)


# -- row 3: the applied state -----------------------------------------------------------------


def checkpointed_copy(pristine: Path, tmp_path: Path) -> Path:
    """A copy of the pristine store with everything checkpointed (the applied state holds
    every document; a reopen replays nothing)."""
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)

    async def checkpoint() -> None:
        config = DurableConfig(segment_bytes=SEGMENT_BYTES, checkpoint_on_close=True)
        async with braid.open(directory, config):
            pass

    asyncio.run(checkpoint())
    return directory


def test_a_changed_byte_in_a_stored_delta_is_reported_not_returned(
    pristine: Path, tmp_path: Path
) -> None:
    """One byte changed inside a delta stored in applied.sqlite3: `get` fails with
    APPLIED_STATE_CORRUPT naming the document (never the changed content), the other
    document still reads, `braid verify` lists it, and `braid doc get` prints the code."""
    directory = checkpointed_copy(pristine, tmp_path)
    applied = directory / "applied.sqlite3"
    data = bytearray(applied.read_bytes())
    where = data.find(b"value-200-xxx")
    assert where > 0
    data[where + 6] ^= 0x01  # "value-200" becomes "value-300"
    applied.write_bytes(bytes(data))

    async def read() -> tuple[braid.BraidError, str]:
        async with braid.open(directory, CONFIG) as store:
            with pytest.raises(braid.BraidError) as damaged:
                await store.get(KEY)
            other = await store.get(Key(SPACE, "other"))
        return damaged.value, other.document

    error, other = asyncio.run(read())
    assert error.code == APPLIED_STATE_CORRUPT.code
    assert str(KEY) in error.detail and "checksum" in error.detail
    assert json.loads(other) == {"other": True}
    status, verdict = verify_json(directory)
    assert (status, verdict["opens"]) == (2, True)
    assert [item["document"] for item in verdict["unreadable"]] == [str(KEY)]
    got = cli("doc", "get", "--data", str(directory), SPACE, "doc")
    assert got.returncode == 1
    assert got.stderr.startswith(f"error {APPLIED_STATE_CORRUPT.code} APPLIED_STATE_CORRUPT")


def test_random_damage_to_the_applied_state_is_only_ever_a_braid_error(
    pristine: Path, tmp_path: Path
) -> None:
    """A damaged page and 200 seeded random byte flips in applied.sqlite3: opening and
    reading give either the acknowledged content or a BraidError with a code, never a raw
    sqlite3 or Unicode error, and never wrong content."""
    directory = checkpointed_copy(pristine, tmp_path)
    applied = directory / "applied.sqlite3"
    rng = random.Random(7)
    data = bytearray(applied.read_bytes())
    page = 4096
    data[2 * page : 3 * page] = rng.randbytes(page)  # a whole damaged page
    for _ in range(200):
        data[rng.randrange(100, len(data))] ^= 1 << rng.randrange(8)
    applied.write_bytes(bytes(data))
    outcomes: list[str] = []

    async def read() -> None:
        try:
            store = await braid.open(directory, CONFIG)
        except braid.BraidError as error:
            outcomes.append(f"open {error.code}")
            return
        try:
            for key, want in ((KEY, expected_document(250)), (Key(SPACE, "other"), None)):
                try:
                    change = await store.get(key)
                except braid.BraidError as error:
                    outcomes.append(f"get {error.code}")
                    continue
                if want is not None:
                    assert json.loads(change.document) == want
                outcomes.append("read")
            with contextlib.suppress(braid.BraidError):
                await store.inventory()
        finally:
            with contextlib.suppress(braid.BraidError):
                await store.close()

    asyncio.run(read())  # any other exception type fails the test
    assert outcomes
    assert cli("verify", str(directory)).returncode == 2


def test_read_only_commands_write_nothing(pristine: Path, tmp_path: Path) -> None:
    """`doc get`, `doc list`, `verify`, `wal verify` and `wal inspect` leave every file as it
    was, even a 0-byte applied.sqlite3 (which they report, and never rewrite)."""
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    commands = [
        ("doc", "get", "--data", str(directory), SPACE, "doc"),
        ("doc", "list", "--data", str(directory)),
        ("verify", str(directory)),
        ("wal", "verify", str(directory)),
        ("wal", "inspect", str(directory)),
    ]
    before = file_hashes(directory)
    for command in commands:
        assert cli(*command).returncode == 0, command
    assert file_hashes(directory) == before
    (directory / "applied.sqlite3").write_bytes(b"")
    before = file_hashes(directory)
    for command in commands[:3]:
        result = cli(*command)
        assert result.returncode != 0, command
        assert "3001" in result.stdout + result.stderr, command
    assert file_hashes(directory) == before
    assert (directory / "applied.sqlite3").stat().st_size == 0


# -- row 4: a full disk -----------------------------------------------------------------------


def fill(directory: Path, leave_bytes: int) -> Path:
    """A filler file taking all of the file system's free space but `leave_bytes`."""
    filler = directory / "filler"
    free = shutil.disk_usage(directory).free - leave_bytes
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while free > 0:
            free -= handle.write(bytes(min(free, 1 << 20)))
    return filler


def test_a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself(tmp_path: Path) -> None:
    """On a full tmpfs, writes fail with DISK_FULL (retryable) once the log cannot grow,
    with the document left at its last acknowledged seq; reads keep working; failed
    checkpoints are counted; after space returns the same store takes writes again without
    a restart, and a reopen shows every acknowledged write."""
    config = DurableConfig(
        segment_bytes=256 * 1024, checkpoint_records=32, checkpoint_interval_seconds=0.05
    )
    with tmpfs(tmp_path / "disk", "4m") as disk:
        directory = disk / "store"

        async def scenario() -> tuple[int, dict[str, float]]:
            store = await braid.open(directory, config)
            await store.initialize(KEY, Update(1, 1, redo=redo(1)))
            filler = fill(disk, leave_bytes=64 * 1024)
            acknowledged = 1
            refused: braid.BraidError | None = None
            for seq in range(2, 5000):
                try:
                    await store.patch(KEY, [Update(seq, seq, redo=redo(seq))])
                except braid.BraidError as error:
                    refused = error
                    break
                acknowledged = seq
            assert refused is not None, "the disk never filled"
            assert refused.code == DISK_FULL.code and refused.retryable
            assert "full" in refused.detail
            change = await store.get(KEY)  # reads keep working
            assert (json.loads(change.document), change.seq) == (
                expected_document(acknowledged),
                acknowledged,
            )
            retry = Update(acknowledged + 1, acknowledged + 1, redo=redo(acknowledged + 1))
            with pytest.raises(braid.BraidError) as again:  # the same write, still no room
                await store.patch(KEY, [retry])
            assert again.value.code == DISK_FULL.code
            await asyncio.sleep(0.3)  # checkpoints come due and fail on the full disk
            figures = store.durable.figures()
            filler.unlink()
            for seq in range(acknowledged + 1, acknowledged + 200):
                await store.patch(KEY, [Update(seq, seq, redo=redo(seq))])
            await store.close()
            return acknowledged + 199, figures

        head, figures = asyncio.run(scenario())
        assert figures["wal_disk_full_total"] >= 1
        assert figures["checkpoint_failures_total"] >= 1
        assert asyncio.run(read_head(directory)) == (expected_document(head), head)
        assert cli("verify", str(directory)).returncode == 0


# -- row 5: paths and permissions ---------------------------------------------------------------


def test_a_file_as_the_store_path_is_store_access(tmp_path: Path) -> None:
    """`--data` naming a file: STORE_ACCESS naming the path, exit 1, the file untouched."""
    path = tmp_path / "a-file"
    path.write_text("mine\n")
    result = cli("doc", "init", "--data", str(path), SPACE, "doc", "--redo", "{}")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error {STORE_ACCESS.code} STORE_ACCESS")
    assert str(path) in result.stderr
    assert path.read_text() == "mine\n"


def test_a_segment_that_is_a_directory_is_store_access(pristine: Path, tmp_path: Path) -> None:
    """A segment replaced by a directory: open and verify both report STORE_ACCESS naming
    it; no traceback."""
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    segment = newest_segment(directory)
    segment.unlink()
    segment.mkdir()
    error = open_error(directory)
    assert error.code == STORE_ACCESS.code
    assert segment.name in error.detail
    status, verdict = verify_json(directory)
    assert (status, verdict["code"]) == (2, STORE_ACCESS.code)


def test_read_only_mount_reads_work_and_writes_say_why(tmp_path: Path) -> None:
    """A store on a read-only mount: get, list, verify and inspect work; a patch and a new
    store under it are STORE_ACCESS naming the path; nothing is changed."""
    with tmpfs(tmp_path / "disk", "16m") as disk:
        directory = build(disk / "store", head=40)
        remount(disk, "ro")
        before = file_hashes(directory)
        for command in (
            ("doc", "get", "--data", str(directory), SPACE, "doc"),
            ("doc", "list", "--data", str(directory)),
            ("verify", str(directory)),
            ("wal", "inspect", str(directory)),
        ):
            result = cli(*command)
            assert result.returncode == 0, (command, result.stderr)
        patch = cli("doc", "patch", "--data", str(directory), SPACE, "doc", "--seq", "41",
                    "--redo", "{}")  # fmt: skip
        assert patch.returncode == 1
        assert patch.stderr.startswith(f"error {STORE_ACCESS.code} STORE_ACCESS")
        assert "read-only" in patch.stderr
        fresh = cli("doc", "init", "--data", str(disk / "new"), SPACE, "doc", "--redo", "{}")
        assert fresh.stderr.startswith(f"error {STORE_ACCESS.code} STORE_ACCESS")
        assert str(disk / "new") in fresh.stderr
        assert file_hashes(directory) == before
        remount(disk, "rw")
        assert asyncio.run(read_head(directory)) == (expected_document(40), 40)


def needs_file_modes() -> None:
    """Skip unless file modes can bind the CLI's process (not root, or root via setpriv)."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("root ignores file modes and setpriv is not installed")


def test_an_unreadable_segment_is_store_access(pristine: Path, tmp_path: Path) -> None:
    """A segment its user may not read: open (as that user) and verify report STORE_ACCESS
    naming the segment."""
    needs_file_modes()
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    segment = newest_segment(directory)
    segment.chmod(0)
    result = cli("doc", "get", "--data", str(directory), SPACE, "doc", held_to_modes=True)
    assert result.stderr.startswith(f"error {STORE_ACCESS.code} STORE_ACCESS"), result.stderr
    assert segment.name in result.stderr and "permission denied" in result.stderr
    verified = cli("verify", str(directory), "--json", held_to_modes=True)
    assert json.loads(verified.stdout)["code"] == STORE_ACCESS.code


def test_an_unwritable_segment_is_store_access_when_opened_for_writing(
    pristine: Path, tmp_path: Path
) -> None:
    """The segment the log resumes on is read-only for its user: a patch fails at open with
    STORE_ACCESS naming that segment (not a log failure at the first write), nothing changes,
    and reading the same store still works."""
    needs_file_modes()
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    segment = newest_segment(directory)
    segment.chmod(0o444)
    before = file_hashes(directory)
    patch = cli("doc", "patch", "--data", str(directory), SPACE, "doc", "--seq", "251",
                "--redo", '{"late":true}', held_to_modes=True)  # fmt: skip
    assert patch.stderr.startswith(f"error {STORE_ACCESS.code} STORE_ACCESS"), patch.stderr
    assert segment.name in patch.stderr and "permission denied" in patch.stderr
    assert {k: v for k, v in file_hashes(directory).items() if k != "LOCK"} == {
        k: v for k, v in before.items() if k != "LOCK"
    }
    read = cli("doc", "get", "--data", str(directory), SPACE, "doc", held_to_modes=True)
    assert read.returncode == 0, read.stderr


# -- row 6: a failure reported means not applied ----------------------------------------------


def test_an_unwritable_applied_state_refuses_the_patch_before_logging_it(
    pristine: Path, tmp_path: Path
) -> None:
    """applied.sqlite3 not writable by the writer: `doc patch` fails with STORE_ACCESS
    naming the file, and the patch is not there afterwards (nothing was logged)."""
    needs_file_modes()
    directory = tmp_path / "store"
    shutil.copytree(pristine, directory)
    applied = directory / "applied.sqlite3"
    applied.chmod(0o444)
    before = file_hashes(directory)
    patch = cli("doc", "patch", "--data", str(directory), SPACE, "doc", "--seq", "251",
                "--redo", '{"late":true}', held_to_modes=True)  # fmt: skip
    assert patch.returncode == 1
    assert patch.stderr.startswith(f"error {STORE_ACCESS.code} STORE_ACCESS"), patch.stderr
    assert "applied.sqlite3" in patch.stderr

    def stored(hashes: dict[str, str]) -> dict[str, str]:
        """The store's data files: not the holder's note in LOCK, nor the (empty) side
        files SQLite makes when it opens its journal."""
        return {k: v for k, v in hashes.items() if k != "LOCK" and not k.endswith(("-shm", "-wal"))}

    assert stored(file_hashes(directory)) == stored(before)
    applied.chmod(0o644)
    assert asyncio.run(read_head(directory)) == (expected_document(250), 250)


def test_a_full_disk_reverts_every_write_it_refused_under_concurrent_writers(
    tmp_path: Path,
) -> None:
    """Four writers patch their own documents at once until the full tmpfs refuses them,
    while readers wait on the writes in flight: every refused write (those in the refused
    batch and those logged after it) is reverted, no reader waits forever on one, and each
    document reads back at exactly its last acknowledged seq; once space returns
    each writer continues from there, and a reopen shows every acknowledged write."""
    config = DurableConfig(segment_bytes=256 * 1024, checkpoint_records=1 << 20)
    names = [f"writer-{number}" for number in range(4)]

    def update(name: str, seq: int) -> Update:
        return Update(seq, seq, redo=json.dumps({name: seq, "pad": "y" * 300}))

    async def write_until_refused(store: braid.Store, name: str, start: int) -> int:
        """Patch seq start.. until DISK_FULL (or 400 more); the last acknowledged seq."""
        acknowledged = start - 1
        for seq in range(start, start + 400):
            try:
                await store.patch(Key(SPACE, name), [update(name, seq)])
            except braid.BraidError as error:
                assert error.code == DISK_FULL.code, error
                break
            acknowledged = seq
        return acknowledged

    async def heads(store: braid.Store) -> dict[str, int]:
        found = {}
        for name in names:
            change = await store.get(Key(SPACE, name))
            assert json.loads(change.document) == {name: change.seq, "pad": "y" * 300}
            found[name] = change.seq
        return found

    with tmpfs(tmp_path / "disk", "4m") as disk:
        directory = disk / "store"

        async def scenario() -> dict[str, int]:
            store = await braid.open(directory, config)
            for name in names:
                await store.initialize(Key(SPACE, name), update(name, 1))
            filler = fill(disk, leave_bytes=64 * 1024)
            writing = asyncio.gather(*(write_until_refused(store, name, 2) for name in names))
            reads = 0
            while not writing.done():  # reads wait on the writes in flight, refused ones too
                await asyncio.wait_for(
                    asyncio.gather(*(store.get(Key(SPACE, name)) for name in names)), 10
                )
                reads += 1
            acknowledged = await writing
            assert reads > 0
            assert dict(zip(names, acknowledged, strict=True)) == await heads(store)
            assert store.durable.figures()["wal_disk_full_total"] >= 1
            filler.unlink()
            again = await asyncio.gather(
                *(
                    write_until_refused(store, name, head + 1)
                    for name, head in zip(names, acknowledged, strict=True)
                )
            )
            assert again == [head + 400 for head in acknowledged], "no write refused now"
            await store.close()
            return dict(zip(names, again, strict=True))

        final = asyncio.run(scenario())

        async def reopened() -> dict[str, int]:
            async with braid.open(directory, config) as store:
                return await heads(store)

        assert asyncio.run(reopened()) == final


def test_a_batch_larger_than_a_segment_gets_a_segment_that_holds_it(tmp_path: Path) -> None:
    """With a segment size smaller than one write (a small configured size), the log grows
    that write's segment before naming it and records the size: the store reopens and
    verifies clean, and the write reads back (a segment longer than its header says would be
    reported as damage)."""
    config = DurableConfig(segment_bytes=64 * 1024, checkpoint_on_close=False)
    directory = tmp_path / "store"
    big = json.dumps({"big": "z" * 200_000})

    async def write() -> None:
        async with braid.open(directory, config) as store:
            await store.initialize(KEY, Update(1, 1, redo=redo(1)))
            await store.patch(KEY, [Update(2, 2, redo=big)])
            await store.patch(KEY, [Update(3, 3, redo=redo(3))])

    asyncio.run(write())
    assert max(path.stat().st_size for _, path in list_segments(directory / "wal")) > 200_000
    assert cli("verify", str(directory)).returncode == 0

    async def read() -> dict[str, object]:
        async with braid.open(directory, config) as store:
            return json.loads((await store.get(KEY)).document)  # type: ignore[no-any-return]

    document = asyncio.run(read())
    assert document["big"] == "z" * 200_000 and document["seq"] == 3


def test_closing_on_a_full_disk_succeeds_and_loses_nothing(tmp_path: Path) -> None:
    """Closing a store whose final checkpoint cannot be written (the disk is full) neither
    raises nor hides the real cause: the failure is logged and counted, the close succeeds,
    and a reopen once there is room replays the log and shows every acknowledged write."""
    config = DurableConfig(segment_bytes=256 * 1024, checkpoint_records=1 << 20)
    with tmpfs(tmp_path / "disk", "4m") as disk:
        directory = disk / "store"

        async def write_then_close_full() -> tuple[int, dict[str, float]]:
            store = await braid.open(directory, config)
            await store.initialize(KEY, Update(1, 1, redo=redo(1)))
            acknowledged = 1
            for seq in range(2, 200):
                await store.patch(KEY, [Update(seq, seq, redo=redo(seq))])
                acknowledged = seq
            fill(disk, leave_bytes=0)
            await store.close()  # the checkpoint at close fails on the full disk
            return acknowledged, store.durable.figures()

        head, figures = asyncio.run(write_then_close_full())
        assert figures["checkpoint_failures_total"] >= 1
        assert figures["applied_lsn"] == 0, "nothing was checkpointed"
        (disk / "filler").unlink()
        assert asyncio.run(read_head(directory)) == (expected_document(head), head)
