"""The world of the host simulator (`braid.sim.host_cluster`): the fault mix a seed draws,
each simulated machine with its durable state, and the deliberately broken hosts the tests
switch on to show the checkers fail."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from braid.core.document import DocumentLog
from braid.core.multiraft.host import Host
from braid.core.multiraft.messages import Envelope, GroupId, HostId
from braid.core.raft.messages import Entry
from braid.core.raft.node import HardState, Role
from braid.model import Key
from braid.sim.host_documents import ReplicaDocuments


class BrokenHost(enum.Enum):
    """Deliberately wrong hosts (tests only), beside the broken cores of `Broken`."""

    IGNORE_SESSIONS = "ignore-sessions"  # a lapsed peer's echoes keep extending quiet leases
    LEASE_FROM_ANY_BEAT = "lease-from-any-beat"  # quiet leases count echoes of unquiet peers
    LOSSY_APPLY = "lossy-apply"  # host 2 applies every entry but the seventh's document write
    READ_ANYWHERE = "read-anywhere"  # reads served by any replica, leader or not, no lease


class _IgnoreSessions(Host):
    def _session_changed(self, peer_id: HostId) -> None:
        return  # a peer's new session changes nothing here (its lapses still wake groups)


class _LeaseFromAnyBeat(Host):
    def lease_valid(self, group: GroupId) -> bool:
        node = self.groups[group]
        if node.role is not Role.LEADER:
            return False
        acks = sorted((peer.acked for peer in self._peers.values()), reverse=True)
        acks.insert(0, self.ticks)
        return self.ticks < acks[node.quorum - 1] + self.config.lease_ticks and (
            node.log.term_at(node.log.committed) == node.term
        )


HOSTS: dict[BrokenHost | None, type[Host]] = {
    None: Host,
    BrokenHost.IGNORE_SESSIONS: _IgnoreSessions,
    BrokenHost.LEASE_FROM_ANY_BEAT: _LeaseFromAnyBeat,
    BrokenHost.LOSSY_APPLY: Host,
    BrokenHost.READ_ANYWHERE: Host,
}


@dataclass
class HostFaults:
    loss: float
    duplicate: float
    delay_max: float  # ticks
    disk_latency_max: float  # ticks
    drift_max: float
    partitions: bool
    crashes: bool
    pauses: bool
    compact_after: int = 0  # a replica keeps this many applied entries in its log (0: all)
    sync_failures: float = 0.0  # the chance that a log write fails (the host then stops)

    @classmethod
    def draw(cls, rng: random.Random) -> HostFaults:
        return cls(
            loss=rng.choice([0.0, 0.01, 0.05, 0.2]),
            duplicate=rng.choice([0.0, 0.01, 0.05]),
            delay_max=rng.choice([0.2, 1.0, 3.0]),
            disk_latency_max=rng.choice([0.1, 0.5, 2.0]),
            drift_max=rng.choice([0.0, 0.02, 0.05]),
            partitions=rng.random() < 0.6,
            crashes=rng.random() < 0.7,
            pauses=rng.random() < 0.4,
            compact_after=rng.choice([0, 4, 20]),
            sync_failures=rng.choice([0.0, 0.0, 0.002]),
        )


@dataclass
class Disk:
    """A host's durable state: per group its hard state, its log (the entries after the
    offset: compacted, or a snapshot's position), and its applied state — the documents a
    snapshot installed (`base`: index, term, documents) and the entries applied after."""

    hard: dict[GroupId, HardState] = field(default_factory=dict)
    logs: dict[GroupId, list[Entry]] = field(default_factory=dict)
    offsets: dict[GroupId, tuple[int, int]] = field(default_factory=dict)
    base: dict[GroupId, tuple[int, int, dict[Key, DocumentLog]]] = field(default_factory=dict)
    applied: dict[GroupId, list[Entry]] = field(default_factory=dict)

    def applied_index(self, group: GroupId) -> int:
        base = self.base.get(group)
        return (base[0] if base else 0) + len(self.applied[group])


@dataclass
class Machine:
    id: HostId
    host: Host
    period: float
    disk: Disk = field(default_factory=Disk)
    incarnation: int = 0
    running: bool = True
    paused_until: float = 0.0
    next_tick: float = 0.0
    last_write: float = 0.0
    pending_hard: int = 0  # Readies with hard states not yet durable
    held: list[tuple[HostId, Envelope]] = field(default_factory=list)
    documents: ReplicaDocuments = field(default_factory=ReplicaDocuments)
