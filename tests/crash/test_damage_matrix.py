"""The damage matrix (issue 7 acceptance): every file of a store × every kind of damage.

One pristine store is built per module with the API (64 KiB segments): its applied state
holds the documents checkpointed before the last checkpoint (whose log segments were
released), and its log holds, across four segments (three sealed, the newest half full),
writes after that checkpoint that exist only in the log (the store is closed without a
checkpoint). Every acknowledged document's final text and seq are recorded; each case
copies the pristine store, damages one file, and then checks:

- `braid verify PATH --json`, a real CLI process, changes no file (every file hashed before
  and after), exits with the status its verdict stands for, and prints its verdict;
- a read-write `braid.open` (same config) and `verify` agree: verify says `opens` exactly
  when the open succeeds, and when it does not, the open's error code is verify's `code`;
- when the open succeeds, every acknowledged document reads back with exactly its text and
  seq, or its read fails with APPLIED_STATE_CORRUPT (3010) and verify listed exactly that
  document as unreadable (and every listed document does fail so); when verify said clean
  or repairable, every document reads back exactly, the inventory lists exactly the
  acknowledged documents at their seqs, and after that open (which repairs what verify
  called repairable) verify says clean;
- nothing raised by open, get, inventory or close is anything but `BraidError`.

The expectation of every case comes from these rules, not from a table of outcomes; a few
outcomes that are certain are asserted besides: removing, renaming or truncating any
segment, or changing a byte of its (checksummed) header, is refused with WAL_CORRUPT
(3001), so is removing or renaming the applied state (the log no longer starts at lsn 1);
damage inside an applied state that is still there is never blamed on the (whole) log
with WAL_CORRUPT; and whatever happens to `LOCK` the store is clean (the lock is a `flock`
on the directory; `LOCK` only tells people who holds it).

Files: the oldest, a middle and the newest segment, `wal/spare.tmp`, `applied.sqlite3`,
`LOCK`. Damages: delete; rename (to `NAME.moved`); truncate to 0, to the header (64 bytes
of a segment, SQLite's 100, all of a tiny `LOCK`) and to half; flip the low bit of a byte
in the header (a segment's first_lsn field, SQLite's page size, the first byte of `LOCK`
and the spare) and in the data (the middle of the payload of the segment's newest record,
found with `analyze_log`; the middle of a delta stored in the applied state, found by its
unique text; the middle byte of the spare and of `LOCK`); chmod 000; replaced by a
directory holding a file. The applied state's data flip comes twice: in a document only
the applied state holds (`applied-flip-data`) and in one the log tail patches further
(`applied-flip-data-tail`, so opening must replay onto the damaged document).

Permissions: root ignores file modes, so when the tests run as root the chmod 000 cases run
verify and the open+reads (`open_and_read` below, the same function the other cases run
in-process, imported from this file) in child processes whose capability bounding set lacks
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (dropped with prctl before exec), so root is held
to the file modes like any user; each such case first proves that its child cannot read the
damaged file. (Running them as user nobody is not possible here: the interpreter lives
under a directory that nobody cannot enter.) All 55 cases run in CI; the whole matrix takes
about 30 s.
"""

from __future__ import annotations

import asyncio
import ctypes
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import braid
from braid import errors
from braid.core.wal.ops import decode_op
from braid.core.wal.record import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, RecordType
from braid.storage.applied import AppliedState
from braid.storage.wal import analyze_log

SPACE = "damage"
SEGMENT_BYTES = 1 << 16
CONFIG = braid.DurableConfig(
    segment_bytes=SEGMENT_BYTES,
    checkpoint_records=1_000_000,  # checkpoints happen only where the fixture asks for one
    checkpoint_interval_seconds=3600.0,
    checkpoint_on_close=False,  # the tail written after the last checkpoint stays log-only
)
CHECKPOINTED_WRITES = 100  # ~2 KiB each: about three segments, released by the checkpoint
TAIL_WRITES = 130  # log only: the rest of one segment, two more, and half of a fourth
FILLER = "abcdefghij" * 150
# Checkpointed deltas damaged in place in the applied state: one of a document the log tail
# does not touch, and one of a document it patches further.
MARKERS = {"flip-data": ("early-0", 5), "flip-data-tail": ("both-0", 3)}
SQLITE_HEADER_BYTES = 100
SQLITE_PAGE_SIZE_OFFSET = 16
SEGMENT_FIRST_LSN_OFFSET = 24
CLI_TIMEOUT_SECONDS = 60
CHILD_TIMEOUT_SECONDS = 60

WAL_CORRUPT = errors.WAL_CORRUPT.code
APPLIED_STATE_CORRUPT = errors.APPLIED_STATE_CORRUPT.code
EXIT_BY_VERDICT = {"clean": 0, "repairable": 1, "damaged": 2}

TARGETS = ["seg-oldest", "seg-middle", "seg-newest", "spare", "applied", "lock"]
DAMAGES = [
    "delete",
    "rename",
    "truncate-0",
    "truncate-header",
    "truncate-half",
    "flip-header",
    "flip-data",
    "chmod-000",
    "directory",
]
CASES = [f"{target}-{damage}" for target in TARGETS for damage in DAMAGES]
CASES.insert(CASES.index("applied-flip-data") + 1, "applied-flip-data-tail")

# Linux prctl(2): drop a capability from the bounding set (root's capabilities after exec).
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2

# A child process: imports this file and prints open_and_read's result as JSON.
CHILD_SCRIPT = """
import asyncio, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("damage_matrix_child", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
keys = json.loads(sys.argv[3])
print(json.dumps(asyncio.run(module.open_and_read(sys.argv[2], keys, sys.argv[4]))))
"""


# -- the pristine store ---------------------------------------------------------------------


def update(name: str, seq: int) -> braid.Update:
    """The delta at `seq` of document `name`: one new member, its text unique in the store."""
    redo = json.dumps({f"f{seq}": f"{name}:{seq}:{FILLER}"})
    return braid.Update(seq_begin=seq, seq_end=seq, redo=redo, undo=json.dumps({f"f{seq}": None}))


def marker(kind: str) -> bytes:
    """Bytes of a marker delta's text, as stored (in the applied state only: the segments
    that held it were released)."""
    name, seq = MARKERS[kind]
    return f"{name}:{seq}:{FILLER[:40]}".encode()


@dataclass(frozen=True)
class Pristine:
    path: Path
    documents: dict[str, tuple[str, int]]  # key -> (document text, seq) as acknowledged
    segments: list[str]  # segment file names, oldest first
    applied_lsn: int


def scratch_root() -> Path:
    """Where case stores live: /dev/shm when usable (fast), world-traversable either way."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK) else None
    root = Path(tempfile.mkdtemp(prefix="braid-damage-", dir=base))
    root.chmod(0o755)
    return root


async def build_pristine(path: Path) -> Pristine:
    heads: dict[str, int] = {}
    members: dict[str, dict[str, str]] = {}
    store = await braid.open(path, CONFIG)
    try:

        async def write(name: str) -> None:
            key = braid.Key(SPACE, name)
            seq = heads.get(name, 0) + 1
            change = update(name, seq)
            if seq == 1:
                await store.initialize(key, change)
            else:
                await store.patch(key, [change])
            heads[name] = seq
            members.setdefault(name, {}).update(json.loads(change.redo))

        for i in range(CHECKPOINTED_WRITES):  # early-*: checkpointed only; both-*: both
            await write(f"early-{i % 3}" if i % 2 else f"both-{i % 4 // 2}")
        await store.inventory()  # checkpoints everything so far, then releases segments
        for i in range(TAIL_WRITES):  # late-*: log only
            await write(f"both-{i % 4 // 2}" if i % 2 else f"late-{i % 3}")
        documents: dict[str, tuple[str, int]] = {}
        for name, seq in heads.items():
            change = await store.get(braid.Key(SPACE, name))
            assert change.seq == seq
            assert json.loads(change.document) == members[name]
            documents[name] = (change.document, change.seq)
    finally:
        await store.close()
    analysis = analyze_log(path / "wal")
    assert analysis.verdict == "clean"
    segments = [state.path.name for state in analysis.segments]
    state = AppliedState(path / "applied.sqlite3", read_only=True)
    try:
        applied_lsn = state.applied_lsn()
    finally:
        state.close()
    # The shape the matrix relies on: segments were released (the log no longer starts at
    # lsn 1), at least four remain and all but the newest are sealed, the oldest holds
    # both checkpointed and log-only records, and the later segments only log-only ones.
    assert analysis.segments[0].header is not None
    assert analysis.segments[0].header.first_lsn > 1
    assert len(segments) >= 4
    assert all(state.sealed for state in analysis.segments[:-1])
    assert not analysis.segments[-1].sealed
    oldest = [r.lsn for r in analysis.records if r.lsn < _first_lsn(analysis, 1)]
    assert min(oldest) <= applied_lsn < max(oldest)
    assert analysis.segments[-1].end < SEGMENT_BYTES * 3 // 4  # the newest has room left
    assert (path / "wal" / "spare.tmp").stat().st_size == SEGMENT_BYTES
    applied = (path / "applied.sqlite3").read_bytes()
    assert [applied.count(marker(kind)) for kind in MARKERS] == [1] * len(MARKERS)
    tail = {
        decode_op(record.type, record.payload).key.key
        for record in analysis.records
        if record.lsn > applied_lsn and record.type is not RecordType.COMMIT
    }
    assert MARKERS["flip-data"][0] not in tail and MARKERS["flip-data-tail"][0] in tail
    assert (path / "LOCK").stat().st_size > 0
    assert not [p for p in path.iterdir() if p.name.startswith("applied.sqlite3-")]
    return Pristine(path, documents, segments, applied_lsn)


def _first_lsn(analysis: Any, position: int) -> int:
    header = analysis.segments[position].header
    assert header is not None
    return int(header.first_lsn)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    path = scratch_root()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pristine(root: Path) -> Pristine:
    built = asyncio.run(build_pristine(root / "pristine"))
    verdict, status, _ = run_verify(built.path)
    assert (status, verdict["verdict"], verdict["unreadable"]) == (0, "clean", [])
    return built


# -- damage ---------------------------------------------------------------------------------


def target_path(pristine: Pristine, store: Path, target: str) -> Path:
    segments = pristine.segments
    return {
        "seg-oldest": store / "wal" / segments[0],
        "seg-middle": store / "wal" / segments[len(segments) // 2],
        "seg-newest": store / "wal" / segments[-1],
        "spare": store / "wal" / "spare.tmp",
        "applied": store / "applied.sqlite3",
        "lock": store / "LOCK",
    }[target]


def header_bytes(target: str, path: Path) -> int:
    if target.startswith("seg-") or target == "spare":
        return SEGMENT_HEADER_SIZE
    if target == "applied":
        return SQLITE_HEADER_BYTES
    return path.stat().st_size  # LOCK is a line of text: all of it


def header_offset(target: str) -> int:
    if target.startswith("seg-"):
        return SEGMENT_FIRST_LSN_OFFSET
    if target == "applied":
        return SQLITE_PAGE_SIZE_OFFSET
    return 0


def data_offset(target: str, kind: str, path: Path) -> int:
    if target.startswith("seg-"):
        analysis = analyze_log(path.parent)
        (state,) = [s for s in analysis.segments if s.path.name == path.name]
        records = [
            r
            for r in analysis.records
            if state.header is not None
            and r.lsn >= state.header.first_lsn
            and r.lsn < state.header.first_lsn + state.records
            and r.type not in (RecordType.COMMIT, RecordType.SEAL)
        ]
        newest = records[-1]
        return newest.offset + RECORD_HEADER_SIZE + len(newest.payload) // 2
    data = path.read_bytes()
    if target == "applied":
        at = data.index(marker(kind))
        return at + len(marker(kind)) // 2
    return len(data) // 2


def flip(path: Path, offset: int) -> None:
    """Flip the lowest bit of one byte: the subtlest damage (a letter of a stored text stays
    a letter, valid UTF-8 and valid JSON, so only a checksum can tell)."""
    with open(path, "r+b") as handle:
        handle.seek(offset)
        (byte,) = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x01]))


def damage(pristine: Pristine, store: Path, target: str, kind: str) -> Path:
    """Apply one damage to one file of `store`; the path damaged."""
    path = target_path(pristine, store, target)
    assert path.is_file()
    size = path.stat().st_size
    if kind == "delete":
        path.unlink()
    elif kind == "rename":
        path.rename(path.with_name(path.name + ".moved"))
    elif kind == "truncate-0":
        os.truncate(path, 0)
    elif kind == "truncate-header":
        os.truncate(path, header_bytes(target, path))
    elif kind == "truncate-half":
        os.truncate(path, size // 2)
    elif kind == "flip-header":
        flip(path, header_offset(target))
    elif kind in ("flip-data", "flip-data-tail"):
        flip(path, data_offset(target, kind, path))
    elif kind == "chmod-000":
        path.chmod(0)
    elif kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "inside").write_text("a file, so the directory cannot be removed as one\n")
    else:
        raise AssertionError(kind)
    return path


# -- running verify and the open ------------------------------------------------------------


def _drop_file_capabilities() -> None:
    """preexec_fn: root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH after exec, so file
    modes hold for it as for anyone."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _preexec(unprivileged: bool) -> Callable[[], None] | None:
    return _drop_file_capabilities if unprivileged and os.geteuid() == 0 else None


def run_verify(store: Path, *, unprivileged: bool = False) -> tuple[dict[str, Any], int, str]:
    """`braid verify STORE --json` in a real process: its JSON, exit status and stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "braid.cli.main", "verify", str(store), "--json"],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        preexec_fn=_preexec(unprivileged),  # no threads run here
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in EXIT_BY_VERDICT.values(), (result.returncode, result.stderr)
    verdict = json.loads(result.stdout)
    assert result.returncode == EXIT_BY_VERDICT[verdict["verdict"]], verdict
    return verdict, result.returncode, result.stderr


async def open_and_read(store: str, keys: list[str], probe: str = "") -> dict[str, Any]:
    """Open `store` read-write (CONFIG), read every key, list, close; as JSON-able data.

    `probe`: a file whose readability is reported (the chmod 000 cases prove with it that
    file modes hold for this process). Anything but BraidError escaping is `raised`.
    """
    result: dict[str, Any] = {
        "opened": False,
        "code": None,
        "detail": None,
        "documents": {},
        "inventory": None,
        "close": None,
        "raised": None,
        "probe_denied": None,
    }
    if probe:
        try:
            with open(probe, "rb") as handle:
                handle.read(1)
            result["probe_denied"] = False
        except PermissionError:
            result["probe_denied"] = True
    try:
        try:
            opened = await braid.open(store, CONFIG)
        except braid.BraidError as error:
            result["code"], result["detail"] = error.code, error.detail
            return result
        result["opened"] = True
        try:
            for name in keys:
                try:
                    change = await opened.get(braid.Key(SPACE, name))
                    result["documents"][name] = [change.document, change.seq]
                except braid.BraidError as error:
                    result["documents"][name] = {"code": error.code, "detail": error.detail}
            try:
                listed = await opened.inventory()
                result["inventory"] = {info.key.key: info.seq for info in listed}
            except braid.BraidError as error:
                result["inventory"] = {"code": error.code, "detail": error.detail}
        finally:
            try:
                await opened.close()
            except braid.BraidError as error:
                result["close"] = {"code": error.code, "detail": error.detail}
    except Exception as error:  # what the store must never let out
        result["raised"] = f"{type(error).__name__}: {error}"
    return result


def open_and_read_in_child(store: Path, keys: list[str], probe: Path) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD_SCRIPT, __file__, str(store), json.dumps(keys), str(probe)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        preexec_fn=_preexec(True),  # no threads run here
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result


def tree_state(root: Path) -> dict[str, tuple[str, int, str | None]]:
    """Every path under `root`: its kind, mode and (for a file) content hash."""
    state: dict[str, tuple[str, int, str | None]] = {}
    for directory, subdirectories, files in os.walk(root):
        for name in subdirectories + files:
            path = Path(directory) / name
            info = path.lstat()
            digest = None
            if stat.S_ISREG(info.st_mode):
                try:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                except PermissionError:  # not root: a chmod 000 file; its mode still counts
                    digest = "unreadable"
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            state[str(path.relative_to(root))] = (kind, stat.S_IMODE(info.st_mode), digest)
    return state


# -- the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_open_and_verify_agree_and_nothing_acknowledged_is_silently_lost(
    case: str, pristine: Pristine, root: Path
) -> None:
    target, kind = next((t, case[len(t) + 1 :]) for t in TARGETS if case.startswith(t + "-"))
    store = root / case
    shutil.copytree(pristine.path, store)
    try:
        damaged = damage(pristine, store, target, kind)
        check_case(pristine, store, target, kind, damaged)
    finally:
        for directory, _, _ in os.walk(store):  # let rmtree in when not root
            Path(directory).chmod(0o755)
        shutil.rmtree(store, ignore_errors=True)


def check_case(pristine: Pristine, store: Path, target: str, kind: str, damaged: Path) -> None:
    keys = sorted(pristine.documents)
    unprivileged = kind == "chmod-000"

    before = tree_state(store)
    verdict, _, _ = run_verify(store, unprivileged=unprivileged)
    assert tree_state(store) == before, "verify changed the store"
    context = f"verify said {json.dumps(verdict)}"

    if unprivileged:
        outcome = open_and_read_in_child(store, keys, damaged)
        assert outcome["probe_denied"] is True, "the child could read a chmod 000 file"
    else:
        outcome = asyncio.run(open_and_read(str(store), keys))
    context += f"; open gave {json.dumps(outcome)[:2000]}"

    assert outcome["raised"] is None, context
    assert verdict["opens"] is outcome["opened"], context
    if not outcome["opened"]:
        assert verdict["verdict"] == "damaged", context
        assert verdict["code"] == outcome["code"], context
        assert outcome["code"] is not None
    else:
        unreadable = {entry["document"] for entry in verdict["unreadable"]}
        failed = set()
        for name in keys:
            read = outcome["documents"][name]
            if read == list(pristine.documents[name]):
                continue
            assert isinstance(read, dict), f"{name} reads back changed; {context}"
            assert read["code"] == APPLIED_STATE_CORRUPT, f"{name}: {context}"
            failed.add(f"{SPACE}/{name}")
        # Every listed document is one that cannot be read, and every one that cannot be
        # read is listed: damage reported, never silently served.
        assert unreadable == failed, context
        assert outcome["close"] is None, context
        if verdict["verdict"] == "damaged":
            assert verdict["code"] == APPLIED_STATE_CORRUPT and unreadable, context
        else:
            assert not failed, context
            expected = {name: seq for name, (_, seq) in pristine.documents.items()}
            assert outcome["inventory"] == expected, context
            after, _, _ = run_verify(store, unprivileged=unprivileged)
            assert after["verdict"] == "clean", f"after the open: {json.dumps(after)}; {context}"

    # The outcomes that are certain.
    if target.startswith("seg-") and kind in (
        "delete",
        "rename",
        "truncate-0",
        "truncate-header",
        "truncate-half",
        "flip-header",
    ):
        assert (outcome["opened"], outcome["code"]) == (False, WAL_CORRUPT), context
    if target == "applied" and kind in ("delete", "rename"):
        assert (outcome["opened"], outcome["code"]) == (False, WAL_CORRUPT), context
    if target == "applied" and kind not in ("delete", "rename", "truncate-0"):
        # The log is whole and the applied state still exists (an empty one counts as
        # missing): what is wrong is the applied state, and the code must say so, not
        # blame the log.
        assert outcome["code"] != WAL_CORRUPT, context
    if target == "lock":
        assert verdict["verdict"] == "clean" and outcome["opened"], context
