"""Raft for one partition's replica, as a pure state machine (etcd-io/raft's shape).

Inputs: `tick()` (time, in ticks), `step(source, message)`, `propose(data)`, `persisted(index,
term)` (the driver made the log durable through there), `transfer(target)`, `campaign()`.
Output: `ready()` hands over, at once and once each, what the driver must do:

1. persist `hard_state` (term and vote) when it is not None, *before sending any message of
   the same Ready* (a vote granted must survive a crash);
2. append `entries` to its durable log (an entry may overwrite one at the same index) and
   report `persisted(index, term)` when they are durable — the leader's own entries count
   toward a commit only then, like a follower's, and a follower acknowledges entries only
   then (the acknowledgement is a message of a later Ready);
3. send `messages` (the leader's appends go out while its own write is under way);
4. apply `committed` entries, in order (only ones this replica holds durably).

What it does (the Raft paper, with etcd's and the dissertation's additions):

- Elections with pre-vote (a candidate first asks whether it could win, changing nobody's
  term, so a partitioned replica rejoining does not depose a healthy leader), check-quorum (a
  leader that has not heard from a majority within an election timeout steps down), and
  stickiness (a follower that heard from a live leader within the election timeout, or that
  has just started, refuses votes). Timeouts are randomized in [election, 2·election) ticks
  from the injected generator.
- Replication: a follower being probed gets one append at a time until its log matches, then
  appends are pipelined, at most `inflight_max` in flight, each up to `append_entries_max`
  entries.
- Commit on a *durable* majority, and only of an entry of the leader's own term (Figure 8:
  earlier terms' entries commit with it); a new leader appends an empty entry to get there.
  Followers learn a commit from the next append or heartbeat: nothing is sent for a commit
  alone (that halves the messages of proposals made one at a time; a follower applies at
  most a heartbeat later, and only the leader answers clients).
- A lease for reads: `lease_valid()` while a majority (the leader counting itself) answered a
  message the leader sent less than `lease_ticks` ago, measured from the *send*. A follower
  refuses votes for `election_ticks` after hearing from the leader, so with `lease_ticks`
  below `election_ticks` by the clock-drift bound no other replica can be elected while the
  lease holds. A new leader's lease starts only once an entry of its term is committed.
- Leadership transfer to a named replica: it is caught up, then told to stand at once (its
  votes are not refused by leases); proposals wait meanwhile, and a transfer that does not
  finish within an election timeout is abandoned.

- Compaction and sick followers: `compact(index)` drops applied entries; a follower that needs
  one of them is sent a `Snapshot` (the position only) instead of entries, installs it (the
  driver loads the state from peers, `Ready.snapshot`) and is fed entries again from there.

- Membership changes one replica at a time (`change_voters`), effective when in the log.

- Quiescence (with `quiesce_ticks`; `braid.core.multiraft.host` drives it): a leader idle
  that long, with every follower's log matching its own and all of it durable and committed,
  sends quiescing heartbeats; a follower whose log matches goes `quiet` and says so; once
  every follower said so the leader goes quiet too. A quiet replica is not ticked and sends
  nothing of its own: its host's liveness stands in for the group's heartbeats (`sync`
  brings its clock, and a quiet follower's time since it heard from its leader, up to date
  before it is asked anything; `wake` makes it ordinary again).
"""

from __future__ import annotations

from collections.abc import Sequence

from braid.core.raft.log import RaftLog
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
from braid.core.raft.state import (
    HardState,
    MembershipError,
    NodeId,
    NotLeader,
    Progress,
    RaftConfig,
    Randomness,
    Ready,
    Role,
)

__all__ = [
    "HardState",
    "MembershipError",
    "NodeId",
    "NotLeader",
    "Progress",
    "RaftConfig",
    "RaftNode",
    "Randomness",
    "Ready",
    "Role",
]

_NEW = HardState()  # a replica that never voted nor saw a term


class RaftNode:
    """One replica of one group (see the module text). `voters` includes `node_id`."""

    def __init__(
        self,
        node_id: NodeId,
        voters: Sequence[NodeId],
        config: RaftConfig,
        rng: Randomness,
        *,
        hard_state: HardState = _NEW,
        entries: Sequence[Entry] = (),
        offset: int = 0,
        offset_term: int = 0,
        applied: int = 0,
    ) -> None:
        assert len(set(voters)) == len(voters)
        self.id = node_id
        # The membership as of the log's offset; configuration entries in the log change it
        # (`voters` is the newest one in the log, durable or not: Raft's single-server rule).
        self.base_voters: tuple[NodeId, ...] = tuple(sorted(voters))
        self.voters = self.base_voters
        self._configs: list[tuple[int, tuple[NodeId, ...]]] = []
        self.config = config
        self._rng = rng
        self.log = RaftLog(entries, offset, offset_term)
        self.log.committed = self.log.applied = max(offset, applied)
        self.term = hard_state.term
        self.vote = hard_state.vote
        self._saved = hard_state
        self.role = Role.FOLLOWER
        self.leader: NodeId | None = None
        self.ticks = 0  # this replica's clock
        self._election_elapsed = 0
        self._timeout = self._random_timeout()
        self._heartbeat_elapsed = 0
        # Refuse votes while a leader may hold a lease: after hearing from one, and at start
        # (a restarted replica may have answered the leader just before it stopped).
        self._sticky = True
        self._votes: dict[NodeId, bool] = {}
        self._progress: dict[NodeId, Progress] = {}
        self._transfer_to: NodeId | None = None
        self._transfer_elapsed = 0
        self._pending_acks: list[tuple[NodeId, int, int]] = []  # (leader, index, ctx)
        self._outbox: list[tuple[NodeId, Message]] = []
        self._snapshot: tuple[int, int] | None = None  # installed, not yet handed over
        self._snapshot_state = b""
        self._proposed = False  # entries proposed since the last ready(), not yet sent
        self.quiet = False  # quiesced: not ticked, sends nothing of its own (module text)
        self._idle_ticks = 0  # (leader) ticks for which the group has had nothing to do
        self._quiesce_from = 0  # (leader) the tick its current quiescing heartbeats began
        self._quiet_ctx = 0  # (follower) the send tick of the heartbeat that quieted it
        self._rescan_configs()

    # -- queries ----------------------------------------------------------------------------

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def peers(self) -> tuple[NodeId, ...]:
        return tuple(voter for voter in self.voters if voter != self.id)

    @property
    def config_pending(self) -> bool:
        """A membership change is in the log and not yet committed (no other may start)."""
        return bool(self._configs) and self._configs[-1][0] > self.log.committed

    def voters_at(self, index: int) -> tuple[NodeId, ...]:
        """The membership as of `index` (at or after the log's offset)."""
        voters = self.base_voters
        for config_index, config in self._configs:
            if config_index <= index:
                voters = config
        return voters

    def progress(self, peer: NodeId) -> Progress:
        return self._progress[peer]

    def lease_valid(self) -> bool:
        """Whether this leader may serve a read without a round trip now (module text)."""
        if self.role is not Role.LEADER or self.log.term_at(self.log.committed) != self.term:
            return False
        if self._transfer_to is not None:
            return False  # the target may be elected at once: its votes ignore leases
        acked = [self._progress[peer].acked_ctx for peer in self.peers]
        if self.id in self.voters:
            acked.append(self.ticks)
        acked.sort(reverse=True)
        return self.ticks < acked[self.quorum - 1] + self.config.lease_ticks

    # -- inputs -----------------------------------------------------------------------------

    def tick(self) -> None:
        self.ticks += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        elif self.id in self.voters:  # a replica removed from the group never stands
            self._election_elapsed += 1
            if self._election_elapsed >= self._timeout:
                self._election_elapsed = 0
                self._campaign(pre=True)

    def campaign(self) -> None:
        """Stand for election now, as when the election timeout passes (with a pre-vote)."""
        if self.role is not Role.LEADER and self.id in self.voters:
            self._campaign(pre=True)

    def propose(self, data: bytes) -> int:
        """Append `data` to the log (on the leader); returns its index."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self._transfer_to is not None:
            raise NotLeader(self.leader, f"leadership is moving to {self._transfer_to}")
        index = self.log.last_index + 1
        self.log.entries.append(Entry(self.term, index, data))  # new at the end: no conflict
        # Sent at the next `ready()`: the proposals made until then share one append.
        self._proposed = True
        return index

    def change_voters(self, voters: Sequence[NodeId]) -> int:
        """Propose a new membership (leader only): one replica added or removed, and no
        other change still uncommitted (the dissertation's single-server changes, which
        keep every old and new majority overlapping without joint consensus). It takes
        effect as soon as it is in the log; a leader that removed itself steps down once the
        change commits. To replace a dead replica, remove it, then add the new one (which
        catches up by a snapshot and entries). Returns the entry's index."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        new = tuple(sorted(set(voters)))
        if self.config_pending:
            raise MembershipError("a membership change is still uncommitted")
        if len(set(new) ^ set(self.voters)) != 1:
            raise MembershipError(f"{self.voters} -> {new} is not one replica added or removed")
        index = self.log.last_index + 1
        self.log.append([Entry(self.term, index, voters=new)])
        self._configs.append((index, new))
        self._set_voters(new)
        self._broadcast_append()
        return index

    def persisted(self, index: int, term: int) -> None:
        """The driver made the log durable through (`index`, `term`)."""
        if not self.log.persisted_to(index, term):
            return
        if self.role is Role.LEADER:
            self._maybe_commit()
        else:
            self._flush_acks()

    def transfer(self, target: NodeId) -> None:
        """Hand leadership to `target` once it is caught up (leader only)."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        assert target in self.peers, target
        self._transfer_to = target
        self._transfer_elapsed = 0
        progress = self._progress[target]
        if progress.match == self.log.last_index:
            self._send(target, TimeoutNow(self.term))
        else:
            # Even with nothing new to send (appends may be in flight, or lost): its answer
            # says where its log stands, and the catching up starts from there.
            self._send_append(target, empty=True)

    def step(self, source: NodeId, message: Message) -> None:
        if source not in self.voters:
            return  # not a member of this group
        if message.term > self.term:
            if not self._step_newer_term(source, message):
                return
        elif message.term < self.term:
            self._answer_older_term(source, message)
            return
        if isinstance(message, Vote):
            self._on_vote(source, message)
        elif isinstance(message, VoteReply):
            self._on_vote_reply(source, message)
        elif isinstance(message, Append):
            self._on_append(source, message)
        elif isinstance(message, AppendReply):
            self._on_append_reply(source, message)
        elif isinstance(message, Heartbeat):
            self._on_heartbeat(source, message)
        elif isinstance(message, HeartbeatReply):
            self._on_heartbeat_reply(source, message)
        elif isinstance(message, Snapshot):
            self._on_snapshot(source, message)
        elif isinstance(message, TimeoutNow) and self.role is not Role.LEADER:
            self._campaign(pre=False, forced=True)

    # -- output -----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether `ready()` would hand over anything (cheap: a host asks many replicas)."""
        log = self.log
        saved = self._saved
        return bool(
            self._proposed
            or self._outbox
            or self._snapshot is not None
            or log.unstable_from <= log.last_index
            or min(log.committed, log.persisted) > log.applied
            or self.term != saved.term
            or self.vote != saved.vote
        )

    def ready(self) -> Ready:
        if self._proposed:
            self._proposed = False
            if self.role is Role.LEADER:
                self._broadcast_append()
        hard_state = None
        if self.term != self._saved.term or self.vote != self._saved.vote:
            hard_state = self._saved = HardState(self.term, self.vote)
        messages, self._outbox = self._outbox, []
        snapshot, self._snapshot = self._snapshot, None
        state, self._snapshot_state = self._snapshot_state, b""
        entries = self.log.take_unstable()
        committed = self.log.take_committed()
        return Ready(hard_state, entries, messages, committed, snapshot, state)

    def compact(self, index: int) -> None:
        """Drop the log's entries through `index` (applied: the applied state holds them).
        A follower that still needs them is then sent a snapshot instead."""
        self.log.compact(min(index, self.log.applied))
        self._compacted()

    # -- quiescence -------------------------------------------------------------------------

    def sync(self, now: int, leader_silent: int, acks: dict[NodeId, int]) -> None:
        """Bring a quiet replica up to date before it is asked anything: its clock to `now`;
        a follower has not heard from its leader's host for `leader_silent` ticks (it counts
        as not hearing from the leader); a leader's quiet followers answered their hosts'
        messages sent at `acks` (their hosts' liveness stands in for heartbeats, so these
        extend its lease)."""
        self.ticks = now
        if self.role is Role.LEADER:
            for peer in self.peers:
                progress = self._progress[peer]
                if progress.quiet and peer in acks:
                    progress.acked_ctx = max(progress.acked_ctx, acks[peer])
        else:
            self._election_elapsed = leader_silent

    def wake(self) -> None:
        """Be an ordinary replica again (after `sync`): ticked, heartbeating or counting
        toward an election. A leader heartbeats at its next tick and starts a check-quorum
        interval: a follower counts as active once it answers within it (quiet, it answered
        nothing of its own: its host's beats stood in)."""
        self.quiet = False
        self._idle_ticks = 0
        if self.role is Role.LEADER:
            self._election_elapsed = 0
            self._heartbeat_elapsed = self.config.heartbeat_ticks
            for progress in self._progress.values():
                progress.quiet = False
                progress.recent_active = False

    def _idle(self) -> bool:
        """(Leader) nothing to do: every log matches ours, all of it durable and committed."""
        log = self.log
        last = log.last_index
        if self._transfer_to is not None or self._proposed:
            return False
        if log.committed != last or log.persisted != last:
            return False
        for progress in self._progress.values():
            if progress.match != last or progress.probing or progress.snapshot_sent:
                return False
        return True

    # -- terms ------------------------------------------------------------------------------

    def _step_newer_term(self, source: NodeId, message: Message) -> bool:
        """A message from a later term: follow it (False: ignore the message)."""
        if isinstance(message, Vote):
            if not message.forced and self._in_lease() and source != self.leader:
                return False  # a live leader's follower does not help depose it
            if message.pre:
                return True  # a pre-vote changes nobody's term
            self._become_follower(message.term, None)
            return True
        if isinstance(message, VoteReply) and message.pre and message.granted:
            return True  # a granted pre-vote carries the term the candidate would stand in
        leader = source if isinstance(message, Append | Heartbeat | Snapshot) else None
        self._become_follower(message.term, leader)
        return True

    def _answer_older_term(self, source: NodeId, message: Message) -> None:
        """A message from an earlier term: a stale leader is told the current term (it steps
        down); a stale pre-vote is refused; anything else is dropped."""
        if isinstance(message, Append | Heartbeat | Snapshot):
            self._send(source, AppendReply(self.term, 0, reject=True))
        elif isinstance(message, Vote) and message.pre:
            self._send(source, VoteReply(self.term, False, pre=True))

    def _in_lease(self) -> bool:
        """Refuse to help depose a leader: this replica leads (check-quorum steps it down
        when it loses its majority), or heard from a live one within an election timeout."""
        if self.role is Role.LEADER:
            return True
        return self._sticky and self._election_elapsed < self.config.election_ticks

    def _random_timeout(self) -> int:
        election = self.config.election_ticks
        return self._rng.randrange(election, 2 * election)

    # -- roles ------------------------------------------------------------------------------

    # -- membership -------------------------------------------------------------------------

    def _rescan_configs(self, since: int = 0) -> None:
        """Recount the configuration entries in the log from index `since` on (after a
        write that may have added or overwritten some) and take the newest."""
        kept = [(index, voters) for index, voters in self._configs if index < since]
        first = max(since, self.log.offset + 1)
        for entry in self.log.entries[first - self.log.offset - 1 :]:
            if entry.voters is not None:
                kept.append((entry.index, entry.voters))
        self._configs = kept
        self._set_voters(kept[-1][1] if kept else self.base_voters)

    def _set_voters(self, voters: tuple[NodeId, ...]) -> None:
        if voters == self.voters:
            return
        self.voters = voters
        if self.role is Role.LEADER:
            # A replica just added is probed from the start (it may be empty: if the log is
            # compacted there, it gets a snapshot).
            self._progress = {peer: self._progress.get(peer) or Progress() for peer in self.peers}

    def _compacted(self) -> None:
        """The log now starts later: the membership as of its offset becomes the base."""
        while self._configs and self._configs[0][0] <= self.log.offset:
            self.base_voters = self._configs.pop(0)[1]

    def _become_follower(self, term: int, leader: NodeId | None) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self.quiet = False
        self._quiet_ctx = 0
        self._election_elapsed = 0
        self._timeout = self._random_timeout()
        self._votes = {}
        self._progress = {}
        self._transfer_to = None
        if leader is not None:
            self._sticky = True

    def _campaign(self, *, pre: bool, forced: bool = False) -> None:
        self._sticky = False
        self.quiet = False
        self._election_elapsed = 0
        self._timeout = self._random_timeout()
        self.leader = None
        if pre:
            self.role = Role.PRE_CANDIDATE
            term = self.term + 1
        else:
            self.role = Role.CANDIDATE
            self.term += 1
            self.vote = self.id
            term = self.term
        self._votes = {self.id: True}
        if self._tally(pre):
            return
        last_index, last_term = self.log.last_index, self.log.last_term
        for peer in self.peers:
            self._send(peer, Vote(term, last_index, last_term, pre=pre, forced=forced))

    def _tally(self, pre: bool) -> bool:
        """Count the votes; win or lose when a quorum has spoken. True when decided."""
        granted = sum(self._votes.values())
        if granted >= self.quorum:
            if pre:
                self._campaign(pre=False)
            else:
                self._become_leader()
            return True
        if len(self._votes) - granted >= self.quorum:
            self._become_follower(self.term, None)
            return True
        return False

    def _become_leader(self) -> None:
        self.role = Role.LEADER
        self.leader = self.id
        self.quiet = False
        self._idle_ticks = 0
        self._heartbeat_elapsed = 0
        self._election_elapsed = 0  # counts toward the next check-quorum
        last = self.log.last_index
        self._progress = {peer: Progress(next=last + 1) for peer in self.peers}
        self.log.append([Entry(self.term, last + 1)])  # commits the earlier terms' entries
        self._broadcast_append()

    # -- votes ------------------------------------------------------------------------------

    def _on_vote(self, source: NodeId, message: Vote) -> None:
        can_vote = (
            self.vote == source
            or (self.vote is None and self.leader is None)
            or (message.pre and message.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(message.last_index, message.last_term):
            if not message.pre:
                self.vote = source
                self._election_elapsed = 0
            self._send(source, VoteReply(message.term, True, pre=message.pre))
        else:
            self._send(source, VoteReply(self.term, False, pre=message.pre))

    def _on_vote_reply(self, source: NodeId, message: VoteReply) -> None:
        expected = Role.PRE_CANDIDATE if message.pre else Role.CANDIDATE
        if self.role is not expected:
            return
        self._votes[source] = message.granted
        self._tally(message.pre)

    # -- the follower's side ----------------------------------------------------------------

    def _heard_from_leader(self, source: NodeId) -> None:
        if self.role is not Role.FOLLOWER or self.leader != source:
            self._become_follower(self.term, source)
        self._election_elapsed = 0
        self._sticky = True

    def _on_append(self, source: NodeId, message: Append) -> None:
        self._heard_from_leader(source)
        if message.ctx >= self._quiet_ctx:
            self.quiet = False  # sent after the heartbeat that quieted it: the leader woke
        log = self.log
        if message.prev_index < log.committed:
            # Already committed here: say how far it matches durably (the entries after are
            # the leader's to send again). Never past what is durable here: the leader
            # counts a reply toward commits.
            durable = min(log.committed, log.persisted)
            self._send(source, AppendReply(self.term, durable, ctx=message.ctx))
            return
        if not log.matches(message.prev_index, message.prev_term):
            reply = AppendReply(
                self.term, message.prev_index, reject=True, hint=log.last_index, ctx=message.ctx
            )
            self._send(source, reply)
            return
        written = log.append(message.entries)
        if written is not None and (
            any(entry.voters is not None for entry in message.entries)
            or (self._configs and self._configs[-1][0] >= written)
        ):
            self._rescan_configs(written)
        index = message.prev_index + len(message.entries)
        log.commit_to(min(message.commit, index))
        self._pending_acks.append((source, index, message.ctx))
        self._flush_acks()

    def _flush_acks(self) -> None:
        """Acknowledge the appends whose entries are durable now (in order)."""
        remaining = []
        for leader, index, ctx in self._pending_acks:
            if leader != self.leader:
                continue  # a deposed leader's: it learns the new term elsewhere
            if index <= self.log.persisted:
                self._send(leader, AppendReply(self.term, index, ctx=ctx))
            else:
                remaining.append((leader, index, ctx))
        self._pending_acks = remaining

    def _on_snapshot(self, source: NodeId, message: Snapshot) -> None:
        """The leader no longer holds the entries this replica needs: take its position."""
        self._heard_from_leader(source)
        log = self.log
        if message.index <= log.committed:
            durable = min(log.committed, log.persisted)
            self._send(source, AppendReply(self.term, durable))
            return  # nothing new (a quiet replica stays quiet: the snapshot is an old one)
        self.quiet = False
        if log.matches(message.index, message.snapshot_term):
            # The entries are here already: they match the leader's through that index.
            log.commit_to(message.index)
            self._pending_acks.append((source, message.index, 0))
            self._flush_acks()
            return
        log.install(message.index, message.snapshot_term)
        self.base_voters = tuple(sorted(message.voters)) or self.base_voters
        self._rescan_configs()
        self._pending_acks = []
        self._snapshot = (message.index, message.snapshot_term)
        self._snapshot_state = message.state
        self._send(source, AppendReply(self.term, message.index))  # sent once installed

    def _on_heartbeat(self, source: NodeId, message: Heartbeat) -> None:
        self._heard_from_leader(source)
        log = self.log
        log.commit_to(min(message.commit, log.last_index))
        # Quiet only with nothing left to do: the log matches the leader's through the
        # commit (heartbeats carry a commit no higher than the match), all of it durable. A
        # heartbeat sent before the one that quieted it (delayed, duplicated) changes nothing:
        # the leader counts on it staying quiet until a later message wakes it.
        if not self.quiet or message.ctx >= self._quiet_ctx:
            self.quiet = message.quiesce and message.commit == log.last_index == log.persisted
            if self.quiet:
                self._quiet_ctx = message.ctx
        reply = HeartbeatReply(self.term, message.ctx, log.last_index, quiet=self.quiet)
        self._send(source, reply)

    # -- the leader's side ------------------------------------------------------------------

    def _tick_leader(self) -> None:
        quiesce_ticks = self.config.quiesce_ticks
        if quiesce_ticks:
            self._idle_ticks = self._idle_ticks + 1 if self._idle() else 0
            if self._idle_ticks == quiesce_ticks:  # a round of quiescing heartbeats begins
                self._quiesce_from = self.ticks
                for progress in self._progress.values():
                    progress.quiet = False  # only this round's answers count
        quiesce = bool(quiesce_ticks) and self._idle_ticks >= quiesce_ticks
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for peer in self.peers:
                progress = self._progress[peer]
                progress.sent_at_heartbeat = progress.next - 1
                commit = min(progress.match, self.log.committed)
                self._send(peer, Heartbeat(self.term, commit, self.ticks, quiesce))
        if self._transfer_to is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self._transfer_to = None  # abandoned: the target did not take over
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            self._check_quorum()

    def _check_quorum(self) -> None:
        """Step down unless a majority was heard from within the last election timeout."""
        active = (self.id in self.voters) + sum(
            self._progress[peer].recent_active for peer in self.peers
        )
        for peer in self.peers:
            self._progress[peer].recent_active = False
        if active < self.quorum:
            self._become_follower(self.term, None)

    def _heard_from_follower(self, source: NodeId, ctx: int) -> Progress:
        progress = self._progress[source]
        progress.recent_active = True
        progress.acked_ctx = max(progress.acked_ctx, ctx)
        return progress

    def _on_append_reply(self, source: NodeId, message: AppendReply) -> None:
        if self.role is not Role.LEADER:
            return
        progress = self._heard_from_follower(source, message.ctx)
        progress.snapshot_sent = 0  # answered (installed, or it says where its log stands)
        if message.ctx >= self._quiesce_from:
            # It took an append sent since this round began: it is awake, and so is the
            # group (an older append did not wake it: see _on_append).
            progress.quiet = False
            self.quiet = False
        if message.reject:
            # Only a reply to the probe (or to the oldest append in flight) moves next back.
            if message.index != progress.next - 1 and not progress.probing:
                return
            progress.next = max(1, min(message.index, message.hint + 1))
            if progress.next <= progress.match:
                # It no longer holds what it acknowledged (its disk lost data it reported
                # durable): believe it, rather than probe above its log forever.
                progress.match = progress.next - 1
            progress.probing = True
            progress.probe_sent = False
            progress.inflight.clear()
            self._send_append(source)
            return
        if message.index > progress.match:
            progress.match = message.index
        progress.next = max(progress.next, message.index + 1)
        while progress.inflight and progress.inflight[0] <= message.index:
            progress.inflight.popleft()
        if progress.probing:
            progress.probing = False
            progress.probe_sent = False
        self._maybe_commit()
        self._send_append(source)
        if self._transfer_to == source and progress.match == self.log.last_index:
            self._send(source, TimeoutNow(self.term))

    def _on_heartbeat_reply(self, source: NodeId, message: HeartbeatReply) -> None:
        if self.role is not Role.LEADER:
            return
        progress = self._heard_from_follower(source, message.ctx)
        progress.snapshot_sent = 0  # a snapshot may have been lost: offered again below
        if message.ctx >= self._quiesce_from and self._idle_ticks >= self.config.quiesce_ticks:
            # An answer to this round's quiescing heartbeats (an older one, delayed or
            # duplicated, says nothing of the follower now: it may have woken since).
            progress.quiet = message.quiet
            if not message.quiet:
                self.quiet = False
            elif self._idle() and all(self._progress[p].quiet for p in self.peers):
                self.quiet = True  # every follower is quiet: so is the group
        if progress.match < self.log.last_index:
            if not progress.probing and message.last_index < progress.sent_at_heartbeat:
                # Appends sent before the heartbeat never reached the follower (its log ends
                # before them, while the heartbeat sent after them arrived): they were lost.
                # Probe again from what it holds.
                progress.probing = True
                progress.next = progress.match + 1
                progress.inflight.clear()
            progress.probe_sent = False  # a probe may have been lost too: send it again
            self._send_append(source)

    def _maybe_commit(self) -> bool:
        """Commit the highest index a durable majority holds, if it is of this term."""
        matches = [self._progress[peer].match for peer in self.peers]
        if self.id in self.voters:
            matches.append(self.log.persisted)
        matches.sort(reverse=True)
        index = matches[self.quorum - 1]
        if index <= self.log.committed or self.log.term_at(index) != self.term:
            return False
        self.log.commit_to(index)
        if self.id not in self.voters and not self.config_pending:
            # It removed itself, and that is committed: the others elect a leader.
            self._broadcast_append(empty=True)  # they learn the commit first
            self._become_follower(self.term, None)
            return False
        return True

    def _broadcast_append(self, *, empty: bool = False) -> None:
        for peer in self.peers:
            self._send_append(peer, empty=empty)

    def _send_append(self, peer: NodeId, *, empty: bool = False) -> None:
        """Send `peer` the entries it lacks, unless it is paused (a probe out, or its window
        full); with nothing new, nothing is sent unless `empty` (to carry a new commit)."""
        progress = self._progress[peer]
        if progress.paused(self.config.inflight_max):
            return
        log = self.log
        prev = progress.next - 1
        prev_term = log.term_at(prev)
        if prev_term is None:
            # Compacted away: this follower is sick. It is no longer fed entries; it is
            # sent the position to take, and fills its state from its peers.
            self._send(peer, Snapshot(self.term, log.offset, log.offset_term, self.base_voters))
            progress.snapshot_sent = log.offset
            progress.next = log.offset + 1
            return
        entries = log.slice(progress.next, self.config.append_entries_max)
        if not entries and not empty and not progress.probing:
            return  # nothing new (a probe goes out even empty: its answer says where it is)
        self._send(peer, Append(self.term, prev, prev_term, entries, log.committed, self.ticks))
        if progress.probing:
            progress.probe_sent = True
        elif entries:
            progress.next = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)

    def _send(self, target: NodeId, message: Message) -> None:
        self._outbox.append((target, message))
