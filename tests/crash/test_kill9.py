"""Real-process crash tests: a writer process is killed with SIGKILL, and every write it
had acknowledged must be in the store, with exactly its content, when the parent reopens it.

The child (`writer_child.py`, run with `sys.executable`) opens a store with `braid.open`,
runs concurrent writers on several documents, and prints `ack DOC SEQ` after each
acknowledged write. The parent reads those lines, kills the child at a seeded random
moment (after a random number of acknowledgements, after a random delay, or at a fault
hook: inside a checkpoint, or right after a log segment was created), drains the lines the
child printed before it died, reopens the store and checks (`verify`):

- every document with an acknowledged write exists, its head seq is at least the last
  acknowledged seq, and it holds one delta per seq (no gap, no duplicate);
- the head document is exactly the merge of the deterministic redos 1..head, so writes
  that were not acknowledged may be present, but only whole and correct;
- rewinding (compute REWIND) from the head to acknowledged seqs (all of them when few, a
  seeded sample otherwise, always the first and the last) gives exactly the document at
  that seq, so every acknowledged delta's content is there, undo included.

Every loop is bounded in count and time; the child exits by itself if it is not killed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import braid
from tests.support.json_model import merge_patch

CHILD_PATH = Path(__file__).with_name("writer_child.py")
SEED = 90210
ROUNDS = 5
DOCUMENTS = 6
WRITERS = 3
SEGMENT_BYTES = 1 << 16  # small segments: rotations (and releases) happen within a round
CHILD_SECONDS = 12.0  # the child stops by itself after this long
ROUND_TIMEOUT_SECONDS = 30.0  # the parent gives up on a round after this long
REWIND_CHECKS_MAX = 40  # rewinds verified per document and round


def load_child_module() -> ModuleType:
    """writer_child.py by path: its content functions are the parent's oracle too."""
    spec = importlib.util.spec_from_file_location("braid_crash_writer_child", CHILD_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


child_module = load_child_module()


@dataclass
class Round:
    """One child process: its output so far, parsed."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    acks: dict[int, list[int]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    pending: bytes = b""

    @property
    def ack_count(self) -> int:
        return sum(len(seqs) for seqs in self.acks.values())

    def take(self, data: bytes) -> None:
        """Parse complete lines; a line cut short by the kill is not an acknowledgement."""
        lines = (self.pending + data).split(b"\n")
        self.pending = lines.pop()
        for raw in lines:
            line = raw.decode()
            if line.startswith("ack "):
                _, document, seq = line.split()
                self.acks.setdefault(int(document), []).append(int(seq))
            else:
                self.events.append(line)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]


def start_child(directory: Path, log_directory: Path, *options: str) -> Round:
    stderr_path = log_directory / f"child-{time.monotonic_ns()}.stderr"
    command = [
        sys.executable,
        str(CHILD_PATH),
        str(directory),
        f"--documents={DOCUMENTS}",
        f"--writers={WRITERS}",
        f"--seconds={CHILD_SECONDS}",
        f"--segment-bytes={SEGMENT_BYTES}",
        *options,
    ]
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    return Round(process, stderr_path)


def read_until(round_: Round, done: Any, deadline: float) -> None:
    """Read the child's lines until done(round_) holds; fails on EOF or at the deadline."""
    assert round_.process.stdout is not None
    descriptor = round_.process.stdout.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(descriptor, selectors.EVENT_READ)
        while not done(round_):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"kill point not reached in time; child stderr:\n{round_.stderr()}")
            if not selector.select(timeout=min(remaining, 1.0)):
                continue
            data = os.read(descriptor, 1 << 16)
            if not data:
                round_.process.wait(timeout=10)
                pytest.fail(
                    f"the child exited ({round_.process.returncode}) before the kill point; "
                    f"events {round_.events}; stderr:\n{round_.stderr()}"
                )
            round_.take(data)


def kill(round_: Round) -> None:
    """SIGKILL the child, then read what it printed before it died (acknowledged too)."""
    round_.process.send_signal(signal.SIGKILL)
    round_.process.wait(timeout=10)
    assert round_.process.returncode == -signal.SIGKILL, round_.stderr()
    assert round_.process.stdout is not None
    round_.take(round_.process.stdout.read())
    round_.process.stdout.close()


def run_round(
    directory: Path, log_directory: Path, rng: random.Random, *options: str, stall: str = ""
) -> Round:
    """Start a child and kill it: at a stall hook when `stall` names one, else after a
    random number of acknowledgements or a random delay after it is ready."""
    deadline = time.monotonic() + ROUND_TIMEOUT_SECONDS
    if stall:
        after = rng.randint(20, 300)
        options = (*options, f"--stall-at={stall}", f"--stall-after-acks={after}")
    round_ = start_child(directory, log_directory, *options)
    try:
        read_until(round_, lambda r: "ready" in r.events, deadline)
        if stall:
            read_until(round_, lambda r: f"stall {stall}" in r.events, deadline)
        elif rng.random() < 0.5:
            acks = rng.randint(1, 400)
            read_until(round_, lambda r: r.ack_count >= acks, deadline)
        else:
            until = time.monotonic() + rng.uniform(0.02, 0.8)
            read_until(round_, lambda r: time.monotonic() >= until, deadline)
    except BaseException:
        round_.process.kill()
        round_.process.wait(timeout=10)
        raise
    kill(round_)
    return round_


def config(checkpoint_records: int) -> braid.DurableConfig:
    return braid.DurableConfig(segment_bytes=SEGMENT_BYTES, checkpoint_records=checkpoint_records)


async def verify(
    directory: Path,
    acked: dict[int, list[int]],
    durable_heads: dict[int, int],
    rng: random.Random,
    checkpoint_records: int = 1 << 16,
) -> dict[int, int]:
    """Reopen the store and check every acknowledged write (see the module docstring);
    `durable_heads` are heads a previous verify saw, which must not shrink either.
    Returns each document's head."""
    heads: dict[int, int] = {}
    async with braid.open(directory, config(checkpoint_records)) as store:
        for document in range(DOCUMENTS):
            floor = max([*acked.get(document, []), durable_heads.get(document, 0)], default=0)
            try:
                change = await store.get(child_module.key(document))
            except braid.BraidError as error:
                assert error.name == "DOCUMENT_NOT_FOUND", error
                assert floor == 0, f"doc-{document} acknowledged through {floor} is missing"
                continue
            assert change.seq >= floor, f"doc-{document} at {change.seq}, acked {floor}"
            assert change.reads == change.seq, "one delta per seq, no gap, no duplicate"
            states = child_module.history(document, change.seq)
            assert json.loads(change.document) == states[change.seq]
            targets = rewind_targets(acked.get(document, []), rng)
            for seq in targets:
                rewind = await store.compute(child_module.key(document), braid.REWIND, seq)
                assert rewind.seq == seq
                rewound = merge_patch(states[change.seq], json.loads(rewind.document))
                assert rewound == states[seq], f"doc-{document} rewound to {seq}"
            heads[document] = change.seq
    return heads


def rewind_targets(seqs: list[int], rng: random.Random) -> list[int]:
    """Acknowledged seqs to rewind to: all when few, else the first, the last and a
    seeded sample (rewinding costs a pass over the newer deltas)."""
    if len(seqs) <= REWIND_CHECKS_MAX:
        return sorted(seqs)
    sample = rng.sample(seqs, REWIND_CHECKS_MAX - 2)
    return sorted({min(seqs), max(seqs), *sample})


def merged(*ack_maps: dict[int, list[int]]) -> dict[int, list[int]]:
    result: dict[int, list[int]] = {}
    for acks in ack_maps:
        for document, seqs in acks.items():
            result.setdefault(document, []).extend(seqs)
    return result


# -- the tests -------------------------------------------------------------------------------


async def test_kill9_at_random_points_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Five rounds, each on a fresh store: SIGKILL after a random number of acks or a
    random delay (seeded); on reopen every acknowledged seq is there with exactly its
    content, and the head is at least the last acknowledged seq."""
    rng = random.Random(SEED)
    total_acks = 0
    for number in range(ROUNDS):
        directory = tmp_path / f"store-{number}"
        round_ = await asyncio.to_thread(run_round, directory, tmp_path, rng)
        await verify(directory, round_.acks, {}, rng)
        total_acks += round_.ack_count
    assert total_acks > ROUNDS, "the rounds must acknowledge writes before the kill"


@pytest.mark.parametrize("stall", ["checkpoint-transaction", "checkpoint-committed"])
async def test_kill9_during_a_checkpoint_loses_no_acknowledged_write(
    tmp_path: Path, stall: str
) -> None:
    """With checkpoints every 32 records, SIGKILL lands inside a checkpoint's SQLite
    transaction (before its commit) or just after the commit and before log segments are
    released: recovery must neither lose nor re-apply operations."""
    rng = random.Random(f"{SEED}-{stall}")
    directory = tmp_path / "store"
    options = ("--checkpoint-records=32",)
    round_ = await asyncio.to_thread(run_round, directory, tmp_path, rng, *options, stall=stall)
    assert round_.ack_count >= 20
    await verify(directory, round_.acks, {}, rng, checkpoint_records=32)


async def test_kill9_while_checkpoints_run_often(tmp_path: Path) -> None:
    """With checkpoints every 8 records (so one is nearly always running or about to,
    and log segments are released often), random SIGKILLs lose no acknowledged write."""
    rng = random.Random(f"{SEED}-often")
    for number in range(2):
        directory = tmp_path / f"store-{number}"
        round_ = await asyncio.to_thread(
            run_round, directory, tmp_path, rng, "--checkpoint-records=8"
        )
        await verify(directory, round_.acks, {}, rng, checkpoint_records=8)


async def test_kill9_reopen_cycles_on_one_directory(tmp_path: Path) -> None:
    """Five kill/reopen cycles on the same store, each child resuming from the heads it
    finds: the acknowledged writes (and everything a previous reopen recovered) of all
    cycles stay intact. One cycle is killed right after a log segment was created and
    before its first batch was written, and one inside a checkpoint, so the next cycle
    writes on top of exactly that state."""
    rng = random.Random(f"{SEED}-cycles")
    directory = tmp_path / "store"
    stalls = ["", "segment-rotated", "", "checkpoint-transaction", ""]
    acked: dict[int, list[int]] = {}
    heads: dict[int, int] = {}
    for stall in stalls:
        round_ = await asyncio.to_thread(
            run_round, directory, tmp_path, rng, "--checkpoint-records=64", stall=stall
        )
        acked = merged(acked, round_.acks)
        heads = await verify(directory, acked, heads, rng, checkpoint_records=64)
    assert len(heads) == DOCUMENTS
    assert sum(heads.values()) > len(stalls) * DOCUMENTS


def test_child_exits_by_itself_when_not_killed(tmp_path: Path) -> None:
    """The child is bounded: left alone it stops after --seconds, closes the store and
    exits 0, so a failing parent never leaves writers running."""
    round_ = start_child(tmp_path / "store", tmp_path, "--seconds=0.3")
    assert round_.process.stdout is not None
    output, _ = round_.process.communicate(timeout=30)
    round_.take(output)
    assert round_.process.returncode == 0, round_.stderr()
    assert round_.events[0] == "ready"
    assert round_.events[-1] == "done"
    assert round_.ack_count >= DOCUMENTS
