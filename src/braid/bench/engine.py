"""`braid bench engine`: acknowledged patches/s and CPU per patch of the durable engine
against SQLite.

The workload: W concurrent writers, each the single owner of one document, each patching
its document with 256-byte deltas one at a time (a patch is acknowledged only once durable).
For W in 1, 16, 64 it measures, in the same run and on the same disk:

- the raw fsync floor: pwrite of 4 KiB into a preallocated file + fdatasync, the same I/O a
  one-record batch costs the log;
- braid's durable engine (`braid.open`, WAL with group commit);
- SQLite doing the same work as well as SQLite allows: the same API checks in the event loop
  (update validation and JSON parsing, head-seq check), WAL journal, `synchronous=FULL`, one
  writer thread that takes every pending patch and commits them in one transaction
  (`executemany`), the same group commit braid does.

CPU per op is the process's user+sys CPU time (every thread: the event loop, the engine's or
SQLite's writer thread, the checkpoints, and the kernel work they ask for) from the first
timed patch until the store is closed (so braid's checkpoint of what the run left, and
SQLite's in its close, count), over the patches acknowledged: on cores shared with other
work it drifts far less than ops/s does.

Each (system, W) is run `--runs` times, alternating the systems so drift hits both; figures
are medians over runs. Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import braid
from braid.bench.common import percentile, run_and_report, run_loop
from braid.core.document import check_updates
from braid.errors import HEAD_SEQ_OFF, BraidError
from braid.model import Key, Update

DELTA_BYTES = 256
# A writer moves to a new document after this many deltas: a document holds at most
# limits.document_bytes_max of retained deltas (~350 bytes each here) and the benchmark
# measures patches, not compaction. One initialize per 2,000 patches, not timed.
DELTAS_PER_DOCUMENT = 2_000
WRITER_COUNTS = (1, 16, 64)


def make_delta(seq: int) -> Update:
    """A 256-byte redo (and its undo) whose content is a function of seq."""
    filler = "x" * (DELTA_BYTES - 21)
    redo = f'{{"s":{seq:>8},"v":"{filler}"}}'
    assert len(redo) == DELTA_BYTES, len(redo)
    return Update(seq, seq, who="bench", redo=redo, undo='{"s":null,"v":null}')


@dataclass
class RunResult:
    system: str
    writers: int
    ops: int
    seconds: float
    ops_per_second: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_op: float


@dataclass
class Summary:
    system: str
    writers: int
    runs: list[RunResult] = field(default_factory=list)

    def median(self, attribute: str) -> float:
        return float(statistics.median(float(getattr(run, attribute)) for run in self.runs))


# -- the fsync floor ---------------------------------------------------------------------------


def measure_fsync(directory: Path, samples: int = 200) -> tuple[float, float]:
    """p50 and p99 (ms) of pwrite(4 KiB) + fdatasync into a preallocated, zero-filled file."""
    latencies = fsync_samples(directory, samples)
    return percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000


def fsync_samples(directory: Path, samples: int = 200) -> list[float]:
    """Seconds of each pwrite(4 KiB) + fdatasync into a preallocated, zero-filled file."""
    path = directory / "fsync-probe"
    size = samples * 4096
    with open(path, "wb") as handle:
        handle.write(bytes(size))
        handle.flush()
        os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDWR)
    block = b"f" * 4096
    latencies = []
    try:
        for index in range(samples):
            start = time.perf_counter()
            os.pwrite(fd, block, index * 4096)
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return latencies


# -- the shared driver ---------------------------------------------------------------------------

PatchFn = Callable[[Key, list[Update]], Awaitable[None]]
StartFn = Callable[[Key], Awaitable[None]]  # creates a document at seq 1


async def drive(
    patch: PatchFn, start_document: StartFn, keys: list[Key], seconds: float
) -> tuple[int, float, list[float]]:
    """Each key's writer patches until the time is up (moving to a fresh document every
    DELTAS_PER_DOCUMENT deltas); returns ops, elapsed, latencies."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    clock = time.perf_counter

    async def writer(first: Key) -> None:
        key = first
        for generation in range(1, 1_000_000):
            await writer_document(key)
            if clock() >= deadline:
                return
            key = Key(first.space, f"{first.key}-{generation}")
            await start_document(key)

    async def writer_document(key: Key) -> None:
        seq = 2
        while clock() < deadline and seq <= DELTAS_PER_DOCUMENT:
            update = [make_delta(seq)]
            start = clock()
            await patch(key, update)
            latencies.append(clock() - start)
            seq += 1

    start = clock()
    await asyncio.gather(*(writer(key) for key in keys))
    return len(latencies), clock() - start, latencies


def _result(
    system: str, writers: int, ops: int, elapsed: float, cpu: float, lat: list[float]
) -> RunResult:
    return RunResult(
        system,
        writers,
        ops,
        round(elapsed, 3),
        round(ops / elapsed, 1),
        round(percentile(lat, 50) * 1000, 3),
        round(percentile(lat, 99) * 1000, 3),
        round(cpu / ops * 1e6, 2),
    )


async def run_braid(directory: Path, writers: int, seconds: float) -> RunResult:
    async with braid.open(directory) as store:
        keys = [Key("bench", f"w{index}") for index in range(writers)]

        async def start_document(key: Key) -> None:
            await store.initialize(key, Update(1, 1, redo="{}", undo="{}"))

        for key in keys:
            await start_document(key)
        cpu = time.process_time()
        ops, elapsed, latencies = await drive(store.patch, start_document, keys, seconds)
    # Closed: the checkpoint of what the run left is in, as SQLite's is in its close.
    cpu = time.process_time() - cpu
    return _result("braid", writers, ops, elapsed, cpu, latencies)


# -- SQLite, done well -------------------------------------------------------------------------


class SqliteGroupCommit:
    """SQLite behind the same patch API: checks in the loop, one committing writer thread."""

    def __init__(self, path: Path) -> None:
        self._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=FULL")
        # One process owns the file: no shared-memory locking; a 64 MiB page cache; mmap reads.
        self._connection.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._connection.execute("PRAGMA cache_size=-65536")
        self._connection.execute("PRAGMA mmap_size=268435456")
        self._connection.execute(
            "CREATE TABLE deltas (space TEXT, key TEXT, seq INTEGER, who TEXT, redo TEXT, "
            "undo TEXT, PRIMARY KEY (space, key, seq)) WITHOUT ROWID"
        )
        self._heads: dict[Key, int] = {}
        self._pending: list[tuple[tuple[str, str, int, str, str, str], asyncio.Future[None]]] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._commit_loop, name="sqlite-commit")
        self._thread.start()

    def initialize(self, key: Key) -> None:
        self._heads[key] = 1

    async def patch(self, key: Key, updates: list[Update]) -> None:
        check_updates(updates)
        head = self._heads[key]
        if updates[0].seq_begin != head + 1:
            raise BraidError(HEAD_SEQ_OFF, f"head is {head}")
        self._heads[key] = updates[-1].seq_end
        future = self._loop.create_future()
        update = updates[0]
        row = (key.space, key.key, update.seq_end, update.who, update.redo, update.undo)
        with self._condition:
            self._pending.append((row, future))
            self._condition.notify()
        await future

    def _commit_loop(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending, []
            self._connection.execute("BEGIN")
            self._connection.executemany(
                "INSERT INTO deltas VALUES (?, ?, ?, ?, ?, ?)", [row for row, _ in batch]
            )
            self._connection.execute("COMMIT")
            self._loop.call_soon_threadsafe(_resolve, [future for _, future in batch])

    def close(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join()
        self._connection.close()


def _resolve(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        future.set_result(None)


async def run_sqlite(directory: Path, writers: int, seconds: float) -> RunResult:
    service = SqliteGroupCommit(directory / "bench.sqlite3")
    try:
        keys = [Key("bench", f"w{index}") for index in range(writers)]

        async def start_document(key: Key) -> None:
            service.initialize(key)

        for key in keys:
            await start_document(key)
        cpu = time.process_time()
        ops, elapsed, latencies = await drive(service.patch, start_document, keys, seconds)
    finally:
        service.close()
    cpu = time.process_time() - cpu
    return _result("sqlite", writers, ops, elapsed, cpu, latencies)


# -- the benchmark ---------------------------------------------------------------------------------


async def _one(system: str, root: Path, writers: int, seconds: float) -> RunResult:
    directory = Path(tempfile.mkdtemp(prefix=f"{system}-{writers}-", dir=root))
    try:
        runner = run_braid if system == "braid" else run_sqlite
        return await runner(directory, writers, seconds)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(
    writer_counts: Sequence[int], seconds: float, runs: int, root: Path, use_uvloop: bool
) -> dict[str, object]:
    fsync_p50, fsync_p99 = measure_fsync(root)
    print(f"fsync floor (pwrite 4 KiB + fdatasync): p50 {fsync_p50:.3f} ms, p99 {fsync_p99:.3f} ms")
    summaries: dict[tuple[str, int], Summary] = {}
    for writers in writer_counts:
        for index in range(runs):
            order = ("braid", "sqlite") if index % 2 == 0 else ("sqlite", "braid")
            for system in order:
                result = run_loop(_one(system, root, writers, seconds), use_uvloop)
                summaries.setdefault((system, writers), Summary(system, writers)).runs.append(
                    result
                )
                print(
                    f"  {system:6s} writers={writers:3d} run {index + 1}/{runs}: "
                    f"{result.ops_per_second:10.0f} ops/s  p50 {result.p50_ms:.3f} ms  "
                    f"p99 {result.p99_ms:.3f} ms  CPU {result.cpu_us_per_op:.1f} us/op"
                )
    return _report(summaries, writer_counts, fsync_p50, fsync_p99, seconds, runs, use_uvloop)


def _report(
    summaries: dict[tuple[str, int], Summary],
    writer_counts: Sequence[int],
    fsync_p50: float,
    fsync_p99: float,
    seconds: float,
    runs: int,
    use_uvloop: bool,
) -> dict[str, object]:
    rows = []
    for writers in writer_counts:
        ours, theirs = summaries[("braid", writers)], summaries[("sqlite", writers)]
        row = {
            "writers": writers,
            "braid_ops_per_second": ours.median("ops_per_second"),
            "braid_p50_ms": ours.median("p50_ms"),
            "braid_p99_ms": ours.median("p99_ms"),
            "braid_cpu_us_per_op": ours.median("cpu_us_per_op"),
            "sqlite_ops_per_second": theirs.median("ops_per_second"),
            "sqlite_p50_ms": theirs.median("p50_ms"),
            "sqlite_p99_ms": theirs.median("p99_ms"),
            "sqlite_cpu_us_per_op": theirs.median("cpu_us_per_op"),
        }
        row["ratio_vs_sqlite"] = round(
            row["braid_ops_per_second"] / row["sqlite_ops_per_second"], 3
        )
        rows.append(row)
    single = next((row for row in rows if row["writers"] == 1), None)
    return {
        "benchmark": "engine",
        "delta_bytes": DELTA_BYTES,
        "seconds_per_run": seconds,
        "runs": runs,
        "event_loop": "uvloop" if use_uvloop else "asyncio",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "fsync_p50_ms": round(fsync_p50, 3),
        "fsync_p99_ms": round(fsync_p99, 3),
        "single_writer_p50_over_fsync_p50": (
            round(single["braid_p50_ms"] / fsync_p50, 2) if single else None
        ),
        "results": rows,
        "raw": [asdict(run) for summary in summaries.values() for run in summary.runs],
    }


def print_table(report: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"braid bench engine — medians of {report['runs']} runs")
    for column in (
        "writers",
        "braid ops/s",
        "p50 ms",
        "p99 ms",
        "sqlite ops/s",
        "p50 ms",
        "p99 ms",
        "braid/sqlite",
    ):
        table.add_column(column, justify="right")
    for row in report["results"]:  # type: ignore[attr-defined]
        table.add_row(
            str(row["writers"]),
            f"{row['braid_ops_per_second']:,.0f}",
            f"{row['braid_p50_ms']:.3f}",
            f"{row['braid_p99_ms']:.3f}",
            f"{row['sqlite_ops_per_second']:,.0f}",
            f"{row['sqlite_p50_ms']:.3f}",
            f"{row['sqlite_p99_ms']:.3f}",
            f"{row['ratio_vs_sqlite']:.2f}x",
        )
    cpu = Table(title="CPU us per patch (user+sys, all threads)")
    for column in ("writers", "braid", "sqlite", "braid/sqlite"):
        cpu.add_column(column, justify="right")
    for row in report["results"]:  # type: ignore[attr-defined]
        braid_cpu, sqlite_cpu = row["braid_cpu_us_per_op"], row["sqlite_cpu_us_per_op"]
        cpu.add_row(
            str(row["writers"]),
            f"{braid_cpu:.1f}",
            f"{sqlite_cpu:.1f}",
            f"{braid_cpu / sqlite_cpu:.2f}x",
        )
    console = Console()
    console.print(table)
    console.print(cpu)
    console.print(
        f"fsync floor p50 {report['fsync_p50_ms']} ms; single-writer braid p50 is "
        f"{report['single_writer_p50_over_fsync_p50']}x the fsync p50"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "CPU us/op: this process's user+sys CPU time (all threads: the event loop, the "
        "engine's or SQLite's writer thread, the checkpoints, and the kernel work they ask "
        "for) from the first timed patch until the store is closed, in microseconds per "
        "acknowledged patch."
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="runs per system and writer count")
    parser.add_argument(
        "--writers", type=int, nargs="+", default=list(WRITER_COUNTS), help="writer counts"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to put the stores")
    parser.add_argument("--out", type=Path, default=Path("bench-engine.json"), help="JSON file")
    parser.add_argument("--asyncio", action="store_true", help="plain asyncio, not uvloop")


def main(args: argparse.Namespace) -> int:
    if args.seconds <= 0 or args.runs < 1 or any(count < 1 for count in args.writers):
        raise SystemExit("--seconds must be > 0, --runs >= 1, writer counts >= 1")
    return run_and_report(
        "braid-bench-",
        args.dir,
        args.out,
        lambda root: run(args.writers, args.seconds, args.runs, root, not args.asyncio),
        print_table,
    )


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__)
    add_arguments(cli)
    raise SystemExit(main(cli.parse_args()))
