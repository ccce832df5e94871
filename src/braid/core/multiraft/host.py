"""One host's replicas of many Raft groups (partitions), as one pure object: the multi-Raft
host (TiKV's store, CockroachDB's store; seed 002's host).

Inputs: `tick()`, `step(envelope)`, `propose(group, data)`, `persisted(number)`, and the
operator's `campaign`, `transfer`, `change_voters`, `compact`. Output: `ready()` returns one
`HostReady` for all the groups at once; the driver

1. makes its `hard_states` and `snapshots` durable before sending any of its envelopes;
2. appends its `entries` — every group's, in one batch, so one fsync makes them all durable
   — and reports `persisted(number)` when they are (and everything before them);
3. sends its `messages`: one envelope per peer host carrying every group's messages to it;
4. applies `committed`, in order per group; `leadership` says which groups this host began
   or ceased to lead (the embedding application moves its document actors accordingly);
   for each of `snapshots` it loads the state the snapshot describes (from its peers)
   before applying anything after it, and makes it durable like a hard state.

With `describe`, a snapshot a leader sends carries the driver's applied state: its index
and summary (`Describe`), so a sick follower takes that state from its peers and needs
only the entries after it.

Node ids inside a group are host ids: replica `h` of every group lives on host `h`.

**Host liveness and quiescence.** Every envelope is a liveness beat, and a host that sent a
peer nothing for longer than a heartbeat interval sends it an empty one
(`braid.core.multiraft.messages`). A group
idle for `quiesce_ticks` goes quiet (`braid.core.raft.node`): its replicas are no longer
ticked and send nothing, so an idle host costs one envelope per peer per heartbeat,
whatever the number of groups. The hosts' beats stand in for the group's heartbeats:

- A quiet follower counts as hearing from its leader whenever it hears from the leader's
  host: before it is asked anything its time since then is set (`RaftNode.sync`), so it
  refuses votes exactly as a follower of a live leader does, and the leader's lease still
  stands on it (the leader counts the host's echoes of its beats as the quiet follower's
  acknowledgements).
- A host that hears nothing from a peer for an election timeout declares it silent: it wakes
  every quiet group that peer leads — they stand for election after their randomized
  timeouts, counted from when the peer was last heard, exactly when a busy group's followers
  would — and every quiet group it leads with that peer. It also starts a new session
  toward that peer: the peer, on seeing it, wakes every quiet group they share, so echoes
  from a host whose replicas no longer keep quiet never extend a lease. A restarted host
  begins a new session too (a new incarnation).
- (Not quiescence, but host-level too.) With `commit_bound_ticks`, a group whose oldest
  proposal found no durable majority within that bound is reported `stalled` once, for the
  driver to fail its pending writes (seed 002's catastrophic failure).
- Anything else that concerns a quiet group — a proposal, a transfer, a membership change, a
  message of a newer term, anything from its leader that is not a quiescing heartbeat —
  wakes it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from braid.core.multiraft.messages import Envelope, GroupId, HostId
from braid.core.raft.messages import Entry, Message, Snapshot
from braid.core.raft.node import HardState, NodeId, RaftConfig, RaftNode, Randomness, Role

NodeFactory = Callable[..., RaftNode]
Describe = Callable[[GroupId], tuple[int, bytes]]
"""The driver's applied state of a group: the index it stands at, and its summary (for a
partition, each document's head seq and digest), which a snapshot carries."""


@dataclass
class HostReady:
    number: int  # report `persisted(number)` once this Ready's entries are durable
    hard_states: list[tuple[GroupId, HardState]]
    snapshots: list[tuple[GroupId, tuple[int, int], bytes]]  # (group, position, state)
    entries: list[tuple[GroupId, Entry]]
    messages: list[tuple[HostId, Envelope]]
    committed: list[tuple[GroupId, Entry]]
    leadership: list[tuple[GroupId, bool]]  # (group, leads now) for each change
    # Groups this host leads whose proposals found no durable majority within
    # `commit_bound_ticks` (seed 002's catastrophic failure: the driver fails their pending
    # writes, retryably, and reloads their documents before taking new ones).
    stalled: list[GroupId] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.hard_states
            or self.snapshots
            or self.entries
            or self.messages
            or self.committed
            or self.leadership
            or self.stalled
        )


@dataclass
class _Peer:
    last_heard: int  # this host's tick when it last received an envelope from the peer
    silent: bool = False  # declared silent (not heard for an election timeout)
    lapses: int = 0  # sessions toward the peer that lapsed (the second half of `session`)
    session: tuple[int, int] | None = None  # the peer's session, as last seen
    acked: int = -(10**18)  # the latest of this host's ctx the peer echoed (this incarnation)
    received: int = 0  # the latest ctx received from the peer, echoed back to it
    received_incarnation: int = -1
    sent_at: int = -(10**18)  # this host's tick when it last sent the peer an envelope


@dataclass
class HostCounters:
    envelopes_sent: int = 0
    group_messages_sent: int = 0
    unknown_group_messages: int = 0  # for a group this host holds no replica of


class Host:
    def __init__(
        self,
        host_id: HostId,
        config: RaftConfig,
        rng: Randomness,
        *,
        incarnation: int = 0,
        commit_bound_ticks: int = 0,
        node_factory: NodeFactory = RaftNode,
        describe: Describe | None = None,
    ) -> None:
        self.id = host_id
        self.config = config
        self.incarnation = incarnation
        self.ticks = 0
        self.groups: dict[GroupId, RaftNode] = {}
        self.counters = HostCounters()
        self._rng = rng
        self._node_factory = node_factory
        self._describe = describe
        self.commit_bound_ticks = commit_bound_ticks  # 0: no bound
        # Per group led here: (index, tick) of proposals not yet committed, oldest first.
        self._waiting: dict[GroupId, collections.deque[tuple[int, int]]] = {}
        self._stalled: list[GroupId] = []
        self._active: dict[GroupId, None] = {}  # ticked every tick (ordered: determinism)
        self._quiet: dict[GroupId, None] = {}
        self._touched: dict[GroupId, None] = {}  # may have output for the next ready()
        self._voters: dict[GroupId, tuple[NodeId, ...]] = {}
        self._leading: set[GroupId] = set()
        self._peers: dict[HostId, _Peer] = {}
        self._number = 0
        self._unpersisted: collections.deque[tuple[int, dict[GroupId, tuple[int, int]]]] = (
            collections.deque()
        )

    # -- groups -----------------------------------------------------------------------------

    def add_group(self, group: GroupId, voters: Sequence[NodeId], **restored: object) -> RaftNode:
        """Hold a replica of `group` (new, or restored from durable state: the keyword
        arguments of `RaftNode`)."""
        assert group not in self.groups, group
        node = self._node_factory(self.id, voters, self.config, self._rng, **restored)
        node.ticks = self.ticks
        self.groups[group] = node
        self._active[group] = None
        self._touched[group] = None
        self._voters[group] = node.voters
        self._refresh_peers()
        return node

    def remove_group(self, group: GroupId) -> None:
        del self.groups[group]
        self._active.pop(group, None)
        self._quiet.pop(group, None)
        self._touched.pop(group, None)
        self._voters.pop(group, None)
        self._leading.discard(group)
        self._refresh_peers()

    def is_quiet(self, group: GroupId) -> bool:
        return group in self._quiet

    @property
    def quiet_groups(self) -> int:
        return len(self._quiet)

    def lease_valid(self, group: GroupId) -> bool:
        """Whether this host may serve `group`'s reads without a round trip now."""
        if group in self._quiet:
            self._sync(group)
        return self.groups[group].lease_valid()

    # -- inputs -----------------------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        for group in self._active:
            self.groups[group].tick()
            self._touched[group] = None
        election = self.config.election_ticks
        for peer_id, peer in self._peers.items():
            if not peer.silent and self.ticks - peer.last_heard >= election:
                self._lapse(peer_id, peer)
        if self._waiting:
            self._check_commit_bound()

    def step(self, envelope: Envelope) -> None:
        source = envelope.source
        peer = self._peers.get(source)
        if peer is None:
            peer = self._peers[source] = _Peer(last_heard=self.ticks)
        peer.last_heard = self.ticks
        peer.silent = False
        if peer.session != envelope.session:
            if peer.session is not None:
                self._session_changed(source)
            peer.session = envelope.session
        if envelope.echo_incarnation == self.incarnation:
            peer.acked = max(peer.acked, envelope.echo)
        incarnation = envelope.session[0]
        if incarnation != peer.received_incarnation:
            peer.received_incarnation = incarnation
            peer.received = envelope.ctx
        else:
            peer.received = max(peer.received, envelope.ctx)
        for group, message in envelope.items:
            node = self.groups.get(group)
            if node is None:
                self.counters.unknown_group_messages += 1
                continue
            if group in self._quiet:
                self._sync(group)
                node.step(source, message)
                self._settle(group, node)
            else:
                node.step(source, message)
            self._touched[group] = None

    def propose(self, group: GroupId, data: bytes) -> int:
        self._wake(group)
        self._touched[group] = None
        index = self.groups[group].propose(data)
        if self.commit_bound_ticks:
            self._waiting.setdefault(group, collections.deque()).append((index, self.ticks))
        return index

    def campaign(self, group: GroupId) -> None:
        self._wake(group)
        self._touched[group] = None
        self.groups[group].campaign()

    def transfer(self, group: GroupId, target: NodeId) -> None:
        self._wake(group)
        self._touched[group] = None
        self.groups[group].transfer(target)

    def change_voters(self, group: GroupId, voters: Sequence[NodeId]) -> int:
        self._wake(group)
        self._touched[group] = None
        return self.groups[group].change_voters(voters)

    def compact(self, group: GroupId, index: int) -> None:
        self._touched[group] = None
        self.groups[group].compact(index)

    def persisted(self, number: int) -> None:
        """The driver made every Ready through `number` durable."""
        while self._unpersisted and self._unpersisted[0][0] <= number:
            _, positions = self._unpersisted.popleft()
            for group, (index, term) in positions.items():
                node = self.groups.get(group)
                if node is not None:
                    node.persisted(index, term)
                    self._touched[group] = None

    # -- output -----------------------------------------------------------------------------

    def ready(self) -> HostReady:
        hard_states: list[tuple[GroupId, HardState]] = []
        snapshots: list[tuple[GroupId, tuple[int, int], bytes]] = []
        entries: list[tuple[GroupId, Entry]] = []
        committed: list[tuple[GroupId, Entry]] = []
        leadership: list[tuple[GroupId, bool]] = []
        outgoing: dict[HostId, list[tuple[GroupId, Message]]] = {}
        positions: dict[GroupId, tuple[int, int]] = {}
        voters_changed = False
        touched, self._touched = self._touched, {}
        for group in touched:
            node = self.groups.get(group)
            if node is None:
                continue
            self._settle(group, node)
            leads = node.role is Role.LEADER
            if leads != (group in self._leading):
                leadership.append((group, leads))
                (self._leading.add if leads else self._leading.discard)(group)
            if node.voters is not self._voters[group]:
                self._voters[group] = node.voters
                voters_changed = True
            if not node.has_ready():
                continue
            ready = node.ready()
            if ready.hard_state is not None:
                hard_states.append((group, ready.hard_state))
            if ready.snapshot is not None:
                snapshots.append((group, ready.snapshot, ready.snapshot_state))
            if ready.entries:
                entries.extend((group, entry) for entry in ready.entries)
                last = ready.entries[-1]
                positions[group] = (last.index, last.term)
            for target, message in ready.messages:
                if isinstance(message, Snapshot) and self._describe is not None:
                    message = self._snapshot_of(group, node, message)
                outgoing.setdefault(target, []).append((group, message))
            committed.extend((group, entry) for entry in ready.committed)
        if voters_changed:
            self._refresh_peers()
        # The liveness beat: an (empty) envelope to each peer sent nothing for longer than
        # a heartbeat interval. A follower's replies to its leader's heartbeats are its beat.
        beat_before = self.ticks - self.config.heartbeat_ticks
        for peer_id, peer in self._peers.items():
            if peer.sent_at < beat_before:
                outgoing.setdefault(peer_id, [])
        messages = [(target, self._envelope(target, items)) for target, items in outgoing.items()]
        if positions:
            self._number += 1
            self._unpersisted.append((self._number, positions))
        stalled, self._stalled = self._stalled, []
        return HostReady(
            self._number, hard_states, snapshots, entries, messages, committed, leadership, stalled
        )

    def _check_commit_bound(self) -> None:
        """A group whose oldest proposal waited `commit_bound_ticks` without committing is
        stalled: reported once (its waiting proposals are forgotten; the driver fails their
        writes), whether it still leads or not."""
        for group, waiting in list(self._waiting.items()):
            node = self.groups.get(group)
            committed = node.log.committed if node is not None else 0
            while waiting and waiting[0][0] <= committed:
                waiting.popleft()
            if not waiting:
                del self._waiting[group]
            elif self.ticks - waiting[0][1] >= self.commit_bound_ticks:
                del self._waiting[group]
                self._stalled.append(group)

    def _snapshot_of(self, group: GroupId, node: RaftNode, message: Snapshot) -> Snapshot:
        """A snapshot of the state the driver applied (seed 002: its position and, per
        document, the head seq and digest — the follower pulls the deltas from its peers)
        rather than of the log's start: the follower then needs only the entries after it."""
        assert self._describe is not None
        index, state = self._describe(group)
        term = node.log.term_at(index)
        if index < message.index or term is None:
            return message  # the driver's state is behind the log's start: position only
        return Snapshot(message.term, index, term, node.voters_at(index), state)

    # -- quiescence -------------------------------------------------------------------------

    def _settle(self, group: GroupId, node: RaftNode) -> None:
        """Move a group between the ticked and the quiet ones after it changed."""
        if node.quiet and group in self._active:
            del self._active[group]
            self._quiet[group] = None
        elif not node.quiet and group in self._quiet:
            node.wake()
            del self._quiet[group]
            self._active[group] = None

    def _sync(self, group: GroupId) -> None:
        node = self.groups[group]
        leader = node.leader
        peer = self._peers.get(leader) if leader is not None else None
        if peer is None or peer.silent:
            silent = self.config.election_ticks
        else:
            silent = self.ticks - peer.last_heard
        acks = {peer_id: peer.acked for peer_id, peer in self._peers.items() if not peer.silent}
        node.sync(self.ticks, silent, acks)

    def _wake(self, group: GroupId) -> None:
        if group in self._quiet:
            self._sync(group)
            node = self.groups[group]
            node.quiet = False
            self._settle(group, node)
            self._touched[group] = None

    def _session_changed(self, peer_id: HostId) -> None:
        """The peer's promises lapsed (it restarted, or stopped hearing from this host):
        no quiet group this host shares with it may lean on them any more."""
        self._wake_shared(peer_id)

    def _wake_shared(self, peer_id: HostId) -> None:
        """Wake the quiet groups the peer leads, and those this host leads with it."""
        for group in list(self._quiet):
            node = self.groups[group]
            if node.leader == peer_id or (node.role is Role.LEADER and peer_id in node.voters):
                self._wake(group)

    def _lapse(self, peer_id: HostId, peer: _Peer) -> None:
        """Not heard from `peer` for an election timeout (module text)."""
        peer.silent = True
        peer.lapses += 1
        self._wake_shared(peer_id)

    def _refresh_peers(self) -> None:
        shared = {voter for node in self.groups.values() for voter in node.voters}
        shared.discard(self.id)
        for peer_id in shared - self._peers.keys():
            self._peers[peer_id] = _Peer(last_heard=self.ticks)
        for peer_id in self._peers.keys() - shared:
            del self._peers[peer_id]

    def _envelope(self, target: HostId, items: list[tuple[GroupId, Message]]) -> Envelope:
        peer = self._peers.get(target)
        if peer is None:  # a host this one shares no group with any more: a last word
            peer = _Peer(last_heard=self.ticks)
        peer.sent_at = self.ticks
        self.counters.envelopes_sent += 1
        self.counters.group_messages_sent += len(items)
        return Envelope(
            self.id,
            (self.incarnation, peer.lapses),
            self.ticks,
            peer.received,
            peer.received_incarnation,
            tuple(items),
        )
