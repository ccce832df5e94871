"""A partition leader through failures: every write it accepts completes exactly once and
truthfully, and its checks never let a bad write into the log.

Hypothesis interleaves writes, commits of any slice, catastrophic failures, leadership lost
(before or after another leader's entries arrive), other leaders' no-ops taking over the
uncommitted tail of the log, new terms, and a sick replica installing its peer's documents.
The other leaders write only no-ops, so every operation in the log was checked by this
leader's write path. The invariants:

- every tracked write completes exactly once, with success only when its own entry was
  applied at its index, and NOT_LEADER "not applied" only when it was not; no write fails
  any other way than NOT_LEADER or WRITE_NOT_DURABLE;
- no committed operation fails its check at apply (`skipped` stays 0): however the failures
  interleave, the leader's checks agreed with the state its writes met;
- the leader, a follower, a replica that installed a peer's state midway, and a fresh
  replica replaying the final log hold identical documents.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braid.core.partition import NO_OP, Completion, Partition, Proposal
from braid.core.wal.ops import DeleteOp, InitOp, Op, PatchOp
from braid.errors import NOT_LEADER, WRITE_NOT_DURABLE, BraidError
from braid.model import Key, Update

KEYS = [Key("docs", name) for name in ("a", "b")]
SEQ_MAX = 40
ACTIONS = [
    *["write"] * 6,
    *["commit"] * 3,
    "catastrophic",
    "overwrite",
    "lose",
    "install",
]


class Cluster:
    """This replica (leading when `leading`), a follower, a sick replica, and the log."""

    def __init__(self) -> None:
        self.leader: Partition[int] = Partition()
        self.follower: Partition[int] = Partition()
        self.sick: Partition[int] = Partition()
        self.log: list[tuple[int, bytes]] = []  # (term, data) of index position + 1
        self.term = 0
        self.leading = False  # proposing in `term` (the partition may lag behind this)
        self.deposed = False  # another leader's entries are in the log: stop proposing
        self.tokens = 0
        self.tracked: dict[int, tuple[int, int, bytes]] = {}  # token → (index, term, data)
        self.completed: dict[int, Completion[int]] = {}
        self.lead()

    def lead(self) -> None:
        """A new term: its no-op appended and applied, then writable (the host's gate)."""
        self.term += 1
        self.log.append((self.term, NO_OP))
        self.commit(len(self.log))
        self.leader.set_writable(True)
        self.leading, self.deposed = True, False

    def receive(self, completions: list[Completion[int]]) -> None:
        for completion in completions:
            assert completion.token not in self.completed, "completed twice"
            self.completed[completion.token] = completion

    def commit(self, through: int) -> None:
        for index in range(self.leader.applied_index + 1, through + 1):
            term, data = self.log[index - 1]
            self.receive(self.leader.apply(index, term, data))
            assert self.follower.apply(index, term, data) == []
            if self.sick.applied_index == index - 1:
                assert self.sick.apply(index, term, data) == []

    def write(self, op: Op) -> None:
        try:
            proposal: Proposal = self.leader.check(op)
        except BraidError:
            return
        self.log.append((self.term, proposal.data))
        self.tokens += 1
        self.leader.track(len(self.log), self.term, proposal, self.tokens)
        self.tracked[self.tokens] = (len(self.log), self.term, proposal.data)

    def overwrite(self, count: int) -> None:
        """Another leader (a later term) replaces the uncommitted tail by `count` no-ops."""
        del self.log[self.leader.applied_index :]
        self.term += 1
        self.log.extend((self.term, NO_OP) for _ in range(count))
        self.deposed = True

    def lose(self) -> None:
        self.receive(self.leader.lost_leadership())
        self.leading = False

    def install(self) -> None:
        """The sick replica takes the follower's documents as of its applied index."""
        documents = {}
        for key in KEYS:
            document = self.follower.document(key)
            if document is not None:
                documents[key] = document
        follower = self.follower
        assert self.sick.install(follower.applied_index, follower.applied_term, documents) == []


def candidates(key: Key, kind: str) -> list[Op]:
    if kind == "delete":
        return [DeleteOp(key)]
    if kind == "init":
        return [InitOp(key, Update(seq, seq, redo=f'{{"n":{seq}}}')) for seq in (1, 5)]
    return [
        PatchOp(key, (Update(seq, seq + 1, redo=f'{{"n":{seq}}}'),)) for seq in range(1, SEQ_MAX)
    ]


def step(cluster: Cluster, data: st.DataObject) -> None:
    action = data.draw(st.sampled_from(ACTIONS), "action")
    unapplied = len(cluster.log) - cluster.leader.applied_index
    if action == "write" and cluster.leading and not cluster.deposed:
        key = data.draw(st.sampled_from(KEYS), "key")
        kind = data.draw(st.sampled_from(["init", "patch", "patch", "patch", "delete"]), "kind")
        before = cluster.tokens
        for op in candidates(key, kind):  # the first the leader accepts
            cluster.write(op)
            if cluster.tokens > before:
                break
    elif action == "commit" and unapplied:
        cluster.commit(cluster.leader.applied_index + data.draw(st.integers(1, unapplied)))
    elif action == "catastrophic" and cluster.leading:
        cluster.receive(cluster.leader.catastrophic("the log write failed"))
    elif action == "overwrite":
        cluster.overwrite(data.draw(st.integers(0, 3), "no-ops"))
    elif action == "lose" and cluster.leading:
        cluster.lose()
    elif action == "install":
        cluster.install()
    if not cluster.leading and data.draw(st.booleans(), "lead again"):
        cluster.lead()


def check_outcomes(cluster: Cluster) -> None:
    assert set(cluster.completed) == set(cluster.tracked), "a write never completed"
    for token, completion in cluster.completed.items():
        index, term, data = cluster.tracked[token]
        in_log = index <= len(cluster.log) and cluster.log[index - 1] == (term, data)
        error = completion.error
        if error is None:
            assert completion.settled
            assert in_log, f"write {token} succeeded, but index {index} holds another entry"
            continue
        assert error.info in (NOT_LEADER, WRITE_NOT_DURABLE), error
        if completion.settled:  # told "not applied": so it must be
            assert not in_log, f"write {token} applied, but told {error}"
        else:
            assert "may" in error.detail, error


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_write_completes_once_and_truthfully_through_failures(data: st.DataObject) -> None:
    """Through any interleaving of failures every write completes exactly once with a true
    outcome, no checked write fails at apply, and every replica ends identical."""
    cluster = Cluster()
    for _ in range(data.draw(st.integers(1, 50), "steps")):
        step(cluster, data)
    if cluster.leading:
        cluster.lose()  # writes still pending when the run ends: their leader goes away
    cluster.commit(len(cluster.log))
    check_outcomes(cluster)
    assert cluster.leader.skipped == cluster.follower.skipped == 0
    fresh: Partition[int] = Partition()
    for index, (term, entry) in enumerate(cluster.log, start=1):
        assert fresh.apply(index, term, entry) == []
    replicas = (cluster.leader, cluster.follower, cluster.sick, fresh)
    assert len({replica.digest() for replica in replicas}) == 1
    assert len({replica.applied_index for replica in replicas}) == 1
    assert cluster.leader.inventory() == fresh.inventory()
