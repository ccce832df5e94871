"""What Raft replicas say to each other, and the entries of their logs.

Every message carries the sender's term: a message from an older term is refused (its sender
learns the newer term from the reply), a message from a newer term makes the receiver a
follower of it (except votes a follower in a live leader's lease refuses, and pre-votes,
which change nobody's term). Messages are frozen msgspec structs, tagged, so the transport
encodes any of them as one union.

`ctx` on appends and heartbeats is the leader's tick count when it sent them, echoed in the
replies: the leader's lease runs from the send time of the latest message a majority
answered (never from when an answer arrived), see `braid.core.raft.node`.
"""

from __future__ import annotations

import msgspec


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One log entry: its term, its index and what the group orders (opaque to Raft; empty
    for the entry a new leader appends to commit its predecessors' entries). An entry with
    `voters` changes the group's membership: from the moment it is in a replica's log, that
    replica counts votes and commits with those voters (one replica added or removed at a
    time; see `braid.core.raft.node`)."""

    term: int
    index: int
    data: bytes = b""
    voters: tuple[int, ...] | None = None


class Vote(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Vote for me in `term` (a pre-vote: would you, if I stood? — nobody's term changes).
    `forced`: a leadership transfer, which a follower's lease does not refuse."""

    term: int
    last_index: int
    last_term: int
    pre: bool = False
    forced: bool = False


class VoteReply(msgspec.Struct, frozen=True, array_like=True, tag=True):
    term: int
    granted: bool
    pre: bool = False


class Append(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Entries after (prev_index, prev_term), and the leader's commit index."""

    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    ctx: int = 0


class AppendReply(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Accepted: the follower's log matches the leader's through `index`, durably. Rejected:
    it does not hold (prev_index, prev_term) = (`index`, ...); `hint` is its last index."""

    term: int
    index: int
    reject: bool = False
    hint: int = 0
    ctx: int = 0


class Heartbeat(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """I am the leader of `term`; commit through `commit` (never past what you hold).
    `quiesce`: the group is idle, every log matches mine through `commit`: go quiet (no
    ticking, no per-group traffic; the hosts' own liveness stands in, see
    `braid.core.multiraft.host`)."""

    term: int
    commit: int
    ctx: int = 0
    quiesce: bool = False


class HeartbeatReply(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """`last_index`: where the follower's log ends (received, durable or not): an append
    sent before the heartbeat and not in it was lost. `quiet`: it went quiet, as a quiescing
    heartbeat asked."""

    term: int
    ctx: int = 0
    last_index: int = 0
    quiet: bool = False


class Snapshot(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Your log is behind what I still hold: take the state as of (`index`, `snapshot_term`)
    — committed, and held by every replica's applied state — and go on from there. Only the
    position travels: the receiver pulls the documents' deltas from its peers (seed 002's
    sick follower, repaired out of band)."""

    term: int
    index: int
    snapshot_term: int
    voters: tuple[int, ...] = ()  # the membership as of `index`
    state: bytes = b""  # the driver's summary of its applied state as of `index` (opaque here)


class TimeoutNow(msgspec.Struct, frozen=True, array_like=True, tag=True):
    """Stand for election now (a leadership transfer to the receiver)."""

    term: int


Message = (
    Vote | VoteReply | Append | AppendReply | Heartbeat | HeartbeatReply | Snapshot | TimeoutNow
)
