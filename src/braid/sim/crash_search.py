"""Deterministic crash search: from one seed, random writes, checkpoints and segment rolls on
the durable engine's parts over a simulated disk, crashes at random points, reopens, and a
check that nothing acknowledged was lost and nothing lost is reported.

One seed is one exact run (every choice comes from `random.Random(seed)`): a failing seed
replays with `python -m braid.sim.crash_search --seed N --trace`. Each seed first draws its
own configuration and fault mix (swarm testing: segment size, checkpoint cadence, cache
size, document sizes, a disk that fills up, failing syncs and checkpoints), then runs a few
*epochs*: open the store (the engine's open: scan, judge, repair, replay), take random
steps, and stop the machine — at a random disk change inside whatever the code was doing
(`SimDisk.crash_after`: mid-rotation, mid-repair, mid-release, mid-open) or between steps.
The crash keeps a random prefix of each file's unsynced writes, the last one torn at a
random byte (or, on half the seeds, as any subset of its sectors), and a random prefix of
each directory's unsynced entry changes.

The check, after every open: the log ends at or after every lsn acknowledged (its batch
was durable) and every lsn a read returned; each document is exactly what the operations
logged up to that point make of it (no hole, nothing extra: what a crash lost is not
reported present); and while running, after a full disk gave a batch back, each document is
what the operations left make of it. Faults never destroy a durable write (the simulated
disk keeps what was synced): a failure is a bug in braid, or in a `Broken` variant.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from braid.core.document import DocumentLog, check_initialize, check_updates
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp
from braid.errors import DOCUMENT_NOT_FOUND, DOCUMENT_TOO_LARGE, HEAD_SEQ_OFF, BraidError
from braid.model import Key, Update
from braid.sim.disk import SimDisk, SimulatedCrash
from braid.sim.store import Broken, Machine, SimConfig, SimStore
from braid.storage.logfiles import SPARE_BYTES_MIN, is_disk_full

_SPACE = "sim"
# Errors a well-formed random write may meet, and that must leave the log as it was.
_REFUSALS = frozenset({DOCUMENT_NOT_FOUND, DOCUMENT_TOO_LARGE, HEAD_SEQ_OFF})


class CheckFailed(Exception):
    """The store broke a promise (the message says which)."""


@dataclass
class SeedResult:
    seed: int
    failure: str | None
    trace: list[str]
    figures: Counter[str] = field(default_factory=Counter)


def expected_documents(history: dict[int, Op]) -> dict[Key, DocumentLog]:
    """What the logged operations make of each document, applied in lsn order."""
    documents: dict[Key, DocumentLog] = {}
    for lsn in sorted(history):
        op = history[lsn]
        if isinstance(op, InitOp):
            documents[op.key] = DocumentLog([op.update])
        elif isinstance(op, PatchOp):
            documents[op.key].append(op.updates)
        elif isinstance(op, FoldOp):
            documents[op.key].apply_fold(op.fold)
        elif isinstance(op, DeleteOp):
            del documents[op.key]
    return documents


def _shape(log: DocumentLog | None) -> object:
    if log is None:
        return None
    return (list(log.deltas), log.compacted_through, log.compacted_exact)


def _describe(log: DocumentLog | None) -> str:
    if log is None:
        return "no document"
    deltas = ", ".join(f"{u.seq_begin}..{u.seq_end} ({u.request})" for u in log.deltas)
    return f"deltas {deltas}; compacted through {log.compacted_through}"


class _Run:
    """One seed's run: the machine, the store while it is open, and what was promised."""

    def __init__(self, seed: int, broken: Broken | None, tracing: bool) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.broken = broken
        self.tracing = tracing
        self.trace: list[str] = []
        self.figures: Counter[str] = Counter()
        rng = self.rng
        # This seed's configuration and fault mix.
        self.config = SimConfig(
            segment_bytes=rng.choice([SPARE_BYTES_MIN, 6144, 8192, 16384]),
            checkpoint_records=rng.choice([1, 3, 8, 40]),
            cache_bytes=rng.choice([256, 4096, 1 << 20]),
        )
        self.keys = [Key(_SPACE, f"doc-{n}") for n in range(rng.randint(1, 6))]
        self.value_bytes_max = rng.choice([16, 300, 3000])
        self.disk_fills = rng.random() < 0.25
        self.faults = rng.random() < 0.3  # failing syncs and checkpoints
        self.crash_inside = rng.random() < 0.7  # stop at a disk change, not between steps
        capacity = self.config.segment_bytes * rng.randint(2, 4) if self.disk_fills else None
        scattered = rng.random() < 0.5  # torn writes keep any of their sectors
        self.machine = Machine(SimDisk(capacity, scattered_tears=scattered))
        self.store: SimStore | None = None
        # What was promised: every logged operation not (yet) known lost, by lsn; the
        # newest lsn acknowledged; the newest lsn a read returned.
        self.history: dict[int, Op] = {}
        self.acknowledged = 0
        self.read = 0
        self.value = 0

    def note(self, text: Callable[[], str]) -> None:
        if self.tracing:
            self.trace.append(text())

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> None:
        rng = self.rng
        self.note(lambda: f"seed {self.seed}: {self.config}, {len(self.keys)} documents")
        for epoch in range(rng.randint(1, 4)):
            store = self.open()
            countdown = rng.randint(1, 60) if self.crash_inside else None
            self.machine.disk.crash_after(countdown)
            try:
                for _ in range(rng.randint(5, 60)):
                    self.step(store)
                if rng.random() < 0.2:
                    self.close(store)
            except SimulatedCrash as crash:
                self.figures["crashes inside a step"] += 1
                self.note(lambda crash=crash: f"crash: {crash}")  # type: ignore[misc]
            self.crash(f"end of epoch {epoch}")
        self.open()

    def open(self) -> SimStore:
        """Open the store as the engine does, crashing and retrying if the machine stops
        inside the open, then check it against what was promised."""
        for attempt in range(20):
            # The machine may stop inside the open too (mid-repair, mid-checkpoint), but
            # not every time: every third attempt runs to the end.
            if self.crash_inside and attempt % 3 != 2 and self.rng.random() < 0.3:
                self.machine.disk.crash_after(self.rng.randint(1, 10))
            try:
                store = SimStore(self.machine, self.config, self.broken)
                break
            except SimulatedCrash as crash:
                self.note(lambda crash=crash: f"crash inside open: {crash}")  # type: ignore[misc]
                self.figures["crashes inside open"] += 1
                self.crash("inside open")
            except OSError as error:
                if not is_disk_full(error):
                    raise
                self.note(lambda: "open: the disk is full; space is freed")
                self.machine.disk.capacity_bytes = None
            except BraidError as error:
                raise CheckFailed(f"the store does not open: {error}") from None
        else:
            raise CheckFailed("the store did not open in 20 attempts")
        self.machine.disk.crash_after(None)
        self.figures["opens"] += 1
        self.figures["records replayed"] += store.replayed
        self.figures["repairs on open"] += len(store.repairs)
        self.figures["torn tails repaired"] += sum("torn tail" in r for r in store.repairs)
        self.note(
            lambda: (
                f"open: log ends at lsn {store.last_lsn}, applied {store.rules.applied_lsn}, "
                f"replayed {store.replayed}, repairs {store.repairs}"
            )
        )
        self.store = store
        self.check_recovered(store)
        return store

    def crash(self, where: str) -> None:
        if self.store is not None:
            self.figures["segments rotated"] += self.store.rotations
            self.figures["segments released"] += self.store.released
        self.machine.disk.crash(self.rng)
        self.store = None
        self.figures["crashes"] += 1
        self.note(lambda: f"crash ({where})")

    # -- the check --------------------------------------------------------------------------

    def check_recovered(self, store: SimStore) -> None:
        last = store.last_lsn
        if self.acknowledged > last:
            raise CheckFailed(
                f"lsn {self.acknowledged} was acknowledged, but the log ends at lsn {last}"
            )
        if self.read > last:
            raise CheckFailed(f"a read returned lsn {self.read}, but the log ends at lsn {last}")
        lost = [lsn for lsn in self.history if lsn > last]
        for lsn in lost:
            del self.history[lsn]
        self.figures["unacknowledged writes lost"] += len(lost)
        self.compare(store, "after the open")

    def compare(self, store: SimStore, when: str) -> None:
        expected = expected_documents(self.history)
        for key in self.keys:
            try:
                actual: DocumentLog | None = store.documents.readable(key, None)
            except BraidError as error:
                if error.info is not DOCUMENT_NOT_FOUND:
                    raise
                actual = None
            if _shape(actual) != _shape(expected.get(key)):
                raise CheckFailed(
                    f"{key.key} {when}: the store has {_describe(actual)}; "
                    f"the operations logged make {_describe(expected.get(key))}"
                )

    # -- steps ------------------------------------------------------------------------------

    def step(self, store: SimStore) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            self.write(store)
        elif roll < 0.75:
            self.flush(store)
        elif roll < 0.85:
            self.figures["checkpoints"] += store.checkpoint()
            self.note(lambda: f"checkpoint: applied through {store.rules.applied_lsn}")
        elif roll < 0.90:
            store.prepare_spare()
            self.note(lambda: "spare prepared")
        elif roll < 0.95:
            self.read_one(store)
        elif roll < 0.97:
            key = rng.choice(self.keys)
            store.documents.forget(key)
            self.note(lambda: f"forget {key.key}")
        elif self.faults:
            self.fault(store)

    def write(self, store: SimStore) -> None:
        rng = self.rng
        key = rng.choice(self.keys)
        try:
            log: DocumentLog | None = store.documents.readable(key, None)
        except BraidError as error:
            if error.info is not DOCUMENT_NOT_FOUND:
                raise
            log = None
        before = store.last_lsn
        try:
            if log is None:
                update = self.update(1, 1)
                check_initialize(update)
                store.documents.initialize(key, update, store)
            else:
                roll = rng.random()
                if roll < 0.75:
                    head = log.head + (1 if rng.random() < 0.95 else rng.choice([0, 2]))
                    count = rng.randint(1, 3)
                    updates = [self.update(head + n, head + n) for n in range(count)]
                    check_updates(updates)
                    store.documents.patch(key, updates, store)
                elif roll < 0.9 and len(log.deltas) >= 2:
                    index = rng.randrange(1, len(log.deltas))
                    seq = log.deltas[index].seq_end
                    document = DocumentLog(
                        log.deltas[: index + 1], log.compacted_through, log.compacted_exact
                    ).get()
                    fold = log.plan_fold(seq, document.document, rng.randint(0, 2))
                    if fold is None:
                        return
                    store.documents.fold(key, fold, store)
                else:
                    store.documents.delete(key, store)
        except BraidError as error:
            if error.info not in _REFUSALS:
                raise
            refusal = error.name
            if store.last_lsn != before:
                raise CheckFailed(f"a refused write ({refusal}) was logged") from None
            self.figures["writes refused"] += 1
            self.note(lambda: f"write to {key.key} refused: {refusal}")
            return
        lsn, op = store.last_logged()
        self.history[lsn] = op
        self.figures["writes"] += 1
        self.note(lambda: f"{type(op).__name__} {key.key} → lsn {lsn}")

    def update(self, begin: int, end: int) -> Update:
        self.value += 1
        size = self.rng.randint(1, self.value_bytes_max)
        redo = json.dumps({f"f{self.rng.randint(0, 5)}": "v" * size, "n": self.value})
        return Update(begin, end, who="sim", request=f"r{self.value}", redo=redo, undo="{}")

    def flush(self, store: SimStore) -> None:
        try:
            flushed = store.flush()
        except OSError as error:  # fatal for the log: the machine is restarted
            failure = str(error)
            self.figures["log failures"] += 1
            self.note(lambda: f"flush failed, fatal: {failure}")
            raise SimulatedCrash("restarted after the log failed") from None
        if flushed.acknowledged:
            self.acknowledged = max(self.acknowledged, *flushed.acknowledged)
            self.figures["acknowledged"] += len(flushed.acknowledged)
            self.figures["batches"] += 1
            self.note(lambda: f"flush: acknowledged {flushed.acknowledged}")
        if flushed.refused_from is not None:
            refused_from = flushed.refused_from
            for lsn in [lsn for lsn in self.history if lsn >= refused_from]:
                del self.history[lsn]
            self.figures["batches refused (disk full)"] += 1
            self.note(lambda: f"flush: the disk is full; lsn {refused_from} on given back")
            self.compare(store, "after a batch was given back")
            if self.rng.random() < 0.5:
                self.machine.disk.capacity_bytes = None  # the operator freed space

    def read_one(self, store: SimStore) -> None:
        key = self.rng.choice(self.keys)
        try:
            log = store.documents.readable(key, store.batcher.durable_lsn)
        except BraidError as error:
            if error.info is not DOCUMENT_NOT_FOUND:
                raise
            return
        if log is not None:
            lsn = store.documents.cache[key].last_lsn
            self.read = max(self.read, lsn)
            self.note(lambda: f"read {key.key} at lsn {lsn}")

    def fault(self, store: SimStore) -> None:
        disk = self.machine.disk
        if self.rng.random() < 0.5:
            names = disk.list("")
            if names:
                name = self.rng.choice(names)
                disk.fail_next_sync(name)
                self.note(lambda: f"fault: the next sync of {name} fails")
        else:
            store.applied.fail_next_checkpoint()
            self.note(lambda: "fault: the next checkpoint fails")

    def close(self, store: SimStore) -> None:
        """The engine's close: everything written and checkpointed."""
        self.flush(store)
        store.checkpoint()
        self.note(lambda: "closed")


def run_seed(seed: int, broken: Broken | None = None, *, trace: bool = False) -> SeedResult:
    """Run one seed; `failure` says what broke (None: every promise kept)."""
    run = _Run(seed, broken, trace)
    failure: str | None = None
    try:
        run.run()
    except CheckFailed as error:
        failure = str(error)
    except Exception:  # any other exception out of the store's code is a bug too
        failure = "unexpected exception:\n" + traceback.format_exc()
    return SeedResult(seed, failure, run.trace, run.figures)


def search(
    seeds: range, broken: Broken | None = None, *, stop_at_first: bool = True
) -> tuple[list[SeedResult], Counter[str]]:
    """Run `seeds`; the failing results, and the figures summed over every seed."""
    failures = []
    figures: Counter[str] = Counter()
    for seed in seeds:
        result = run_seed(seed, broken)
        figures.update(result.figures)
        figures["seeds"] += 1
        if result.failure is not None:
            failures.append(result)
            if stop_at_first:
                break
    return failures, figures


def describe_failure(result: SeedResult, broken: Broken | None = None) -> str:
    """A failing seed's report: what broke, the run's last steps, how to replay it."""
    traced = run_seed(result.seed, broken, trace=True)
    variant = f" --broken {broken.value}" if broken is not None else ""
    steps = "\n".join(f"  {line}" for line in traced.trace[-40:])
    return (
        f"seed {result.seed} failed: {result.failure}\n"
        f"last steps:\n{steps}\n"
        f"replay: python -m braid.sim.crash_search --seed {result.seed}{variant} --trace"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m braid.sim.crash_search",
        description="Run the deterministic crash search over a range of seeds.",
    )
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--seeds", type=int, default=2000, help="how many seeds (default 2000)")
    parser.add_argument("--broken", choices=[variant.value for variant in Broken])
    parser.add_argument("--trace", action="store_true", help="print every step of --seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.getLogger("braid.store").setLevel(logging.ERROR)  # spares made again, by design
    args = build_parser().parse_args(argv)
    broken = Broken(args.broken) if args.broken else None
    if args.seed is not None:
        result = run_seed(args.seed, broken, trace=args.trace)
        if args.trace:
            print("\n".join(result.trace))
        print(f"seed {args.seed}: {'ok' if result.failure is None else result.failure}")
        return 0 if result.failure is None else 1
    started = time.perf_counter()
    seeds = range(args.first, args.first + args.seeds)
    failures, figures = search(seeds, broken)
    seconds = time.perf_counter() - started
    print(
        f"{figures['seeds']} seeds in {seconds:.1f} s: "
        + ", ".join(f"{name} {count}" for name, count in sorted(figures.items()) if name != "seeds")
    )
    if failures:
        print(describe_failure(failures[0], broken))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
