"""Many Raft groups on a few hosts, in simulated time, from one seed: `braid.core.multiraft.host`
driven as the real node will drive it, over a network and disks that fail, and checked.

Each host ticks with its own drifting clock and holds a replica of every group. Its driver
writes each HostReady to the host's one log (every group's entries in one write, durable
after a random latency, in order), holds the Ready's envelopes until its hard states are
durable, reports `persisted(number)`, and applies what is committed. Envelopes arrive after a
random delay, or are lost, duplicated, reordered; the fault schedule partitions hosts, crashes
them (each loses what its disk had not made durable, and restarts later as a new
incarnation), cuts the power of all at once, and pauses them (a process stopped past its
leases). Idle groups go quiet, so the checkers run over quiet and busy groups alike. A client
proposes entries to random groups at their leaders, and after a leader's host crashes keeps
retrying the groups it led, as an application's document actors would.

Checked, per group (a failure names the checker, the group and the seed, which replays it):

- election safety: at most one leader per term;
- state-machine safety: every replica applies the same entries in index order, no gap;
- lease safety: at no instant do two running hosts hold a valid lease for one group (quiet
  leaders' leases included: they stand on the hosts' beats);
- log matching (at the end of each run): two logs that hold an entry of one term at one
  index hold the same entries up to it;
- no acknowledged entry lost: an acknowledged entry is what every replica applies there;
- liveness: once faults stop, every group has a leader and the client's entries commit.

It measures each group's unavailability after its leader's host crashes (crash → first entry
acknowledged in a later term), for quiet and busy groups alike, and the envelopes and group
messages the hosts send.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from braid import limits
from braid.core.document import DocumentLog
from braid.core.multiraft.host import Host
from braid.core.multiraft.messages import Envelope, GroupId, HostId
from braid.core.partition import copy_log, document_digest
from braid.core.raft.messages import Entry
from braid.core.raft.node import HardState, NotLeader, RaftConfig, RaftNode, Role
from braid.model import Key
from braid.sim.host_documents import (
    DocumentClient,
    ReplicaDocuments,
    Write,
    decode_summary,
    encode_summary,
)
from braid.sim.host_world import HOSTS, BrokenHost, Disk, HostFaults, Machine
from braid.sim.raft_cluster import _VARIANTS, TICK_SECONDS, Broken
from braid.sim.world import CheckFailed, World, failover_figures

__all__ = ["BrokenHost", "HostFaults", "HostRunResult", "HostSweep", "run_seed", "sweep"]

EVENTS_MAX = 2_000_000
COMMIT_BOUND_TICKS = limits.raft_commit_bound_ticks
SIMULATED_TICKS = 300.0


@dataclass
class HostRunResult:
    seed: int
    failure: str | None
    checker: str | None
    trace: list[str]
    figures: Counter[str]
    failovers: list[float]  # ticks, crash → first acknowledged entry of a later term
    quiet_failovers: list[float]  # those of groups that were quiet when the host crashed


class _Simulation(World):
    def __init__(
        self,
        seed: int,
        *,
        groups: int,
        hosts: int = 3,
        broken: Broken | None = None,
        broken_host: BrokenHost | None = None,
        tracing: bool = False,
        failover_only: bool = False,
    ) -> None:
        super().__init__(seed, tracing, EVENTS_MAX)
        rng = self.rng
        self.faults = HostFaults.draw(rng)
        if failover_only:
            self.faults = HostFaults(0.0, 0.0, 0.25, 0.25, 0.05, False, True, False)
        self.failover_only = failover_only
        self.config = RaftConfig(quiesce_ticks=limits.raft_quiesce_ticks)
        self.node_class: type[RaftNode] = _VARIANTS[broken]
        self.host_class = HOSTS[broken_host]
        self.broken_host = broken_host
        self.group_ids = list(range(1, groups + 1))
        self.host_ids = list(range(1, hosts + 1))
        self.machines: dict[HostId, Machine] = {}
        for host_id in self.host_ids:
            drift = rng.uniform(-self.faults.drift_max, self.faults.drift_max)
            disk = Disk()
            machine = Machine(host_id, self._new_host(host_id, 0, disk), 1.0 + drift, disk)
            machine.documents = ReplicaDocuments.replayed(self.group_ids, disk.base, disk.applied)
            self.machines[host_id] = machine
            self._schedule_tick(machine, rng.uniform(0, 1))
        self.client = DocumentClient(
            self.group_ids, {m.id: m.documents for m in self.machines.values()}
        )
        self.leaders: dict[tuple[GroupId, int], HostId] = {}
        self.committed: dict[GroupId, dict[int, Entry]] = {g: {} for g in self.group_ids}
        self.acknowledged: dict[GroupId, dict[int, Entry]] = {g: {} for g in self.group_ids}
        self.failovers: list[float] = []
        self.quiet_failovers: list[float] = []
        # group → (since, the crashed leader's term, quiet then)
        self._outages: dict[GroupId, tuple[float, int, bool]] = {}
        self._retrying: set[GroupId] = set()  # an outage's retried write is in flight

    def _new_host(self, host_id: HostId, incarnation: int, disk: Disk) -> Host:
        host = self.host_class(
            host_id,
            self.config,
            random.Random(self.rng.getrandbits(64)),
            incarnation=incarnation,
            commit_bound_ticks=COMMIT_BOUND_TICKS,
            node_factory=self.node_class,
            describe=lambda group: self._describe(host_id, group),
        )
        for group in self.group_ids:
            log = disk.logs.setdefault(group, [])
            disk.applied.setdefault(group, [])
            offset, offset_term = disk.offsets.get(group, (0, 0))
            host.add_group(
                group,
                self.host_ids,
                hard_state=disk.hard.get(group, HardState()),
                entries=list(log),
                offset=offset,
                offset_term=offset_term,
                applied=min(disk.applied_index(group), offset + len(log)),
            )
        return host

    def _describe(self, host_id: HostId, group: GroupId) -> tuple[int, bytes]:
        """What a snapshot of this host's replica carries: its applied index, and per
        document the head seq and digest."""
        partition = self.machines[host_id].documents.partitions[group]
        return partition.applied_index, encode_summary(partition.summary())

    def run(self, faulty_until: float, quiet_until: float) -> None:
        self._schedule_faults(faulty_until)
        self._schedule_client(quiet_until)
        self.run_events(quiet_until, self._check_leases)
        self._check_log_matching()
        self._check_liveness()

    # -- hosts ------------------------------------------------------------------------------

    def _schedule_tick(self, machine: Machine, delay: float) -> None:
        def on_ticks(ticks: int) -> None:
            for _ in range(ticks):
                machine.host.tick()
            self._compact(machine)
            self._process(machine)

        self.schedule_ticks(machine, delay, on_ticks)

    def _process(self, machine: Machine) -> None:
        host = machine.host
        ready = host.ready()
        for group, leads in ready.leadership:
            if leads:
                node = host.groups[group]
                other = self.leaders.setdefault((group, node.term), machine.id)
                if other != machine.id:
                    raise CheckFailed(
                        "election safety",
                        f"group {group}: hosts {other} and {machine.id} lead term {node.term}",
                    )
                self.note(lambda g=group, t=node.term: f"h{machine.id} leads g{g} in term {t}")  # type: ignore[misc]
            self._told(self.client.completed(machine.documents.leadership(group, leads)))
        for group, position, state in ready.snapshots:
            if not self._install(machine, group, position, state):
                return  # no peer could give the state: the host was stopped (see _install)
        for group, entry in ready.committed:
            self._apply(machine, group, entry)
        machine.documents.open_writes(host)
        for group in ready.stalled:
            # No durable majority in time (seed 002): the writes fail, retryably; their
            # documents take new writes once what was proposed for them has settled.
            partition = machine.documents.partitions[group]
            reason = f"no durable majority within {COMMIT_BOUND_TICKS} ticks"
            self._told(self.client.completed(partition.catastrophic(reason)))
            self.figures["catastrophic: no durable majority"] += 1
        messages = ready.messages
        if ready.hard_states or ready.entries:
            self._write(machine, ready.number, ready.hard_states, ready.entries)
            if ready.hard_states:
                machine.pending_hard += 1
        if machine.pending_hard and messages:
            machine.held.extend(messages)
            messages = []
        for target, envelope in messages:
            self._send(machine.id, target, envelope)

    def _write(
        self,
        machine: Machine,
        number: int,
        hard_states: list[tuple[GroupId, HardState]],
        entries: list[tuple[GroupId, Entry]],
    ) -> None:
        incarnation = machine.incarnation
        latency = self.rng.uniform(0.0, self.faults.disk_latency_max)

        def durable() -> None:
            if machine.incarnation != incarnation:
                return  # it crashed first: this write never made it
            if self.rng.random() < self.faults.sync_failures:
                self._log_write_failed(machine)
                return
            disk = machine.disk
            for group, state in hard_states:
                disk.hard[group] = state
            for group, entry in entries:
                offset = disk.offsets.get(group, (0, 0))[0]
                if entry.index <= offset:
                    continue  # superseded by a snapshot installed since
                log = disk.logs[group]
                if entry.index - offset - 1 > len(log):
                    continue  # written before a snapshot moved the log on: never reported
                del log[entry.index - offset - 1 :]
                log.append(entry)
            if hard_states:
                machine.pending_hard -= 1
                if not machine.pending_hard:
                    held, machine.held = machine.held, []
                    for target, envelope in held:
                        self._send(machine.id, target, envelope)
            if entries and machine.running:
                machine.host.persisted(number)
                self._process(machine)

        when = max(self.now + latency, machine.last_write)
        machine.last_write = when
        self.at(when, durable)

    def _log_write_failed(self, machine: Machine) -> None:
        """A log write failed: what is durable is unknown, so the host stops (as etcd and
        PostgreSQL do after a failed fsync) and restarts from what its disk holds; first its
        partitions fail their pending writes, retryably (seed 002's catastrophic failure)."""
        self.figures["catastrophic: log write failed"] += 1
        for partition in machine.documents.partitions.values():
            self._told(self.client.completed(partition.catastrophic("its log write failed")))
        self.note(lambda: f"h{machine.id}: a log write failed")
        self._crash(machine.id, majority_kept=False)

    def _send(self, source: HostId, target: HostId, envelope: Envelope) -> None:
        faults = self.faults
        self.figures["envelopes"] += 1
        self.figures["group messages"] += len(envelope.items)

        def deliver() -> None:
            self._deliver(source, target, envelope)

        if not self.transmit(
            source, target, deliver, faults.loss, faults.duplicate, faults.delay_max
        ):
            self.figures["envelopes lost"] += 1

    def _deliver(self, source: HostId, target: HostId, envelope: Envelope) -> None:
        machine = self.machines[target]
        if not machine.running or self.now < machine.paused_until:
            return
        if (source, target) in self.cut:
            return
        machine.host.step(envelope)
        self._process(machine)

    def _apply(self, machine: Machine, group: GroupId, entry: Entry) -> None:
        applied = machine.disk.applied[group]
        applied_index = machine.disk.applied_index(group)
        if entry.index != applied_index + 1:
            raise CheckFailed(
                "state-machine safety",
                f"group {group}: host {machine.id} applied {entry.index} after {applied_index}",
            )
        known = self.committed[group].setdefault(entry.index, entry)
        if known != entry:
            raise CheckFailed(
                "state-machine safety",
                f"group {group}: host {machine.id} applied {entry}; another applied {known}",
            )
        acked = self.acknowledged[group].get(entry.index)
        if acked is not None and acked != entry:
            raise CheckFailed("acknowledged entry lost", f"group {group}: {acked} -> {entry}")
        applied.append(entry)
        partition = machine.documents.partitions[group]
        data = entry.data
        if self.broken_host is BrokenHost.LOSSY_APPLY and machine.id == 2 and entry.index % 7 == 0:
            data = b""  # applied as if it carried nothing
        self._told(self.client.completed(partition.apply(entry.index, entry.term, data)))
        self.client.applied(machine.id, group, partition)

    def _install(
        self, machine: Machine, group: GroupId, position: tuple[int, int], state: bytes
    ) -> bool:
        """A snapshot reached this replica (it was sick): pull each document the summary
        names from a peer, only through the head seq it names, checked by its digest, and
        take that state. If no running peer holds a document that far (the leader moved on
        and crashed meanwhile), the host stops and restarts from its durable state, where
        it is offered a snapshot again. The install is durable at once here (like the
        applied state's every change in this simulator): the applied state and the log's
        new start, before the reply that says so goes out."""
        index, term = position
        wanted = decode_summary(state)
        documents: dict[Key, DocumentLog] = {}
        for key, (head, digest) in wanted.items():
            pulled = self._pull(machine.id, group, key, head, digest)
            if pulled is None:
                self.figures["snapshot pulls failed"] += 1
                self._crash(machine.id, majority_kept=False)
                return False
            documents[key] = pulled
        partition = machine.documents.partitions[group]
        self._told(self.client.completed(partition.install(index, term, documents)))
        self.client.applied(machine.id, group, partition)
        self.figures["snapshots installed"] += 1
        self.figures["documents pulled"] += len(documents)
        self.note(lambda: f"h{machine.id} g{group} installs {len(documents)} documents at {index}")
        disk = machine.disk
        disk.base[group] = (index, term, {key: copy_log(log) for key, log in documents.items()})
        disk.applied[group] = []
        disk.offsets[group] = (index, term)
        disk.logs[group] = []
        return True

    def _pull(
        self, host_id: HostId, group: GroupId, key: Key, head: int, digest: bytes
    ) -> DocumentLog | None:
        for peer in self.machines.values():
            if peer.id == host_id or not peer.running:
                continue
            log = peer.documents.partitions[group].document(key)
            if log is None or log.head < head:
                continue
            prefix = DocumentLog([delta for delta in log.deltas if delta.seq_end <= head])
            if prefix.head == head and document_digest(prefix) == digest:
                return prefix
        return None

    def _compact(self, machine: Machine) -> None:
        """Each replica drops log entries its applied state holds, keeping `compact_after`:
        a follower that falls further behind is sent a snapshot."""
        keep = self.faults.compact_after
        if not keep:
            return
        disk = machine.disk
        for group, node in machine.host.groups.items():
            applied = min(node.log.applied, disk.applied_index(group))
            if applied - node.log.offset <= 2 * keep:
                continue
            index = applied - keep
            machine.host.compact(group, index)
            offset = disk.offsets.get(group, (0, 0))[0]
            log = disk.logs[group]
            if offset < index <= offset + len(log):
                disk.offsets[group] = (index, log[index - offset - 1].term)
                disk.logs[group] = log[index - offset :]
                self.figures["compactions"] += 1

    # -- checkers ---------------------------------------------------------------------------

    def _check_leases(self) -> None:
        holders: dict[GroupId, HostId] = {}
        for machine in self.machines.values():
            if not machine.running or self.now < machine.paused_until:
                continue
            host = machine.host
            behind = self.ticks_behind(machine)
            # The lease as the host would judge it if asked now: its clock caught up.
            host.ticks += behind
            for node in host.groups.values():
                node.ticks += behind
            try:
                for group, node in host.groups.items():
                    if node.role is Role.LEADER and host.lease_valid(group):
                        other = holders.setdefault(group, machine.id)
                        if other != machine.id:
                            raise CheckFailed(
                                "lease safety",
                                f"group {group}: hosts {other} and {machine.id} hold a lease",
                            )
            finally:
                host.ticks -= behind
                for node in host.groups.values():
                    node.ticks -= behind

    def _check_log_matching(self) -> None:
        """Log matching: where two replicas' logs hold an entry of the same term at one
        index, they hold the same entries up to it (as far as both still hold them)."""
        running = [m for m in self.machines.values() if m.running]
        for group in self.group_ids:
            logs = [m.host.groups[group].log for m in running]
            for position, first in enumerate(logs):
                for second in logs[position + 1 :]:
                    low = max(first.offset, second.offset) + 1
                    high = min(first.last_index, second.last_index)
                    matched = False
                    for index in range(high, low - 1, -1):
                        if not matched:
                            matched = first.term_at(index) == second.term_at(index)
                        if matched and first.entry(index) != second.entry(index):
                            raise CheckFailed(
                                "log matching",
                                f"group {group}: logs agree on a later entry's term but differ "
                                f"at {index}: {first.entry(index)} / {second.entry(index)}",
                            )

    def _check_liveness(self) -> None:
        for group in self.group_ids:
            leaders = [
                m.id
                for m in self.machines.values()
                if m.running and m.host.groups[group].role is Role.LEADER
            ]
            if not leaders:
                raise CheckFailed("liveness", f"group {group} has no leader after the faults")
            late = [i for i in self.acknowledged[group] if i not in self.committed[group]]
            if late:
                raise CheckFailed("liveness", f"group {group}: acknowledged {late[:5]} unapplied")
        if self.figures["proposals after faults"] and not self.figures["commits after faults"]:
            raise CheckFailed("liveness", "nothing proposed after the faults committed")
        for machine in self.machines.values():
            if machine.running:
                for group, partition in machine.documents.partitions.items():
                    self.client.check_replica(machine.id, group, partition)

    # -- faults and the client --------------------------------------------------------------

    def _schedule_faults(self, until: float) -> None:
        rng, faults = self.rng, self.faults
        time_at = rng.uniform(20, 40)
        kinds = [
            kind
            for kind, on in (
                ("partition", faults.partitions),
                ("crash", faults.crashes),
                ("power", faults.crashes),
                ("pause", faults.pauses),
            )
            if on
        ]
        while kinds and time_at < until:
            kind = "crash" if self.failover_only else rng.choice(kinds)
            end = min(time_at + rng.uniform(5, 60), until)
            if kind == "partition":
                self.at(time_at, self._partition)
                self.at(end, self.heal)
            elif kind == "power":
                self.at(time_at, self._power_cut)
            elif kind == "crash":
                leader = self.failover_only or rng.random() < 0.7
                self.at(time_at, lambda leader=leader: self._crash(self._victim(leader)))  # type: ignore[misc]
            else:
                victim = rng.choice(self.host_ids)
                self.at(time_at, lambda v=victim, d=end - time_at: self._pause(v, d))  # type: ignore[misc]
            time_at = end + rng.uniform(1, 20)
        self.at(until, self._heal_all)

    def _partition(self) -> None:
        self.partition(self.host_ids)

    def _heal_all(self) -> None:
        self.cut = set()
        for host_id, machine in self.machines.items():
            if not machine.running:
                self._restart(host_id)
        was = self.faults
        self.faults = HostFaults(
            0.0, 0.0, was.delay_max, was.disk_latency_max, was.drift_max, False, False, False,
            was.compact_after, 0.0,
        )  # fmt: skip
        self.note(lambda: "faults stop")

    def _victim(self, leader: bool) -> HostId:
        if leader:
            leading = Counter(
                m.id
                for m in self.machines.values()
                if m.running
                for node in m.host.groups.values()
                if node.role is Role.LEADER
            )
            if leading:
                return leading.most_common(1)[0][0]
        return self.rng.choice(self.host_ids)

    def _crash(self, host_id: HostId, *, majority_kept: bool = True) -> None:
        machine = self.machines[host_id]
        if not machine.running:
            return
        running = sum(m.running for m in self.machines.values())
        if majority_kept and running <= len(self.machines) // 2 + 1:
            return
        if majority_kept:
            for group, node in machine.host.groups.items():
                if node.role is Role.LEADER and group not in self._outages:
                    quiet = machine.host.is_quiet(group)
                    self._outages[group] = (self.now, node.term, quiet)
        self.at(self.now + self.rng.uniform(2, 40), lambda: self._restart(host_id))
        for write in self.client.abandon(host_id, machine.incarnation):
            self._retrying.discard(write.group)
        machine.running = False
        machine.incarnation += 1
        machine.pending_hard = 0
        machine.held = []
        self.figures["crashes"] += 1
        self.note(lambda: f"crash h{host_id}")

    def _restart(self, host_id: HostId) -> None:
        machine = self.machines[host_id]
        if machine.running:
            return
        disk = machine.disk
        for group in self.group_ids:
            # Never more applied than the durable log holds (applied entries are durable).
            base = disk.base.get(group, (0, 0, {}))[0]
            durable = disk.offsets.get(group, (0, 0))[0] + len(disk.logs[group])
            del disk.applied[group][max(0, durable - base) :]
        machine.host = self._new_host(host_id, machine.incarnation, disk)
        machine.documents = ReplicaDocuments.replayed(self.group_ids, disk.base, disk.applied)
        self.client.partitions[host_id] = machine.documents
        machine.running = True
        self._schedule_tick(machine, machine.period)
        self.note(lambda: f"restart h{host_id} (incarnation {machine.incarnation})")

    def _power_cut(self) -> None:
        self._outages = {}
        self.figures["power cuts"] += 1
        self.note(lambda: "power cut")
        for host_id in self.host_ids:
            self._crash(host_id, majority_kept=False)

    def _pause(self, host_id: HostId, duration: float) -> None:
        self.machines[host_id].paused_until = self.now + duration
        self.figures["pauses"] += 1
        self.note(lambda: f"pause h{host_id} for {duration:.1f}")

    def _schedule_client(self, until: float) -> None:
        # A few groups are written often; the rest rarely (most groups idle, as in practice).
        hot = self.group_ids[: max(1, len(self.group_ids) // 8)]

        def retry_outages() -> None:
            # The documents of a group whose leader's host crashed keep being written: the
            # application retries at once wherever a leader is (a write per group in flight).
            for group in sorted(self._outages):
                if group not in self._retrying:
                    self._propose(group, retry=True)
            if self.now + 2 < until:
                self.at(self.now + 0.25, retry_outages)

        def propose() -> None:
            if self.rng.random() < 0.7:
                group = self.rng.choice(hot)
            else:
                group = self.rng.choice(self.group_ids)
            self._propose(group)
            if self.now + 2 < until:
                self.at(self.now + self.rng.uniform(0.1, 1.0), propose)

        self.at(self.rng.uniform(1, 5), propose)
        self.at(1.0, retry_outages)

    def _leader(self, group: GroupId) -> Machine | None:
        for machine in self.machines.values():
            if (
                machine.running
                and self.now >= machine.paused_until
                and machine.host.groups[group].role is Role.LEADER
            ):
                return machine
        return None

    def _propose(self, group: GroupId, *, retry: bool = False) -> None:
        """A client call on one of the group's documents at its leader: a write, or a read
        under the leader's lease (always when the client must learn the head first)."""
        machine = self._leader(group)
        if machine is None:
            return
        host = machine.host
        key = self.rng.choice(self.client.keys[group])
        if self.broken_host is BrokenHost.READ_ANYWHERE and self.rng.random() < 0.5:
            anyone = self.machines[self.rng.choice(self.host_ids)]
            if anyone.running:
                self.client.read(group, key, anyone.host)
            return
        if not machine.documents.partitions[group].writable:
            return  # its term's first entry is not applied yet: it answers nothing
        if self.client.known_head.get(key, 0) is None or self.rng.random() < 0.2:
            if host.lease_valid(group):
                compute = self.rng.random() < 0.5
                self.client.read(group, key, host, compute=compute)
                self.figures["computes" if compute else "reads"] += 1
            return
        try:
            sent = self.client.write(group, key, host, machine.incarnation, self.now)
        except NotLeader:
            return
        if sent:
            if self.faults.loss == 0 and not self.faults.partitions:
                self.figures["proposals after faults"] += 1
            if retry:
                self._retrying.add(group)
            self._process(machine)

    def _told(self, acknowledged: list[Write]) -> None:
        """Writes acknowledged to the client: their entries are the acknowledged ones, and
        a later term's first one ends its group's outage."""
        for write in acknowledged:
            self._retrying.discard(write.group)
            self.acknowledged[write.group][write.index] = write.entry
            self.figures["acknowledged"] += 1
            if self.faults.loss == 0 and not self.faults.partitions:
                self.figures["commits after faults"] += 1
            outage = self._outages.get(write.group)
            if outage is not None and write.term > outage[1]:
                del self._outages[write.group]
                self.failovers.append(self.now - outage[0])
                if outage[2]:
                    self.quiet_failovers.append(self.now - outage[0])


def run_seed(
    seed: int,
    *,
    groups: int = 16,
    broken: Broken | None = None,
    broken_host: BrokenHost | None = None,
    trace: bool = False,
    ticks: float = SIMULATED_TICKS,
    failover_only: bool = False,
) -> HostRunResult:
    simulation = _Simulation(
        seed,
        groups=groups,
        broken=broken,
        broken_host=broken_host,
        tracing=trace,
        failover_only=failover_only,
    )
    failure = checker = None
    try:
        simulation.run(faulty_until=ticks * 2 / 3, quiet_until=ticks)
    except CheckFailed as error:
        failure, checker = str(error), error.checker
    return HostRunResult(
        seed,
        failure,
        checker,
        simulation.trace,
        simulation.figures,
        simulation.failovers,
        simulation.quiet_failovers,
    )


@dataclass
class HostSweep:
    seeds: int = 0
    figures: Counter[str] = field(default_factory=Counter)
    failovers: list[float] = field(default_factory=list)
    quiet_failovers: list[float] = field(default_factory=list)
    failed: HostRunResult | None = None
    wall_seconds: float = 0.0

    def add(self, result: HostRunResult) -> None:
        self.seeds += 1
        self.figures.update(result.figures)
        self.failovers += result.failovers
        self.quiet_failovers += result.quiet_failovers
        if result.failure is not None and self.failed is None:
            self.failed = result

    def failover_lines(self) -> list[str]:
        lines = []
        for name, sample in (("every group", self.failovers), ("quiet", self.quiet_failovers)):
            if sample:
                lines.append(
                    f"failover after a leader's host crashed, {name} ({len(sample)}): "
                    + failover_figures(sample, TICK_SECONDS)
                )
        return lines


def sweep(
    seeds: range,
    *,
    groups: int = 16,
    broken: Broken | None = None,
    broken_host: BrokenHost | None = None,
    failover_only: bool = False,
    progress: Callable[[int], None] | None = None,
) -> HostSweep:
    summary = HostSweep()
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(
            seed,
            groups=groups,
            broken=broken,
            broken_host=broken_host,
            failover_only=failover_only,
        )
        summary.add(result)
        if progress is not None:
            progress(seed)
        if summary.failed is not None:
            break
    summary.wall_seconds = time.perf_counter() - started
    return summary
