"""Drives `braid.core.apply.ApplyRules` from scenario files; the output is its own trace.

Documents are named `space/key`; operations are described by kind. Commands:

- ``init [applied=N] [records=N]``: the applied state at lsn N; a checkpoint is due at N
  pending operations.
- ``log lsn=N doc=KEY [op=patch|init|delete]``: an operation framed into the log.
- ``due``: whether a checkpoint is due by count.
- ``begin durable=N``: the next checkpoint given the durable lsn; ``done`` / ``failed``.
- ``pinned last=N``: whether a document whose newest operation is at N stays cached.
- ``revert from=N``: the log gave back everything from N; what each touched document keeps.
- ``release firsts=(l1, l2, ...)``: how many of the oldest segments (by first lsn) hold
  nothing above the applied lsn.
- ``crash durable=N``: the process dies: what survives is the applied state (committed
  checkpoints) and the log up to N; the rules are rebuilt by replaying the log above the
  applied lsn, as opening the store does.
- ``state``.
"""

from __future__ import annotations

from braid.core.apply import ApplyRules, Checkpoint, releasable
from braid.core.wal.ops import DeleteOp, InitOp, Op, PatchOp
from braid.model import Key, Update

from ..datadriven import Handler, TestCase


def _op(kind: str, key: Key, lsn: int) -> Op:
    update = Update(lsn, lsn, redo="{}")
    if kind == "init":
        return InitOp(key, update)
    if kind == "patch":
        return PatchOp(key, (update,))
    if kind == "delete":
        return DeleteOp(key)
    raise ValueError(kind)


def _describe(op: Op) -> str:
    kind = {InitOp: "init", PatchOp: "patch", DeleteOp: "delete"}.get(type(op), "fold")
    return f"{kind} {op.key}"


class Driver:
    def __init__(self) -> None:
        self.rules = ApplyRules(0, 4)
        self.log: list[tuple[int, Op]] = []  # everything logged, as the disk would hold it
        self.checkpoint: Checkpoint | None = None

    def handle(self, case: TestCase) -> str:
        commands = {
            "init": self.init,
            "log": self.logged,
            "due": self.due,
            "begin": self.begin,
            "done": self.done,
            "failed": self.failed,
            "pinned": self.pinned,
            "revert": self.revert,
            "release": self.release,
            "crash": self.crash,
            "state": self.state,
        }
        command = commands.get(case.command)
        if command is None:
            raise case.error(f"unknown command {case.command!r}")
        return command(case)

    def init(self, case: TestCase) -> str:
        self.rules = ApplyRules(case.int("applied", 0), case.int("records", 4))
        self.log = []
        self.checkpoint = None
        return self.state(case)

    def logged(self, case: TestCase) -> str:
        space, _, name = case.get("doc").partition("/")
        lsn = case.int("lsn")
        op = _op(case.get("op", "patch"), Key(space, name), lsn)
        self.rules.logged(lsn, op)
        self.log.append((lsn, op))
        return f"{len(self.rules.pending)} pending"

    def due(self, case: TestCase) -> str:
        return "due" if self.rules.due else "not due"

    def begin(self, case: TestCase) -> str:
        checkpoint = self.rules.begin(case.int("durable"))
        if checkpoint is None:
            return "no checkpoint"
        self.checkpoint = checkpoint
        operations = ", ".join(_describe(op) for op in checkpoint.operations)
        return f"checkpoint through lsn {checkpoint.through_lsn}: {operations}"

    def done(self, case: TestCase) -> str:
        assert self.checkpoint is not None
        self.rules.done(self.checkpoint)
        self.checkpoint = None
        return self.state(case)

    def failed(self, case: TestCase) -> str:
        assert self.checkpoint is not None
        self.rules.failed(self.checkpoint)
        self.checkpoint = None
        return self.state(case)

    def pinned(self, case: TestCase) -> str:
        return "pinned" if self.rules.pinned(case.int("last")) else "evictable"

    def revert(self, case: TestCase) -> str:
        first = case.int("from")
        touched = self.rules.reverted(first)
        self.log = [(lsn, op) for lsn, op in self.log if lsn < first]
        lines = [
            f"{key}: keeps " + (", ".join(f"{lsn} {_describe(op)}" for lsn, op in ops) or "none")
            for key, ops in sorted(touched.items(), key=lambda item: str(item[0]))
        ]
        return "\n".join(lines) or "nothing touched"

    def release(self, case: TestCase) -> str:
        count = releasable(case.ints("firsts"), self.rules.applied_lsn)
        return f"release {count} segment(s)"

    def crash(self, case: TestCase) -> str:
        durable = case.int("durable")
        applied = self.rules.applied_lsn  # committed with each checkpoint's transaction
        self.rules = ApplyRules(applied, self.rules.checkpoint_records)
        self.log = [(lsn, op) for lsn, op in self.log if lsn <= durable]
        for lsn, op in self.log:
            if lsn > applied:
                self.rules.logged(lsn, op)
        self.checkpoint = None
        return self.state(case)

    def state(self, case: TestCase) -> str:
        rules = self.rules
        pending = ", ".join(f"{lsn} {_describe(op)}" for lsn, op in rules.pending) or "none"
        running = "" if rules.running is None else f"; running through {rules.running.through_lsn}"
        return f"applied lsn {rules.applied_lsn}; pending: {pending}{running}"


def make() -> Handler:
    return Driver().handle
