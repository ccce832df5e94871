"""Documents over the simulated hosts: each host applies its groups' committed entries through
`braid.core.partition.Partition` (the pure rules of DESIGN §1, as the embedded engines apply
them), and a client routes documents to groups by placement's key hash and writes and reads
them at the leaders with the write path the real node will use — check against the head
after the pending writes, propose, track, complete on apply — recording every call, so the
history can be checked (`braid.sim.host_cluster`).

Checked on the client's history:

- no acknowledged write lost: every acknowledged delta is in its document, at its seq, on
  every replica that has applied that far (and the entry-level checker sees the same);
- no stale read: a read (get, or compute of the head patch) served under a leader's lease
  sees every write acknowledged before it started, and the two reads agree;
- replicas agree: two replicas that applied a group's log through the same index hold the
  same documents (the partition digests are equal), so apply is deterministic;
- a write's outcome is what the client was told: a write whose refusal was final (not
  applied, safe to retry; or failed at apply) never appears.

The client writes one document at a time per key (one writer per document), and after an
outcome it cannot know (its leader lost leadership or crashed) it reads the head before
writing again, as an application's actor would on moving.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from braid.core.document import DocumentLog
from braid.core.multiraft.host import Host
from braid.core.multiraft.messages import GroupId, HostId
from braid.core.partition import Completion, Partition
from braid.core.placement import partition_of
from braid.core.raft.messages import Entry
from braid.core.raft.node import Role
from braid.core.wal.ops import InitOp, Op, PatchOp
from braid.errors import DOCUMENT_NOT_FOUND, BraidError
from braid.model import ComputeMethod, Key, Update
from braid.sim.raft_cluster import CheckFailed

KEYS_PER_GROUP = 3
_summary_encoder = msgspec.msgpack.Encoder()
_summary_decoder = msgspec.msgpack.Decoder(list[tuple[str, str, int, bytes]])


def keys_by_group(groups: list[GroupId]) -> dict[GroupId, list[Key]]:
    """Document keys as placement routes them: key -> partition by the stable hash of
    `braid.core.placement` (group g is partition g - 1), the first `KEYS_PER_GROUP` found for
    each group."""
    keys: dict[GroupId, list[Key]] = {group: [] for group in groups}
    for number in range(1000 * len(groups)):  # a bounded search: ~3 per group expected
        key = Key("sim", f"doc{number}")
        group = groups[partition_of(key.space, key.key, len(groups))]
        if len(keys[group]) < KEYS_PER_GROUP:
            keys[group].append(key)
            if all(len(found) == KEYS_PER_GROUP for found in keys.values()):
                break
    return keys


def encode_summary(summary: dict[Key, tuple[int, bytes]]) -> bytes:
    """A partition's summary as a snapshot carries it: per document, its head and digest."""
    rows = [(key.space, key.key, head, digest) for key, (head, digest) in summary.items()]
    return _summary_encoder.encode(sorted(rows))


def decode_summary(state: bytes) -> dict[Key, tuple[int, bytes]]:
    if not state:
        return {}
    rows = _summary_decoder.decode(state)
    return {Key(space, key): (head, digest) for space, key, head, digest in rows}


@dataclass
class Write:
    """One client call: a document write in flight (the partition's token)."""

    id: int
    group: GroupId
    key: Key
    update: Update
    host: HostId
    incarnation: int
    invoked: float
    data: bytes = b""  # the entry proposed
    index: int = 0  # where, once proposed
    term: int = 0

    @property
    def entry(self) -> Entry:
        return Entry(self.term, self.index, self.data)


@dataclass
class ReplicaDocuments:
    """One host's partitions: the documents its replicas of the groups apply."""

    partitions: dict[GroupId, Partition[Write]] = field(default_factory=dict)
    gaining: set[GroupId] = field(default_factory=set)  # led, not yet writable

    @classmethod
    def replayed(
        cls,
        groups: list[GroupId],
        bases: dict[GroupId, tuple[int, int, dict[Key, DocumentLog]]],
        applied: dict[GroupId, list[Entry]],
    ) -> ReplicaDocuments:
        """A (re)started host: its partitions as its durable applied state holds them — the
        documents a snapshot installed, then the entries applied after."""
        replica = cls()
        for group in groups:
            partition: Partition[Write] = Partition()
            base = bases.get(group)
            if base is not None:
                partition.install(*base)
            for entry in applied.get(group, []):
                partition.apply(entry.index, entry.term, entry.data)
            replica.partitions[group] = partition
        return replica

    def leadership(self, group: GroupId, leads: bool) -> list[Completion[Write]]:
        partition = self.partitions[group]
        if leads:
            self.gaining.add(group)
            return []
        self.gaining.discard(group)
        return partition.lost_leadership()

    def open_writes(self, host: Host) -> None:
        """Writable once its term's first entry is applied (every earlier write is then in
        the applied state the write path checks against)."""
        for group in list(self.gaining):
            node = host.groups[group]
            if node.role is not Role.LEADER:
                self.gaining.discard(group)
            elif node.log.term_at(self.partitions[group].applied_index) == node.term:
                self.partitions[group].set_writable(True)
                self.gaining.discard(group)


class DocumentClient:
    """Writes and reads documents at the leaders; checks what it was told."""

    def __init__(self, groups: list[GroupId], partitions: dict[HostId, ReplicaDocuments]) -> None:
        self.partitions = partitions  # each host's, replaced when it restarts
        self.keys = keys_by_group(groups)
        self.known_head: dict[Key, int | None] = {}  # None: unknown (read before writing)
        self.in_flight: dict[Key, Write] = {}
        self.acknowledged: dict[Key, dict[int, Update]] = {}
        self.not_applied: dict[Key, set[int]] = {}  # write ids told "not applied"
        self.written = 0
        self.digests: dict[tuple[GroupId, int], bytes] = {}

    # -- writes -----------------------------------------------------------------------------

    def write(self, group: GroupId, key: Key, host: Host, incarnation: int, now: float) -> bool:
        """Write the next delta of `key` at `host` (its leader); False when nothing was sent."""
        if key in self.in_flight:
            return False
        head = self.known_head.get(key, 0)
        if head is None:
            return False  # the head must be read first
        self.written += 1
        update = Update(
            head + 1, head + 1, who="sim", request=f"w{self.written}",
            redo=f'{{"w": {self.written}}}', undo="{}",
        )  # fmt: skip
        op: Op = InitOp(key, update) if head == 0 else PatchOp(key, (update,))
        return self._propose(group, key, op, update, host, incarnation, now)

    def _propose(
        self,
        group: GroupId,
        key: Key,
        op: Op,
        update: Update,
        host: Host,
        incarnation: int,
        now: float,
    ) -> bool:
        partition = self.partition_of(host, group)
        try:
            proposal = partition.check(op)
        except BraidError:
            self.known_head[key] = None  # its head is not what we thought: read it
            return False
        node = host.groups[group]
        index = host.propose(group, proposal.data)
        write = Write(self.written, group, key, update, host.id, incarnation, now)
        write.data, write.index, write.term = proposal.data, index, node.term
        partition.track(index, node.term, proposal, write)
        self.in_flight[key] = write
        return True

    def partition_of(self, host: Host, group: GroupId) -> Partition[Write]:
        return self.partitions[host.id].partitions[group]

    def completed(self, completions: list[Completion[Write]]) -> list[Write]:
        """The outcomes the client is told; returns the writes acknowledged."""
        acknowledged = []
        for completion in completions:
            write = completion.token
            key = write.key
            if self.in_flight.get(key) is write:
                del self.in_flight[key]
            if completion.error is None:
                self.acknowledged.setdefault(key, {})[write.update.seq_begin] = write.update
                self.known_head[key] = write.update.seq_end
                acknowledged.append(write)
            elif completion.settled:  # a final refusal: the write never took effect
                self.not_applied.setdefault(key, set()).add(write.id)
                self.known_head[key] = None
            else:
                self.known_head[key] = None  # may or may not have been applied
        return acknowledged

    def abandon(self, host_id: HostId, incarnation: int) -> list[Write]:
        """A host crashed: the writes in flight there never complete (outcome unknown)."""
        abandoned = []
        for key, write in list(self.in_flight.items()):
            if write.host == host_id and write.incarnation == incarnation:
                del self.in_flight[key]
                self.known_head[key] = None
                abandoned.append(write)
        return abandoned

    # -- reads ------------------------------------------------------------------------------

    def read(self, group: GroupId, key: Key, host: Host, *, compute: bool = False) -> None:
        """A read at the leader under its lease — a get, or a compute of the head patch from
        seq 0 (which must be the document itself) — must see every acknowledged write."""
        partition = self.partition_of(host, group)
        try:
            if compute:
                change = partition.compute(key, ComputeMethod.HEAD_PATCH, 0)
                if change.json() != partition.get(key).json():
                    raise CheckFailed("reads agree", f"{key}: compute(HEAD_PATCH, 0) != get")
                seq = change.seq
            else:
                seq = partition.get(key).seq
        except BraidError as error:
            if error.code != DOCUMENT_NOT_FOUND.code:
                raise
            seq = 0
        acked = self.acknowledged.get(key)
        newest = max(acked) if acked else 0
        if seq < newest:
            raise CheckFailed(
                "stale read",
                f"{key} read at h{host.id} under its lease: seq {seq}, acknowledged {newest}",
            )
        if key not in self.in_flight:
            self.known_head[key] = seq

    # -- replicas ---------------------------------------------------------------------------

    def applied(self, host_id: HostId, group: GroupId, partition: Partition[Write]) -> None:
        """Two replicas at the same applied index hold the same documents."""
        mark = (group, partition.applied_index)
        digest = partition.digest()
        known = self.digests.setdefault(mark, digest)
        if known != digest:
            raise CheckFailed(
                "state-machine safety",
                f"group {group}: h{host_id}'s documents at index {mark[1]} differ from another's",
            )

    def check_replica(self, host_id: HostId, group: GroupId, partition: Partition[Write]) -> None:
        """Every acknowledged delta is in its document there, as acknowledged; no write told
        "not applied" is."""
        for key in self.keys[group]:
            log = partition.document(key)
            deltas = {delta.seq_begin: delta for delta in log.deltas} if log else {}
            for seq, update in self.acknowledged.get(key, {}).items():
                if seq <= (log.head if log else 0) and deltas.get(seq) != update:
                    raise CheckFailed(
                        "acknowledged write lost",
                        f"{key} seq {seq} on h{host_id}: {deltas.get(seq)} != {update}",
                    )
            refused = self.not_applied.get(key, set())
            for delta in deltas.values():
                if delta.request.startswith("w") and int(delta.request[1:]) in refused:
                    raise CheckFailed("write outcome", f"{key}: {delta} was told not applied")
