"""Drives `braid.core.partition.Partition` from scenario files: a leader and a follower over
one log, with the host's part played here (it proposes, commits and gates writes).

Documents are `docs/<name>`; every update of seq N has redo `{"n":N}`, so a document at seq
N is `{"n":N}` and a snapshot needs only the seq. Commands:

- ``lead term=T``: this replica leads term T: its no-op entry is appended; writes wait until
  a commit applies it (the host's gate), then the partition is writable.
- ``write doc=NAME op=init|patch|delete [seq=N] [to=M] token=X``: check; if accepted, propose
  at the next index in the leading term and track (prints the index), else the refusal.
- ``snapshot doc=NAME seq=N [history=H] token=X``: plan the fold, then as ``write``.
- ``entry term=T doc=NAME op=... [seq=N]``: another leader's entry at the next index.
- ``noop term=T``: another leader's no-op at the next index.
- ``truncate from=I``: the log loses every entry from index I (a new leader overwrote it).
- ``commit [through=I]``: apply on both replicas up to I (default: all); the completions.
- ``lose``: the leader loses leadership; ``catastrophic reason=WORDS``: its failure.
- ``state``: each applied document's head and deltas, what is pending, whether the follower
  is identical.
"""

from __future__ import annotations

from braid.core.partition import NO_OP, Completion, Partition, encode_entry
from braid.core.wal.ops import DeleteOp, InitOp, Op, PatchOp
from braid.errors import BraidError
from braid.model import Key, Update

from ..datadriven import Handler, TestCase


def _update(seq: int, end: int) -> Update:
    return Update(seq, end, redo=f'{{"n":{end}}}', undo="{}")


def _op(case: TestCase) -> Op:
    key = Key("docs", case.get("doc"))
    kind = case.get("op")
    if kind == "delete":
        return DeleteOp(key)
    seq = case.int("seq")
    update = _update(seq, case.int("to", seq))
    if kind == "init":
        return InitOp(key, update)
    if kind == "patch":
        return PatchOp(key, (update,))
    raise case.error(f"unknown op {kind!r}")


def _refusal(error: BraidError) -> str:
    return f"refused: {error.name} {error.detail}"


def _completions(completions: list[Completion[str]]) -> list[str]:
    lines = []
    for completion in completions:
        error = completion.error
        if error is None:
            result = "" if completion.result is None else f" ({completion.result} removed)"
            lines.append(f"{completion.token}: done{result}")
        else:
            lines.append(f"{completion.token}: {error.name} {error.detail}")
    return lines


class Driver:
    def __init__(self) -> None:
        self.leader: Partition[str] = Partition()
        self.follower: Partition[str] = Partition()
        self.log: list[tuple[int, bytes]] = []  # (term, data) of index position + 1
        self.term = 0
        self.gate = 0  # the index of the leading term's no-op

    def handle(self, case: TestCase) -> str:
        commands = {
            "lead": self.lead,
            "write": self.write,
            "snapshot": self.snapshot,
            "entry": self.entry,
            "noop": self.noop,
            "truncate": self.truncate,
            "commit": self.commit,
            "lose": self.lose,
            "catastrophic": self.catastrophic,
            "state": self.state,
        }
        command = commands.get(case.command)
        if command is None:
            raise case.error(f"unknown command {case.command!r}")
        return command(case)

    def lead(self, case: TestCase) -> str:
        self.term = case.int("term")
        self.log.append((self.term, NO_OP))
        self.gate = len(self.log)
        return f"no-op at {self.gate}; writable once it is applied"

    def write(self, case: TestCase) -> str:
        op = _op(case)
        return self._propose(op, case.get("token"))

    def snapshot(self, case: TestCase) -> str:
        seq = case.int("seq")
        key = Key("docs", case.get("doc"))
        token = case.get("token")
        try:
            fold = self.leader.plan_snapshot(key, seq, f'{{"n":{seq}}}', case.int("history", 0))
        except BraidError as error:
            return _refusal(error)
        if fold is None:
            return f"{token}: nothing to fold (0 removed)"
        return self._propose(fold, token)

    def _propose(self, op: Op, token: str) -> str:
        try:
            proposal = self.leader.check(op)
        except BraidError as error:
            return _refusal(error)
        self.log.append((self.term, proposal.data))
        self.leader.track(len(self.log), self.term, proposal, token)
        return f"{token}: proposed at {len(self.log)}"

    def entry(self, case: TestCase) -> str:
        self.log.append((case.int("term"), encode_entry(_op(case))))
        return f"entry at {len(self.log)}"

    def noop(self, case: TestCase) -> str:
        self.log.append((case.int("term"), NO_OP))
        return f"no-op at {len(self.log)}"

    def truncate(self, case: TestCase) -> str:
        first = case.int("from")
        assert first > self.leader.applied_index
        del self.log[first - 1 :]
        return f"log ends at {len(self.log)}"

    def commit(self, case: TestCase) -> str:
        through = case.int("through", len(self.log))
        lines: list[str] = []
        for index in range(self.leader.applied_index + 1, through + 1):
            term, data = self.log[index - 1]
            lines += _completions(self.leader.apply(index, term, data))
            assert self.follower.apply(index, term, data) == []
            if index == self.gate:
                self.leader.set_writable(True)
                lines.append(f"writable in term {self.term}")
        lines.append(f"applied through {self.leader.applied_index}")
        return "\n".join(lines)

    def lose(self, case: TestCase) -> str:
        self.gate = 0
        return "\n".join(_completions(self.leader.lost_leadership()) or ["nothing pending"])

    def catastrophic(self, case: TestCase) -> str:
        completions = self.leader.catastrophic(" ".join(case.values("reason")))
        return "\n".join(_completions(completions) or ["nothing pending"])

    def state(self, case: TestCase) -> str:
        lines = [
            f"{info.key}: seq {info.seq}, {info.deltas} delta(s)"
            for info in self.leader.inventory()
        ]
        lines.append(f"pending {self.leader.pending}; writable {self.leader.writable}")
        same = self.leader.digest() == self.follower.digest()
        lines.append("follower identical" if same else "follower DIFFERS")
        return "\n".join(lines)


def make() -> Handler:
    return Driver().handle
