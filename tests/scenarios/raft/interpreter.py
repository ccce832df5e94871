"""Drives `braid.core.raft.node.RaftNode` replicas from scenario files; the output is what
they say to each other and what they become.

Each replica has a driver as the real node will: it persists each Ready's hard state and
entries (at once, or only on `persist` when its disk is slow), holds the Ready's messages
until its hard state is durable, reports `persisted(index, term)`, and applies what is
committed. Messages travel through a network the scenario controls. Commands:

- ``add-nodes N [seed=S] [election=T] [heartbeat=T] [lease=T] [inflight=N] [batch=N]``
- ``campaign ID``: the replica stands (pre-vote first), as when its timeout passes.
- ``tick (ID | all) [n=K]``: K ticks; ``propose ID data=TEXT``; ``transfer ID to=ID``.
- ``stabilize``: process and deliver until nothing moves; prints every message delivered.
- ``advance [n=K] [only=(ID, ...)]``: K times, a tick of every running replica (or those
  named) and a stabilize; prints only what changed, and how many messages were delivered.
- ``deliver [from=ID] [to=ID] [drop]``: deliver (or drop) the messages queued now.
- ``cut A B`` (both ways), ``isolate ID``, ``heal``: the network (``heal`` drops what
  was sent over a cut link meanwhile).
- ``disk ID (slow | fast)``; ``persist ID``: a slow disk's pending writes become durable.
- ``crash ID``: it stops, losing what was not durable; ``restart ID``: from what was.
- ``status``: one line per replica; ``log ID``: its entries; ``compact ID [index=N]``:
  drop applied entries (a follower that needs them is then sent a snapshot).
- ``load ID term=T terms=(...)``: a replica restarts with that durable log and term.
- ``change ID voters=(...)``: the leader proposes a membership; ``voters``: each replica's;
  ``add-replica ID voters=(...)``: a new, empty replica joining that membership.

Changes of role, term and commit are printed as they happen (``> 2 is leader in term 3``).
"""

from __future__ import annotations

import random

from braid.core.raft.messages import (
    Append,
    AppendReply,
    Entry,
    Heartbeat,
    HeartbeatReply,
    Message,
    Snapshot,
    TimeoutNow,
    Vote,
    VoteReply,
)
from braid.core.raft.node import (
    HardState,
    MembershipError,
    NodeId,
    NotLeader,
    RaftConfig,
    RaftNode,
    Role,
)

from ..datadriven import Handler, TestCase

ROUNDS_MAX = 1000  # stabilize gives up (and says so) after this many rounds


def describe(message: Message) -> str:
    if isinstance(message, Vote):
        kind = "PreVote" if message.pre else "Vote"
        forced = " forced" if message.forced else ""
        return f"{kind} term={message.term} last=({message.last_index},{message.last_term}){forced}"
    if isinstance(message, VoteReply):
        kind = "PreVoteReply" if message.pre else "VoteReply"
        return f"{kind} term={message.term} {'granted' if message.granted else 'refused'}"
    if isinstance(message, Append):
        entries = " ".join(f"{e.index}/{e.term}:{e.data.decode()!r}" for e in message.entries)
        return (
            f"Append term={message.term} prev=({message.prev_index},{message.prev_term}) "
            f"[{entries}] commit={message.commit}"
        )
    if isinstance(message, AppendReply):
        if message.reject:
            reject = f"reject index={message.index} hint={message.hint}"
            return f"AppendReply term={message.term} {reject}"
        return f"AppendReply term={message.term} index={message.index}"
    if isinstance(message, Heartbeat):
        return f"Heartbeat term={message.term} commit={message.commit}"
    if isinstance(message, HeartbeatReply):
        return f"HeartbeatReply term={message.term} last={message.last_index}"
    if isinstance(message, Snapshot):
        return f"Snapshot term={message.term} at=({message.index},{message.snapshot_term})"
    assert isinstance(message, TimeoutNow)
    return f"TimeoutNow term={message.term}"


class Replica:
    """One replica and its driver: the durable state and what is not durable yet."""

    def __init__(self, node_id: NodeId, voters: list[NodeId], config: RaftConfig, seed: int):
        self.id = node_id
        self.voters = voters
        self.config = config
        self.rng = random.Random(seed * 1000 + node_id)
        self.hard_state = HardState()
        self.offset = 0  # the durable log starts after (offset, offset_term): a snapshot's
        self.offset_term = 0
        self.entries: list[Entry] = []  # durable, after the offset
        self.pending_hard: HardState | None = None
        self.pending_entries: list[Entry] = []
        self.held: list[tuple[NodeId, Message]] = []  # until the hard state is durable
        self.pending_snapshot: tuple[int, int] | None = None
        self.applied = 0  # the applied state's index
        self.slow = False
        self.alive = True
        self.node = RaftNode(node_id, voters, config, self.rng)

    def restart(self) -> None:
        self.pending_hard = None
        self.pending_entries = []
        self.held = []
        self.pending_snapshot = None
        self.alive = True
        self.node = RaftNode(
            self.id,
            self.voters,
            self.config,
            self.rng,
            hard_state=self.hard_state,
            entries=self.entries,
            offset=self.offset,
            offset_term=self.offset_term,
            applied=self.applied,
        )

    def save_base(self) -> None:
        """The membership as of the durable log's offset (compaction or a snapshot)."""
        self.voters = list(self.node.base_voters)

    def process(self, outbox: list[tuple[NodeId, NodeId, Message]]) -> bool:
        """Take the node's Ready and do what it says; True when there was anything."""
        ready = self.node.ready()
        if not ready:
            return False
        if ready.hard_state is not None:
            self.pending_hard = ready.hard_state
        if ready.snapshot is not None:
            self.pending_snapshot = ready.snapshot
            self.pending_entries = []
        self.pending_entries.extend(ready.entries)
        if self.pending_hard is not None or self.pending_snapshot is not None:
            self.held.extend(ready.messages)
        else:
            outbox.extend((self.id, target, message) for target, message in ready.messages)
        if ready.committed:
            self.applied = ready.committed[-1].index
        if not self.slow:
            self.persist(outbox)
        return True

    def persist(self, outbox: list[tuple[NodeId, NodeId, Message]]) -> None:
        if self.pending_snapshot is not None:
            # The state as of the snapshot is loaded (from peers) and the log starts after it.
            self.offset, self.offset_term = self.pending_snapshot
            self.entries = []
            self.save_base()
            self.applied = self.offset
            self.pending_snapshot = None
        if self.pending_hard is not None:
            self.hard_state = self.pending_hard
            self.pending_hard = None
        outbox.extend((self.id, target, message) for target, message in self.held)
        self.held = []
        if self.pending_entries:
            for entry in self.pending_entries:
                del self.entries[entry.index - self.offset - 1 :]
                self.entries.append(entry)
            last = self.pending_entries[-1]
            self.pending_entries = []
            self.node.persisted(last.index, last.term)


class Cluster:
    def __init__(self) -> None:
        self.replicas: dict[NodeId, Replica] = {}
        self.queue: list[tuple[NodeId, NodeId, Message]] = []
        self.cut: set[frozenset[NodeId]] = set()
        self._seen: dict[NodeId, tuple[Role, int, int, NodeId | None]] = {}

    def handle(self, case: TestCase) -> str:
        commands = {
            "add-nodes": self.add_nodes,
            "campaign": self.campaign,
            "tick": self.tick,
            "propose": self.propose,
            "transfer": self.transfer,
            "stabilize": self.stabilize,
            "advance": self.advance,
            "deliver": self.deliver,
            "cut": self.cut_link,
            "isolate": self.isolate,
            "heal": self.heal,
            "disk": self.disk,
            "persist": self.persist,
            "crash": self.crash,
            "restart": self.restart,
            "status": self.status,
            "compact": self.compact,
            "load": self.load,
            "change": self.change,
            "voters": self.show_voters,
            "add-replica": self.add_replica,
            "log": self.log,
        }
        command = commands.get(case.command)
        if command is None:
            raise case.error(f"unknown command {case.command!r}")
        lines = command(case)
        lines += self._changes()
        return "\n".join(lines) if lines else "ok"

    # -- helpers --------------------------------------------------------------------------

    def _replica(self, case: TestCase, word: str) -> Replica:
        if not word.isdigit() or int(word) not in self.replicas:
            raise case.error(f"no replica {word!r}")
        return self.replicas[int(word)]

    def _target(self, case: TestCase) -> Replica:
        words = case.bare()
        if not words:
            raise case.error("which replica?")
        return self._replica(case, words[0])

    def _process_all(self) -> bool:
        moved = False
        for replica in self.replicas.values():
            if replica.alive:
                moved |= replica.process(self.queue)
        return moved

    def _changes(self) -> list[str]:
        lines = []
        for node_id, replica in self.replicas.items():
            if not replica.alive:
                continue
            node = replica.node
            seen = (node.role, node.term, node.log.committed, node.leader)
            before = self._seen.get(node_id)
            if before is not None and before[:2] != seen[:2]:
                lines.append(f"> {node_id} is {node.role.value} in term {node.term}")
            if before is not None and before[2] != seen[2]:
                lines.append(f"> {node_id} commits through {node.log.committed}")
            self._seen[node_id] = seen
        return lines

    def _deliver(self, queued: list[tuple[NodeId, NodeId, Message]], drop: bool) -> list[str]:
        lines = []
        for source, target, message in queued:
            replica = self.replicas[target]
            blocked = frozenset((source, target)) in self.cut or not replica.alive
            mark = " (dropped)" if drop or blocked else ""
            lines.append(f"{source}->{target} {describe(message)}{mark}")
            if not mark:
                replica.node.step(source, message)
        return lines

    # -- commands -------------------------------------------------------------------------

    def add_nodes(self, case: TestCase) -> list[str]:
        words = case.bare()
        count = int(words[0]) if words and words[0].isdigit() else 0
        if count < 1:
            raise case.error("add-nodes N")
        config = RaftConfig(
            election_ticks=case.int("election", 10),
            heartbeat_ticks=case.int("heartbeat", 1),
            lease_ticks=case.int("lease", 8),
            inflight_max=case.int("inflight", 64),
            append_entries_max=case.int("batch", 256),
        )
        seed = case.int("seed", 1)
        voters = list(range(1, count + 1))
        self.replicas = {n: Replica(n, voters, config, seed) for n in voters}
        self._changes()
        ticks = f"election {config.election_ticks} ticks, lease {config.lease_ticks}"
        return [f"{count} replicas, {ticks}"]

    def campaign(self, case: TestCase) -> list[str]:
        self._target(case).node.campaign()
        return []

    def tick(self, case: TestCase) -> list[str]:
        words = case.bare()
        targets = (
            list(self.replicas.values())
            if words == ["all"]
            else [self._replica(case, word) for word in words]
        )
        for _ in range(case.int("n", 1)):
            for replica in targets:
                if replica.alive:
                    replica.node.tick()
        return []

    def propose(self, case: TestCase) -> list[str]:
        replica = self._target(case)
        try:
            index = replica.node.propose(case.get("data").encode())
        except NotLeader as refused:
            return [f"refused: {refused}"]
        return [f"index {index}"]

    def transfer(self, case: TestCase) -> list[str]:
        replica = self._target(case)
        try:
            replica.node.transfer(case.int("to"))
        except NotLeader as refused:
            return [f"refused: {refused}"]
        return []

    def stabilize(self, case: TestCase) -> list[str]:
        lines: list[str] = []
        for _ in range(ROUNDS_MAX):
            moved = self._process_all()
            queued, self.queue = self.queue, []
            if not moved and not queued:
                return lines
            lines += self._deliver(queued, drop=False)
            lines += self._changes()
        lines.append(f"not stable after {ROUNDS_MAX} rounds")
        return lines

    def advance(self, case: TestCase) -> list[str]:
        names = [int(value) for value in case.values("only", ())]
        targets = [self.replicas[n] for n in names] if names else list(self.replicas.values())
        lines: list[str] = []
        delivered = 0
        for tick in range(1, case.int("n", 1) + 1):
            for replica in targets:
                if replica.alive:
                    replica.node.tick()
            for line in self.stabilize(case):
                if line.startswith(">") or line.startswith("not stable"):
                    lines.append(f"{line} (tick {tick})" if line.startswith(">") else line)
                else:
                    delivered += 1
        return [*lines, f"{delivered} messages"]

    def deliver(self, case: TestCase) -> list[str]:
        self._process_all()
        source = case.int("from", 0)
        target = case.int("to", 0)
        chosen = [
            item
            for item in self.queue
            if (not source or item[0] == source) and (not target or item[1] == target)
        ]
        self.queue = [item for item in self.queue if item not in chosen]
        return self._deliver(chosen, drop=case.has("drop"))

    def cut_link(self, case: TestCase) -> list[str]:
        first, second = (self._replica(case, word).id for word in case.bare())
        self.cut.add(frozenset((first, second)))
        return []

    def isolate(self, case: TestCase) -> list[str]:
        isolated = self._target(case).id
        self.cut |= {frozenset((isolated, other)) for other in self.replicas if other != isolated}
        return []

    def heal(self, case: TestCase) -> list[str]:
        """Links come back; what was sent over a cut link while it was cut is lost."""
        self._process_all()
        lost = [item for item in self.queue if frozenset(item[:2]) in self.cut]
        self.queue = [item for item in self.queue if frozenset(item[:2]) not in self.cut]
        self.cut = set()
        return [f"{len(lost)} messages sent over cut links are lost"] if lost else []

    def disk(self, case: TestCase) -> list[str]:
        words = case.bare()
        if len(words) != 2 or words[1] not in ("slow", "fast"):
            raise case.error("disk ID (slow | fast)")
        self._replica(case, words[0]).slow = words[1] == "slow"
        return []

    def persist(self, case: TestCase) -> list[str]:
        self._target(case).persist(self.queue)
        return []

    def load(self, case: TestCase) -> list[str]:
        """Give a stopped replica a durable log and term, as if it had lived them:
        load ID term=T terms=(t1, t2, ...) (entry i has term t_i). It restarts from them."""
        replica = self._target(case)
        terms = [int(value) for value in case.values("terms")]
        replica.entries = [Entry(term, index + 1) for index, term in enumerate(terms)]
        replica.offset = replica.offset_term = replica.applied = 0
        replica.hard_state = HardState(case.int("term"), None)
        replica.restart()
        self._seen.pop(replica.id, None)
        self._changes()
        return [f"{replica.id}: term {case.int('term')}, log terms {tuple(terms)}"]

    def change(self, case: TestCase) -> list[str]:
        """The leader proposes a new membership: voters=(...)."""
        replica = self._target(case)
        voters = [int(value) for value in case.values("voters")]
        try:
            index = replica.node.change_voters(voters)
        except (NotLeader, MembershipError) as refused:
            return [f"refused: {refused}"]
        return [f"index {index}: voters {replica.node.voters}"]

    def show_voters(self, case: TestCase) -> list[str]:
        """Each running replica's membership (as its log has it) and whether a change is
        still uncommitted there."""
        lines = []
        for node_id, replica in self.replicas.items():
            if replica.alive:
                pending = " (change uncommitted)" if replica.node.config_pending else ""
                lines.append(f"{node_id}: {replica.node.voters}{pending}")
        return lines

    def add_replica(self, case: TestCase) -> list[str]:
        """A new, empty replica that knows the membership it joins: add-replica ID voters=(...)."""
        words = case.bare()
        if len(words) != 1 or not words[0].isdigit() or int(words[0]) in self.replicas:
            raise case.error("add-replica ID (a new one) voters=(...)")
        node_id = int(words[0])
        voters = [int(value) for value in case.values("voters")]
        any_replica = next(iter(self.replicas.values()))
        self.replicas[node_id] = Replica(node_id, voters, any_replica.config, case.int("seed", 1))
        self._changes()
        return [f"{node_id} starts empty, voters {tuple(sorted(voters))}"]

    def compact(self, case: TestCase) -> list[str]:
        """Drop applied entries through index=N (default: all applied), in the node and on
        its disk."""
        replica = self._target(case)
        node = replica.node
        index = min(case.int("index", node.log.applied), node.log.applied)
        node.compact(index)
        replica.save_base()
        if index > replica.offset:
            replica.offset_term = node.log.offset_term
            replica.entries = replica.entries[index - replica.offset :]
            replica.offset = index
        return [f"log of {replica.id} starts after {node.log.offset}"]

    def crash(self, case: TestCase) -> list[str]:
        replica = self._target(case)
        replica.alive = False
        lost = len(replica.pending_entries)
        return [f"{replica.id} stops; {lost} entries were not durable"]

    def restart(self, case: TestCase) -> list[str]:
        replica = self._target(case)
        replica.restart()
        self._seen.pop(replica.id, None)
        self._changes()
        term, count = replica.hard_state.term, replica.offset + len(replica.entries)
        return [f"{replica.id} restarts: term {term}, {count} entries"]

    def status(self, case: TestCase) -> list[str]:
        lines = []
        for node_id, replica in self.replicas.items():
            if not replica.alive:
                lines.append(f"{node_id}: stopped")
                continue
            node = replica.node
            log = node.log
            lease = " lease" if node.lease_valid() else ""
            lines.append(
                f"{node_id}: {node.role.value} term={node.term} leader={node.leader} "
                f"last={log.last_index} persisted={log.persisted} commit={log.committed} "
                f"applied={log.applied}{lease}"
            )
        return lines

    def log(self, case: TestCase) -> list[str]:
        replica = self._target(case)
        log = replica.node.log
        entries = [f"{e.index}/{e.term}:{e.data.decode()!r}" for e in log.entries]
        return [" ".join(entries) or "(empty)"]


def make() -> Handler:
    return Cluster().handle
