"""One Raft group in simulated time, from one seed: replicas of `braid.core.raft.node.RaftNode`
driven as the real node will drive them, over a network and disks that fail, and checked.

Everything happens at simulated instants, in an event queue: each replica ticks with its own
clock (its tick period drifts within `drift_max`), messages arrive after a random delay (or
are lost, duplicated, reordered), a replica's disk makes a Ready durable after a random
latency (its messages wait for its hard state, as the driver contract says), and the fault
schedule partitions the network, stops replicas (losing what their disk had not made
durable; they restart from what it had), pauses them (a process stopped past its lease,
then resumed: its clock has moved on meanwhile), moves leadership (an operator's drain) and
loses hosts for good (an operator removes the lost replica, then adds a new, empty one: two
membership changes; the new one catches up by a snapshot and entries). A client proposes
entries to whoever leads.

Checked after every event (a failure names the checker and the seed replays it exactly):

- election safety: at most one leader per term;
- state-machine safety: no two replicas apply different entries at one index, and every
  replica applies the entries in index order without a gap;
- leader completeness: a new leader's log holds every entry applied anywhere before;
- lease safety: at no instant do two running replicas both hold a valid lease;
- no acknowledged entry lost: an entry the client was told is committed is applied, at its
  index, by every replica that applies that far;
- liveness: once the faults stop, a leader is elected and the client's entries commit within
  a bound.

A crash loses only what a replica had not made durable, so even a power cut that stops every
replica at once must lose no committed entry: each was durable on a majority.

`Broken` variants of the core (tests only) show that each checker can fail.
"""

from __future__ import annotations

import argparse
import enum
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from braid import limits
from braid.core.raft.messages import Entry, Message, Vote, VoteReply
from braid.core.raft.node import HardState, NodeId, NotLeader, RaftConfig, RaftNode, Role
from braid.sim.world import CheckFailed, World, failover_figures

# The tick the real node will use on 127.0.0.1-class networks (election timeout 10 ticks,
# randomized to 10..20; lease 8): failover figures are reported in it.
TICK_SECONDS = limits.raft_tick_seconds
EVENTS_MAX = 1_000_000  # a run that needs more is a message storm (each is far below it)

__all__ = ["Broken", "CheckFailed", "Faults", "RunResult", "Sweep", "run_seed", "sweep"]


class Broken(enum.Enum):
    """Deliberately wrong cores, each switched on only by a test that shows a checker
    catches it."""

    COMMIT_ALONE = "commit-alone"  # a leader commits on its own vote
    COMMIT_UNDURABLE = "commit-undurable"  # the leader counts its own entry before it is durable
    DOUBLE_VOTE = "double-vote"  # a replica grants a second vote in one term
    STALE_LEASE = "stale-lease"  # a leader's lease never lapses
    ACK_UNDURABLE = "ack-undurable"  # a follower acknowledges entries before they are durable


class _CommitAlone(RaftNode):
    def _maybe_commit(self) -> bool:
        index = self.log.persisted
        if index <= self.log.committed or self.log.term_at(index) != self.term:
            return False
        return self.log.commit_to(index)


class _CommitUndurable(RaftNode):
    def _maybe_commit(self) -> bool:
        saved = self.log.persisted
        self.log.persisted = self.log.last_index
        try:
            return super()._maybe_commit()
        finally:
            self.log.persisted = saved


class _DoubleVote(RaftNode):
    def _on_vote(self, source: NodeId, message: Vote) -> None:
        if not message.pre and self.log.is_up_to_date(message.last_index, message.last_term):
            self.vote = source
            self._send(source, VoteReply(message.term, True))
            return
        super()._on_vote(source, message)


class _StaleLease(RaftNode):
    def lease_valid(self) -> bool:
        return self.role is Role.LEADER


class _AckUndurable(RaftNode):
    def _flush_acks(self) -> None:
        saved = self.log.persisted
        self.log.persisted = self.log.last_index
        try:
            super()._flush_acks()
        finally:
            self.log.persisted = saved


_VARIANTS: dict[Broken | None, type[RaftNode]] = {
    None: RaftNode,
    Broken.COMMIT_ALONE: _CommitAlone,
    Broken.COMMIT_UNDURABLE: _CommitUndurable,
    Broken.DOUBLE_VOTE: _DoubleVote,
    Broken.STALE_LEASE: _StaleLease,
    Broken.ACK_UNDURABLE: _AckUndurable,
}


@dataclass
class Faults:
    """One seed's fault mix (drawn from the seed: swarm testing)."""

    loss: float
    duplicate: float
    delay_max: float  # ticks
    disk_latency_max: float  # ticks
    drift_max: float  # a replica's tick period is 1 ± this
    partitions: bool
    crashes: bool
    pauses: bool
    compact_after: int  # a replica compacts its log this many applied entries past it (0: never)

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        return cls(
            loss=rng.choice([0.0, 0.01, 0.05, 0.2]),
            duplicate=rng.choice([0.0, 0.01, 0.05]),
            delay_max=rng.choice([0.2, 1.0, 3.0]),
            disk_latency_max=rng.choice([0.1, 0.5, 2.0, 5.0]),
            drift_max=rng.choice([0.0, 0.02, 0.05]),
            partitions=rng.random() < 0.6,
            crashes=rng.random() < 0.6,
            pauses=rng.random() < 0.4,
            compact_after=rng.choice([0, 8, 40]),
        )


@dataclass
class _Replica:
    id: NodeId
    node: RaftNode
    period: float  # simulated time per tick of this replica's clock
    hard_state: HardState = field(default_factory=HardState)
    offset: int = 0  # the durable log starts after (offset, offset_term): compacted or installed
    offset_term: int = 0
    entries: list[Entry] = field(default_factory=list)  # durable, after the offset
    applied: list[Entry] = field(default_factory=list)
    pending_hard: HardState | None = None
    pending_snapshot: tuple[int, int] | None = None
    held: list[tuple[NodeId, Message]] = field(default_factory=list)
    last_write: float = 0.0  # when the newest write handed to the disk becomes durable
    incarnation: int = 0  # bumped by a crash: events of an earlier life are dropped
    running: bool = True
    lost: bool = False  # its host is gone for good (replaced by a new, empty replica)
    replaced: bool = False  # ... and the new replica is a member in its place
    base_voters: tuple[NodeId, ...] = ()  # the membership as of its durable log's offset
    paused_until: float = 0.0
    next_tick: float = 0.0


@dataclass
class RunResult:
    seed: int
    failure: str | None
    checker: str | None
    trace: list[str]
    figures: Counter[str]
    failovers: list[float]  # ticks from a leader's crash to the next acknowledged entry
    faults: Faults


class _Simulation(World):
    def __init__(
        self, seed: int, broken: Broken | None, tracing: bool, failover_only: bool = False
    ) -> None:
        super().__init__(seed, tracing, EVENTS_MAX)
        rng = self.rng
        self.size = rng.choice([3, 3, 5])
        self.faults = self.faults_drawn = Faults.draw(rng)
        self.failover_only = failover_only
        if failover_only:
            # A healthy 127.0.0.1-class network and fast disks; the only fault is the
            # leader's host crashing: the failover the acceptance figure is about.
            self.faults = self.faults_drawn = Faults(
                0.0, 0.0, 0.25, 0.25, 0.05, False, True, False, self.faults.compact_after
            )
        self.config = RaftConfig()  # braid.limits' timings
        self.node_class = _VARIANTS[broken]
        voters = list(range(1, self.size + 1))
        self.replicas: dict[NodeId, _Replica] = {}
        for node_id in voters:
            drift = rng.uniform(-self.faults.drift_max, self.faults.drift_max)
            replica = _Replica(node_id, self._new_node(node_id, voters), 1.0 + drift)
            replica.base_voters = tuple(voters)
            self.replicas[node_id] = replica
            self._schedule_tick(replica, rng.uniform(0, 1))
        # What was promised and seen.
        self.leaders: dict[int, NodeId] = {}  # term → leader
        self.committed: dict[int, Entry] = {}  # index → the entry applied there
        self.acknowledged: dict[int, Entry] = {}  # index → entry the client was told of
        self.proposed = 0
        # Unavailability: a leader's crash starts the clock, the next entry a later term's
        # leader acknowledges stops it.
        self.failovers: list[float] = []
        self._outage: tuple[float, int] | None = None  # (since, the crashed leader's term)

    def _new_node(self, node_id: NodeId, voters: list[NodeId], **restored: object) -> RaftNode:
        node_rng = random.Random(self.rng.getrandbits(64))
        return self.node_class(node_id, voters, self.config, node_rng, **restored)  # type: ignore[arg-type]

    def run(self, faulty_until: float, quiet_until: float) -> None:
        self._schedule_faults(faulty_until)
        self._schedule_client(quiet_until)
        self.run_events(quiet_until, self._check_instant)
        self._check_liveness(faulty_until)

    # -- replicas ---------------------------------------------------------------------------

    def _schedule_tick(self, replica: _Replica, delay: float) -> None:
        def on_ticks(ticks: int) -> None:
            for _ in range(ticks):
                replica.node.tick()
            self._compact(replica)
            self._process(replica)

        self.schedule_ticks(replica, delay, on_ticks)

    def _process(self, replica: _Replica) -> None:
        """Do what the replica's Ready says (the driver contract in core/raft/node.py)."""
        node = replica.node
        if node.role is Role.LEADER:
            self._observe(replica)
        ready = node.ready()
        for entry in ready.committed:
            self._apply(replica, entry)
        messages = ready.messages
        if ready.hard_state is not None or ready.entries or ready.snapshot is not None:
            if ready.hard_state is not None:
                replica.pending_hard = ready.hard_state
            if ready.snapshot is not None:
                replica.pending_snapshot = ready.snapshot
                self.figures["snapshots installed"] += 1
            self._write(replica, ready.hard_state, ready.entries, ready.snapshot)
        if (replica.pending_hard is not None or replica.pending_snapshot is not None) and messages:
            replica.held.extend(messages)  # after a hard state or snapshot not yet durable
            messages = []
        for target, message in messages:
            self._send(replica.id, target, message)

    def _write(
        self,
        replica: _Replica,
        hard: HardState | None,
        entries: list[Entry],
        snapshot: tuple[int, int] | None = None,
    ) -> None:
        """Hand a Ready's snapshot, hard state and entries to the replica's disk; durable
        later, in the order written."""
        incarnation = replica.incarnation
        latency = self.rng.uniform(0.0, self.faults.disk_latency_max)

        def durable() -> None:
            if replica.incarnation != incarnation:
                return  # the replica crashed first: this write never made it
            if snapshot is not None:
                self._install(replica, snapshot)
            if hard is not None:
                replica.hard_state = hard
                if replica.pending_hard == hard:
                    replica.pending_hard = None
            if replica.pending_hard is None and replica.pending_snapshot is None:
                held, replica.held = replica.held, []
                for target, message in held:
                    self._send(replica.id, target, message)
            for entry in entries:
                if entry.index <= replica.offset:
                    continue  # superseded by a snapshot installed since
                del replica.entries[entry.index - replica.offset - 1 :]
                replica.entries.append(entry)
            if entries and replica.running:
                replica.node.persisted(entries[-1].index, entries[-1].term)
                self._process(replica)

        # Writes complete in the order they were issued (one log, appended in order).
        when = max(self.now + latency, replica.last_write)
        replica.last_write = when
        self.at(when, durable)

    def _send(self, source: NodeId, target: NodeId, message: Message) -> None:
        faults = self.faults

        def deliver() -> None:
            self._deliver(source, target, message)

        if self.transmit(source, target, deliver, faults.loss, faults.duplicate, faults.delay_max):
            self.figures["messages"] += 1
        else:
            self.figures["messages lost"] += 1

    def _deliver(self, source: NodeId, target: NodeId, message: Message) -> None:
        replica = self.replicas[target]
        if not replica.running or self.now < replica.paused_until:
            return  # a stopped or paused process: the message is lost on its socket
        if (source, target) in self.cut:
            return
        replica.node.step(source, message)
        self._process(replica)

    def _install(self, replica: _Replica, snapshot: tuple[int, int]) -> None:
        """A snapshot made durable: the applied state as of its index, loaded from peers
        (here: the entries applied there), and a log that starts after it."""
        index, term = snapshot
        missing = [i for i in range(1, index + 1) if i not in self.committed]
        if missing:
            raise CheckFailed(
                "state-machine safety", f"a snapshot at {index} covers unapplied {missing[:5]}"
            )
        replica.applied = [self.committed[i] for i in range(1, index + 1)]
        replica.offset, replica.offset_term = index, term
        replica.entries = []
        replica.base_voters = replica.node.base_voters
        if replica.pending_snapshot == snapshot:
            replica.pending_snapshot = None

    def _compact(self, replica: _Replica) -> None:
        """The applied state holds the log's oldest entries: drop them (node and disk)."""
        node = replica.node
        keep = self.faults.compact_after
        if not keep or node.log.applied - node.log.offset <= 2 * keep:
            return
        index = node.log.applied - keep
        node.compact(index)
        replica.base_voters = node.base_voters
        if index > replica.offset and index - replica.offset <= len(replica.entries):
            replica.offset_term = replica.entries[index - replica.offset - 1].term
            replica.entries = replica.entries[index - replica.offset :]
            replica.offset = index
            self.figures["compactions"] += 1

    def _apply(self, replica: _Replica, entry: Entry) -> None:
        expected_index = len(replica.applied) + 1
        if entry.index != expected_index:
            raise CheckFailed(
                "state-machine safety",
                f"replica {replica.id} applied index {entry.index} after {expected_index - 1}",
            )
        known = self.committed.get(entry.index)
        if known is not None and known != entry:
            raise CheckFailed(
                "state-machine safety",
                f"replica {replica.id} applied {entry} at {entry.index}; another applied {known}",
            )
        self.committed[entry.index] = entry
        replica.applied.append(entry)

    def _observe(self, replica: _Replica) -> None:
        node = replica.node
        if node.role is not Role.LEADER:
            return
        other = self.leaders.get(node.term)
        if other is not None and other != replica.id:
            raise CheckFailed(
                "election safety", f"replicas {other} and {replica.id} lead term {node.term}"
            )
        if other is None:
            self.leaders[node.term] = replica.id
            self.figures["elections"] += 1
            self.note(lambda: f"{replica.id} leads term {node.term}")
            for index, entry in self.committed.items():
                if index < node.log.offset:
                    continue  # compacted: its applied state holds it (checked when applied)
                if node.log.term_at(index) != entry.term:
                    raise CheckFailed(
                        "leader completeness",
                        f"{replica.id} leads term {node.term} without committed entry {entry}",
                    )

    # -- checks -----------------------------------------------------------------------------

    def _check_instant(self) -> None:
        holders = [
            replica.id
            for replica in self.replicas.values()
            if replica.running and self.now >= replica.paused_until and self._lease(replica)
        ]
        if len(holders) > 1:
            raise CheckFailed("lease safety", f"replicas {holders} hold a lease at once")
        for index, entry in self.acknowledged.items():
            known = self.committed.get(index)
            if known is not None and known != entry:
                raise CheckFailed("acknowledged entry lost", f"{entry} replaced by {known}")

    def _lease(self, replica: _Replica) -> bool:
        """The lease as the replica would judge it if asked now: its clock caught up."""
        node = replica.node
        behind = self.ticks_behind(replica)
        node.ticks += behind  # the ticks its clock has counted but not yet delivered
        try:
            return node.lease_valid()
        finally:
            node.ticks -= behind

    def _check_liveness(self, faulty_until: float) -> None:
        running = [r for r in self.replicas.values() if r.running]
        leaders = [r.id for r in running if r.node.role is Role.LEADER]
        if not leaders:
            raise CheckFailed(
                "liveness", f"no leader {self.now - faulty_until:.0f} ticks after faults"
            )
        late = [index for index in self.acknowledged if index not in self.committed]
        if late:
            raise CheckFailed("liveness", f"acknowledged entries {late[:5]} never applied")
        proposed_late = self.figures["proposals after faults"]
        committed_late = self.figures["commits after faults"]
        if proposed_late and not committed_late:
            raise CheckFailed("liveness", "nothing proposed after the faults committed")

    # -- faults and the client ----------------------------------------------------------------

    def _schedule_faults(self, until: float) -> None:
        rng, faults = self.rng, self.faults
        time_at = rng.uniform(5, 30)
        while time_at < until:
            kinds = [
                kind
                for kind, on in (
                    ("partition", faults.partitions),
                    ("crash", faults.crashes),
                    ("power", faults.crashes),
                    ("pause", faults.pauses),
                    ("transfer", True),
                    ("replace", faults.crashes),
                )
                if on
            ]
            if not kinds:
                break
            kind = "leader-crash" if self.failover_only else rng.choice(kinds)
            duration = rng.uniform(5, 60)
            end = min(time_at + duration, until)
            if kind == "partition":
                self.at(time_at, self._partition)
                self.at(end, self.heal)
            elif kind == "power":
                # Every replica stops at once (a power cut): only what each had made
                # durable survives, which must be every committed entry's majority.
                self.at(time_at, self._power_cut)
            elif kind == "transfer":
                self.at(time_at, self._transfer)
            elif kind == "replace":
                self.at(time_at, self._lose_host)
            elif kind == "leader-crash":
                self.at(time_at, lambda: self._crash(self._victim(True)))
            elif kind == "crash":
                # Most often whoever leads then (the fault that costs availability).
                leader = rng.random() < 0.7
                self.at(time_at, lambda leader=leader: self._crash(self._victim(leader)))  # type: ignore[misc]
            else:
                victim = rng.choice(list(self.replicas))
                self.at(time_at, lambda v=victim, d=end - time_at: self._pause(v, d))  # type: ignore[misc]
            time_at = end + rng.uniform(1, 20)
        self.at(until, self._heal_all)

    def _partition(self) -> None:
        self.partition(list(self.replicas))

    def _heal_all(self) -> None:
        self.cut = set()
        for node_id, replica in self.replicas.items():
            if not replica.running:
                self._restart(node_id)
        was = self.faults
        self.faults = Faults(0.0, 0.0, was.delay_max, was.disk_latency_max,
                             was.drift_max, False, False, False, was.compact_after)  # fmt: skip
        self.note(lambda: "faults stop")

    def _transfer(self) -> None:
        """An operator moves leadership (a drain) to a random other replica."""
        leaders = [r for r in self.replicas.values() if r.running and r.node.role is Role.LEADER]
        if not leaders:
            return
        replica = leaders[0]
        target = self.rng.choice(replica.node.peers)
        replica.node.transfer(target)
        self.figures["transfers"] += 1
        self.note(lambda: f"transfer {replica.id} -> {target}")
        self._process(replica)

    def _lose_host(self) -> None:
        """A host dies for good: its replica is removed from the group and a new, empty one
        added in its place, one change at a time, by an operator retrying until the leader
        takes each change."""
        if any(replica.lost and not replica.replaced for replica in self.replicas.values()):
            return  # one replacement at a time
        candidates = [r for r in self.replicas.values() if r.running and not r.lost]
        if len(candidates) <= len(self.replicas) // 2 + 1:
            return
        victim = self.rng.choice(candidates)
        self._crash(victim.id, majority_kept=False, restart=False)
        victim.lost = True
        self.figures["hosts lost"] += 1
        self.note(lambda: f"host of {victim.id} lost for good")
        self.at(self.now + 1, lambda: self._replace(victim.id, None))

    def _replace(self, lost: NodeId, new: NodeId | None) -> None:
        """The operator's next step in replacing `lost` (by `new`, once it exists)."""
        leaders = [r for r in self.replicas.values() if r.running and r.node.role is Role.LEADER]
        retry = self.now + self.rng.uniform(1, 5)
        if not leaders or leaders[0].node.config_pending:
            self.at(retry, lambda: self._replace(lost, new))
            return
        leader = leaders[0]
        voters = set(leader.node.voters)
        if lost in voters:
            leader.node.change_voters(sorted(voters - {lost}))
            self.note(lambda: f"{leader.id} proposes removing {lost}")
        elif new is None:
            new = max(self.replicas) + 1
            joined = tuple(sorted(voters | {new}))
            drift = self.rng.uniform(-self.faults.drift_max, self.faults.drift_max)
            replica = _Replica(new, self._new_node(new, list(joined)), 1.0 + drift)
            replica.base_voters = joined
            self.replicas[new] = replica
            self._schedule_tick(replica, self.rng.uniform(0, 1))
            leader.node.change_voters(list(joined))
            self.note(lambda: f"{leader.id} proposes adding {new}, empty")
        elif new in voters:
            self.replicas[lost].replaced = True
            self.figures["hosts replaced"] += 1
            return
        else:
            leader.node.change_voters(sorted(voters | {new}))
        self._process(leader)
        self.at(retry, lambda: self._replace(lost, new))

    def _power_cut(self) -> None:
        self._outage = None  # not a failover: everything stopped
        self.figures["power cuts"] += 1
        self.note(lambda: "power cut")
        for node_id, replica in list(self.replicas.items()):
            if not replica.lost:
                self._crash(node_id, majority_kept=False)

    def _victim(self, leader: bool) -> NodeId:
        leaders = [r.id for r in self.replicas.values() if r.running and r.node.role is Role.LEADER]
        if leader and leaders:
            return leaders[0]
        return self.rng.choice([r.id for r in self.replicas.values() if not r.lost])

    def _crash(self, node_id: NodeId, *, majority_kept: bool = True, restart: bool = True) -> None:
        """Stop a replica (it restarts later from what its disk made durable). A lone crash
        keeps a majority running, so the group stays available; a power cut stops all."""
        replica = self.replicas[node_id]
        if not replica.running:
            return
        running = sum(r.running for r in self.replicas.values())
        if majority_kept and running <= len(self.replicas) // 2 + 1:
            return
        if majority_kept and replica.node.role is Role.LEADER and self._outage is None:
            self._outage = (self.now, replica.node.term)
        if restart:
            self.at(self.now + self.rng.uniform(2, 40), lambda: self._restart(node_id))
        replica.running = False
        replica.incarnation += 1
        replica.pending_hard = None
        replica.pending_snapshot = None
        replica.held = []
        self.figures["crashes"] += 1
        self.note(lambda: f"crash {node_id}")

    def _restart(self, node_id: NodeId) -> None:
        replica = self.replicas[node_id]
        if replica.running or replica.lost:
            return
        applied = min(len(replica.applied), replica.offset + len(replica.entries))
        replica.node = self._new_node(
            node_id,
            list(replica.base_voters),
            hard_state=replica.hard_state,
            entries=list(replica.entries),
            offset=replica.offset,
            offset_term=replica.offset_term,
            applied=applied,
        )
        replica.applied = replica.applied[:applied]
        replica.running = True
        self._schedule_tick(replica, replica.period)
        self.note(lambda: f"restart {node_id} (term {replica.hard_state.term})")

    def _pause(self, node_id: NodeId, duration: float) -> None:
        replica = self.replicas[node_id]
        replica.paused_until = self.now + duration
        self.figures["pauses"] += 1
        self.note(lambda: f"pause {node_id} for {duration:.1f}")

    def _schedule_client(self, until: float) -> None:
        def propose() -> None:
            leaders = [
                r
                for r in self.replicas.values()
                if r.running and self.now >= r.paused_until and r.node.role is Role.LEADER
            ]
            if leaders:
                replica = self.rng.choice(leaders)
                self.proposed += 1
                data = f"w{self.proposed}".encode()
                try:
                    index = replica.node.propose(data)
                except NotLeader:
                    index = 0
                if index:
                    self._watch(replica, index, data)
                    self._process(replica)
            if self.now + 2 < until:
                self.at(self.now + self.rng.uniform(0.2, 3.0), propose)

        self.at(self.rng.uniform(1, 5), propose)

    def _watch(self, replica: _Replica, index: int, data: bytes) -> None:
        """Tell the client its entry committed once its leader applies it (an ack)."""
        term = replica.node.term
        entry = Entry(term, index, data)
        after_faults = self.faults.loss == 0 and not self.faults.partitions
        if after_faults:
            self.figures["proposals after faults"] += 1

        def check() -> None:
            applied = replica.applied
            if len(applied) >= index and applied[index - 1] == entry:
                self.acknowledged[index] = entry
                self.figures["acknowledged"] += 1
                if self._outage is not None and term > self._outage[1]:
                    self.failovers.append(self.now - self._outage[0])
                    self._outage = None
                if after_faults:
                    self.figures["commits after faults"] += 1
                return
            if replica.running and replica.node.role is Role.LEADER and replica.node.term == term:
                self.at(self.now + 0.5, check)

        self.at(self.now + 0.5, check)


def run_seed(
    seed: int,
    broken: Broken | None = None,
    *,
    trace: bool = False,
    ticks: float = 300.0,
    failover_only: bool = False,
) -> RunResult:
    simulation = _Simulation(seed, broken, trace, failover_only)
    failure = checker = None
    try:
        simulation.run(faulty_until=ticks * 2 / 3, quiet_until=ticks)
    except CheckFailed as error:
        failure, checker = str(error), error.checker
    return RunResult(
        seed,
        failure,
        checker,
        simulation.trace,
        simulation.figures,
        simulation.failovers,
        simulation.faults_drawn,
    )


SIMULATED_TICKS = 300.0  # per seed: two thirds with faults, then a third to heal


@dataclass
class Sweep:
    """Many seeds' results summed: figures, failovers, the first failure, the speed."""

    seeds: int = 0
    figures: Counter[str] = field(default_factory=Counter)
    failovers: list[float] = field(default_factory=list)
    lan_failovers: list[float] = field(default_factory=list)  # delays, disks within a tick
    failed: RunResult | None = None
    wall_seconds: float = 0.0

    def add(self, result: RunResult) -> None:
        self.seeds += 1
        self.figures.update(result.figures)
        self.failovers += result.failovers
        if result.faults.delay_max <= 1.0 and result.faults.disk_latency_max <= 0.5:
            self.lan_failovers += result.failovers
        if result.failure is not None and self.failed is None:
            self.failed = result

    @property
    def simulated_seconds_per_wall_second(self) -> float:
        simulated = self.seeds * SIMULATED_TICKS * TICK_SECONDS
        return simulated / self.wall_seconds if self.wall_seconds else 0.0

    def failover_lines(self) -> list[str]:
        lines = []
        samples = [("all fault mixes", self.failovers)]
        if len(self.lan_failovers) != len(self.failovers):
            samples.append(("LAN-like", self.lan_failovers))
        for name, sample in samples:
            if sample:
                lines.append(
                    f"failover after a leader crash, {name} ({len(sample)}): "
                    f"{failover_figures(sample, TICK_SECONDS)} "
                    f"(a tick of {TICK_SECONDS * 1000:.0f} ms)"
                )
        return lines


def sweep(
    seeds: range,
    broken: Broken | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    failover_only: bool = False,
) -> Sweep:
    """Run `seeds` until the first failure; `progress` is told each seed done."""
    summary = Sweep()
    started = time.perf_counter()
    for seed in seeds:
        summary.add(run_seed(seed, broken, ticks=SIMULATED_TICKS, failover_only=failover_only))
        if progress is not None:
            progress(seed)
        if summary.failed is not None:
            break
    summary.wall_seconds = time.perf_counter() - started
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="replay this one seed")
    parser.add_argument("--seeds", type=int, default=200, help="run seeds 0..N-1 (default 200)")
    parser.add_argument(
        "--broken",
        choices=[variant.value for variant in Broken],
        help="a deliberately broken core (to see a checker fail)",
    )
    parser.add_argument("--trace", action="store_true", help="with --seed: print every event")
    parser.add_argument(
        "--failover",
        action="store_true",
        help="only the leader's host crashes, on a healthy network: failover figures",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m braid.sim.raft_cluster")
    add_arguments(parser)
    args = parser.parse_args(argv)
    broken = Broken(args.broken) if args.broken else None
    if args.seed is not None:
        result = run_seed(args.seed, broken, trace=args.trace, failover_only=args.failover)
        print("\n".join(result.trace))
        print(f"seed {args.seed}: {result.failure or 'ok'}")
        return 0 if result.failure is None else 1
    summary = sweep(range(args.seeds), broken, failover_only=args.failover)
    figures = dict(sorted(summary.figures.items()))
    print(f"{summary.seeds} seeds in {summary.wall_seconds:.1f} s: {figures}")
    print("\n".join(summary.failover_lines()))
    if summary.failed is not None:
        print(f"seed {summary.failed.seed} failed: {summary.failed.failure}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
