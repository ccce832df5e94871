"""Drives `braid.core.wal.batcher.Batcher` from scenario files; the output is its own trace.

Waiters are names. Commands:

- ``init [lsn=N] [batch=N] [segment=(index, offset, size)] [last=N]``: a new batcher (the
  next lsn and batch number, the active segment if any, the newest segment's index).
- ``append w=NAME [bytes=N] [kind=patch]``: a record of N payload bytes; its lsn.
- ``take``: seal the open batch (the one being written now).
- ``place``: where the taken batch goes: an offset, or that a new segment is needed.
- ``rotate size=N [unsealed=(index, offset)]``: the new segment and the old one's seal,
  written (the batcher's layout moves on).
- ``written`` / ``complete``: the taken batch is durable / its waiters are released.
- ``refuse``: the full disk refused the taken batch; ``revert``: the engine undid it.
- ``fail why=TEXT``: the write failed otherwise.
- ``sync w=NAME``: a barrier: met at once, or waiting.
- ``state``: the counters and the layout.

A refusal by the batcher (a BraidError) is output, as ``error CODE NAME: detail``.
"""

from __future__ import annotations

from braid.core.wal.batcher import Batch, Batcher, Layout
from braid.core.wal.record import RecordType
from braid.errors import BraidError

from ..datadriven import Handler, TestCase

_KINDS = {"patch": RecordType.PATCH, "init": RecordType.INIT, "delete": RecordType.DELETE}


class Driver:
    """One batcher and the batch taken from it, if any."""

    def __init__(self) -> None:
        self.batcher: Batcher[str] = Batcher(1, 1, Layout(None, 0, 0, 0))
        self.batch: Batch[str] | None = None

    def handle(self, case: TestCase) -> str:
        commands = {
            "init": self.init,
            "append": self.append,
            "take": self.take,
            "place": self.place,
            "rotate": self.rotate,
            "written": self.written,
            "complete": self.complete,
            "refuse": self.refuse,
            "revert": self.revert,
            "fail": self.fail,
            "sync": self.sync,
            "state": self.state,
        }
        command = commands.get(case.command)
        if command is None:
            raise case.error(f"unknown command {case.command!r}")
        try:
            return command(case)
        except BraidError as error:
            return f"error {error.code} {error.name}: {error.detail}"

    def init(self, case: TestCase) -> str:
        segment = case.ints("segment") if case.has("segment") else []
        last = case.int("last", segment[0] if segment else 0)
        if segment and len(segment) != 3:
            raise case.error("segment=(index, offset, size)")
        layout = (
            Layout(segment[0], segment[1], segment[2], last)
            if segment
            else Layout(None, 0, 0, last)
        )
        self.batcher = Batcher(case.int("lsn", 1), case.int("batch", 1), layout)
        self.batch = None
        return self.state(case)

    def append(self, case: TestCase) -> str:
        kind = _KINDS[case.get("kind", "patch")]
        lsn = self.batcher.append(kind, bytes(case.int("bytes", 8)), case.get("w"))
        return (
            f"lsn {lsn} in batch {self.batcher.next_batch} ({self.batcher.open_bytes} bytes open)"
        )

    def taken(self, case: TestCase) -> Batch[str]:
        if self.batch is None:
            raise case.error("no batch taken")
        return self.batch

    def take(self, case: TestCase) -> str:
        if not self.batcher.ready:
            return "nothing to take" if not self.batcher.writing else "busy: a batch is out"
        batch = self.batch = self.batcher.take()
        return (
            f"batch {batch.number}: lsn {batch.first_lsn}..{batch.marker_lsn - 1}, "
            f"marker {batch.marker_lsn}, {len(batch.data)} bytes, waiters {_names(batch.waiters)}"
        )

    def place(self, case: TestCase) -> str:
        batch = self.taken(case)
        offset = self.batcher.placement(batch)
        if offset is None:
            return f"new segment needed (at least {Batcher.segment_bytes_needed(batch)} bytes)"
        return f"at offset {offset} of segment {self.batcher.layout.active_index}"

    def rotate(self, case: TestCase) -> str:
        batch = self.taken(case)
        unsealed_values = case.ints("unsealed") if case.has("unsealed") else []
        unsealed = (unsealed_values[0], unsealed_values[1]) if unsealed_values else None
        rotation = self.batcher.rotation(batch, case.int("size"), unsealed)
        self.batcher.rotated(rotation)
        sealed = (
            "no segment to seal"
            if rotation.sealed_index is None
            else f"seal segment {rotation.sealed_index} at offset {rotation.seal_offset}: "
            f"continues in {rotation.index} at lsn {batch.first_lsn}"
        )
        return f"segment {rotation.index} of {rotation.size} bytes; {sealed}"

    def written(self, case: TestCase) -> str:
        self.batcher.written(self.taken(case))
        return f"durable lsn {self.batcher.durable_lsn}; offset {self.batcher.layout.offset}"

    def complete(self, case: TestCase) -> str:
        released = self.batcher.completed(self.taken(case))
        self.batch = None
        return f"released {_names(released)}"

    def refuse(self, case: TestCase) -> str:
        dropped = self.batcher.refused(self.taken(case))
        self.batch = None
        return (
            f"dropped {_names(dropped)}; next lsn {self.batcher.next_lsn}, "
            f"batch {self.batcher.next_batch}; rolling back"
        )

    def revert(self, case: TestCase) -> str:
        return f"released {_names(self.batcher.reverted())}"

    def fail(self, case: TestCase) -> str:
        dropped = self.batcher.failed(case.get("why"))
        batch_waiters = self.batch.waiters if self.batch is not None else []
        self.batch = None
        return f"failed {_names([*batch_waiters, *dropped])}"

    def sync(self, case: TestCase) -> str:
        return "met" if self.batcher.barrier(case.get("w")) else "waiting"

    def state(self, case: TestCase) -> str:
        batcher = self.batcher
        layout = batcher.layout
        active = (
            "no active segment"
            if layout.active_index is None
            else f"segment {layout.active_index} at {layout.offset}/{layout.size}"
        )
        flags = [name for name in ("writing", "closing", "rolling_back") if getattr(batcher, name)]
        if batcher.failure is not None:
            flags.append(f"failed ({batcher.failure})")
        return (
            f"next lsn {batcher.next_lsn}, next batch {batcher.next_batch}, "
            f"durable lsn {batcher.durable_lsn}; {active}; "
            f"{batcher.open_records} open record(s)" + (f"; {' '.join(flags)}" if flags else "")
        )


def _names(waiters: list[str]) -> str:
    return "(" + " ".join(waiters) + ")"


def make() -> Handler:
    return Driver().handle
