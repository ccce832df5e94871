"""The values a Raft replica hands out and takes in, beside `braid.core.raft.node`: its
configuration, its durable hard state, the Ready a driver acts on, what a leader knows of
each follower, and the errors of proposals and membership changes."""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field
from typing import Protocol

from braid import limits
from braid.core.raft.messages import Entry, Message

NodeId = int


class Randomness(Protocol):
    """What the core draws its randomness from: a seeded `random.Random`, injected (the
    core never imports `random`, so no run can depend on a global generator)."""

    def randrange(self, start: int, stop: int) -> int: ...


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True)
class RaftConfig:
    """The defaults and their argument are in `braid.limits` ("Replication")."""

    election_ticks: int = limits.raft_election_ticks
    heartbeat_ticks: int = limits.raft_heartbeat_ticks
    lease_ticks: int = limits.raft_lease_ticks  # below election_ticks by the drift bound
    inflight_max: int = limits.raft_inflight_max  # appends in flight to one follower
    append_entries_max: int = limits.raft_append_entries_max  # entries in one append
    quiesce_ticks: int = 0  # idle this long, a leader quiesces its group (0: never)

    def __post_init__(self) -> None:
        assert self.heartbeat_ticks >= 1
        assert self.election_ticks > self.heartbeat_ticks
        assert 0 < self.lease_ticks < self.election_ticks
        assert self.inflight_max >= 1
        assert self.append_entries_max >= 1
        assert self.quiesce_ticks >= 0


@dataclass(frozen=True)
class HardState:
    """What must be durable before this replica says anything in its term."""

    term: int = 0
    vote: NodeId | None = None


@dataclass
class Ready:
    hard_state: HardState | None
    entries: list[Entry]
    messages: list[tuple[NodeId, Message]]
    committed: list[Entry]
    # A snapshot to install, (index, term): the log now starts after it; the driver loads
    # the state as of that index (from its peers), makes it and the truncated log durable,
    # and only then sends the messages, like a hard state.
    snapshot: tuple[int, int] | None = None
    snapshot_state: bytes = b""  # what the leader's driver said of the state (Snapshot.state)

    def __bool__(self) -> bool:
        return bool(
            self.hard_state is not None
            or self.entries
            or self.messages
            or self.committed
            or self.snapshot is not None
        )


class MembershipError(Exception):
    """A membership change that may not be made now (or at all)."""


class NotLeader(Exception):
    """A proposal or transfer on a replica that is not (or no longer acts as) the leader;
    `leader` is the one it knows of, if any."""

    def __init__(self, leader: NodeId | None, why: str = "not the leader") -> None:
        super().__init__(f"{why} (leader: {leader if leader is not None else 'unknown'})")
        self.leader = leader


@dataclass
class Progress:
    """What the leader knows of one follower."""

    match: int = 0  # the follower's log matches ours, durably, through here
    next: int = 1  # the next index to send
    probing: bool = True  # one append at a time until a reply says where the logs match
    probe_sent: bool = False
    inflight: collections.deque[int] = field(default_factory=collections.deque)
    recent_active: bool = False  # heard from within the current check-quorum interval
    acked_ctx: int = -(10**18)  # the send tick of the latest message it answered
    sent_at_heartbeat: int = 0  # the last index sent to it when a heartbeat went out

    snapshot_sent: int = 0  # the index of a snapshot sent and not yet answered
    quiet: bool = False  # it went quiet at the leader's request, and has not woken since

    def paused(self, inflight_max: int) -> bool:
        if self.snapshot_sent:
            return True
        return self.probe_sent if self.probing else len(self.inflight) >= inflight_max
