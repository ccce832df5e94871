"""Unit tests of one replicated partition's documents and its leader's write path
(`braid.core.partition`).

A `Group` stands in for Raft: the leader checks a write, "proposes" it by appending its
entry data to a list at the next index, and tracks it; `commit` applies the entries on the
leader and on a follower. The engines' answers come from the in-memory engine, whose async
methods finish without waiting and are run to completion here by `run`.
"""

from __future__ import annotations

import msgspec
import pytest

from braid.core.document import DocumentLog
from braid.core.partition import (
    EMPTY_DIGEST,
    NO_OP,
    Completion,
    Partition,
    Proposal,
    chain,
    decode_entry,
    document_digest,
    encode_entry,
)
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp
from braid.errors import (
    DOCUMENT_EXISTS,
    DOCUMENT_NOT_FOUND,
    HEAD_SEQ_OFF,
    NOT_LEADER,
    SNAPSHOT_MISMATCH,
    WRITE_NOT_DURABLE,
    BraidError,
    ErrorInfo,
)
from braid.model import HEAD_PATCH, REWIND, Key, Update
from braid.storage.memory import MemoryEngine
from tests.support.coroutines import run_at_once

A = Key("docs", "a")
B = Key("docs", "b")


def update(seq: int, redo: str = '{"n":1}', seq_end: int | None = None) -> Update:
    return Update(seq, seq if seq_end is None else seq_end, redo=redo, undo="{}")


def init(key: Key, seq: int = 1) -> InitOp:
    return InitOp(key, update(seq, f'{{"seq":{seq}}}'))


def patch(key: Key, seq: int) -> PatchOp:
    return PatchOp(key, (update(seq, f'{{"seq":{seq}}}'),))


class Group:
    """A leader and a follower over one log; the leader's term is `term`."""

    def __init__(self) -> None:
        self.leader: Partition[str] = Partition()
        self.follower: Partition[str] = Partition()
        self.log: list[tuple[int, bytes]] = []  # (term, data) at index position + 1
        self.term = 1
        self.applied = 0
        self.append(NO_OP)
        self.commit()
        self.leader.set_writable(True)

    def append(self, data: bytes, term: int | None = None) -> int:
        self.log.append((self.term if term is None else term, data))
        return len(self.log)

    def write(self, op: Op, token: str) -> int:
        """Check, propose and track `op`; its index."""
        proposal = self.leader.check(op)
        index = self.append(proposal.data)
        self.leader.track(index, self.term, proposal, token)
        return index

    def commit(self) -> list[Completion[str]]:
        """Apply every entry not yet applied on both replicas; the leader's completions."""
        completions: list[Completion[str]] = []
        for index in range(self.applied + 1, len(self.log) + 1):
            term, data = self.log[index - 1]
            completions += self.leader.apply(index, term, data)
            assert self.follower.apply(index, term, data) == []
        self.applied = len(self.log)
        return completions


def refusal(partition: Partition[str], op: Op) -> BraidError:
    with pytest.raises(BraidError) as caught:
        partition.check(op)
    return caught.value


def engine_refusal(engine: MemoryEngine, op: Op) -> BraidError:
    with pytest.raises(BraidError) as caught:
        if isinstance(op, InitOp):
            run_at_once(engine.initialize(op.key, op.update))
        elif isinstance(op, PatchOp):
            run_at_once(engine.patch(op.key, op.updates))
        else:
            assert isinstance(op, DeleteOp)
            run_at_once(engine.delete(op.key))
    return caught.value


def outcome(completion: Completion[str]) -> tuple[str, int | None, ErrorInfo | None]:
    error = completion.error
    return completion.token, completion.result, None if error is None else error.info


# -- entries ------------------------------------------------------------------------------------


def test_entries_round_trip_every_operation() -> None:
    """Each operation decodes from its entry as it was; the first byte is its record type."""
    fold = DocumentLog([update(1), update(2), update(3)]).plan_fold(3, '{"n":1}', 0)
    assert fold is not None
    for op in (init(A), patch(A, 2), FoldOp(A, fold), DeleteOp(A)):
        data = encode_entry(op)
        assert decode_entry(data) == op
    assert encode_entry(DeleteOp(A))[0] == 4


@pytest.mark.parametrize("data", [NO_OP, b"\x0f\x90", b"\x63\x90", b"\x02\xc1"])
def test_bytes_that_are_no_operation_do_not_decode(data: bytes) -> None:
    """The no-op, a COMMIT record type, an unknown type and bad msgpack all raise."""
    with pytest.raises((ValueError, msgspec.DecodeError, msgspec.ValidationError)):
        decode_entry(data)


# -- the write path -----------------------------------------------------------------------------


def test_wrong_seqs_are_refused_with_the_engines_codes() -> None:
    """Against the applied head, a gap, an overlap, an initialize of an existing document and
    a patch of a missing one are refused exactly as the memory engine refuses them (same
    code, same detail), and nothing is proposed."""
    group = Group()
    engine = MemoryEngine()
    run_at_once(engine.initialize(A, init(A).update))
    group.write(init(A), "w")
    for seq in (2, 3):
        run_at_once(engine.patch(A, patch(A, seq).updates))
        group.write(patch(A, seq), "w")
    group.commit()
    for op in (patch(A, 5), patch(A, 3), init(A), patch(B, 1), DeleteOp(B)):
        ours, theirs = refusal(group.leader, op), engine_refusal(engine, op)
        assert (ours.info, ours.detail) == (theirs.info, theirs.detail)
    assert refusal(group.leader, patch(A, 5)).info is HEAD_SEQ_OFF
    assert len(group.log) == 4


def test_checks_see_this_leaders_pending_writes() -> None:
    """The next write's seq is checked against the head after the pending ones; an
    initialize of a document with a pending initialize is DOCUMENT_EXISTS; a patch of a
    document with a pending delete is DOCUMENT_NOT_FOUND, and initializing it is allowed."""
    group = Group()
    group.write(init(A), "a1")
    assert refusal(group.leader, init(A)).info is DOCUMENT_EXISTS
    assert refusal(group.leader, patch(A, 1)).info is HEAD_SEQ_OFF
    group.write(patch(A, 2), "a2")
    error = refusal(group.leader, patch(A, 2))
    assert error.info is HEAD_SEQ_OFF
    assert "the head is 2" in error.detail
    group.write(patch(A, 3), "a3")
    group.write(DeleteOp(A), "a4")
    assert refusal(group.leader, patch(A, 4)).info is DOCUMENT_NOT_FOUND
    assert refusal(group.leader, DeleteOp(A)).info is DOCUMENT_NOT_FOUND
    group.write(init(A, 7), "a5")
    assert group.leader.pending == 5
    # Reads answer from the applied state: nothing is applied yet.
    with pytest.raises(BraidError) as caught:
        group.leader.get(A)
    assert caught.value.info is DOCUMENT_NOT_FOUND
    assert [outcome(c) for c in group.commit()] == [
        ("a1", None, None),
        ("a2", None, None),
        ("a3", None, None),
        ("a4", None, None),
        ("a5", None, None),
    ]
    assert group.leader.get(A).seq == 7
    assert group.leader.pending == 0


def test_a_partition_not_writable_refuses_every_write_as_not_leader() -> None:
    """Before the host marks it writable (and after it unmarks it), check and plan_snapshot
    refuse with NOT_LEADER, retryable, saying the request was not run."""
    partition: Partition[str] = Partition()
    for attempt in (
        lambda: partition.check(init(A)),
        lambda: partition.plan_snapshot(A, 1, "{}", 0),
    ):
        with pytest.raises(BraidError) as caught:
            attempt()
        assert caught.value.info is NOT_LEADER
        assert caught.value.retryable
        assert "not run" in caught.value.detail
    group = Group()
    group.leader.set_writable(False)
    assert refusal(group.leader, init(A)).info is NOT_LEADER


def test_a_proposal_checked_before_another_is_tracked_is_refused() -> None:
    """track takes only the proposal checked last: two checks before two tracks would let
    the second write skip the first (both patches at seq 2)."""
    group = Group()
    group.write(init(A), "a1")
    first = group.leader.check(patch(A, 2))
    second = group.leader.check(patch(A, 2))
    group.leader.track(group.append(first.data), group.term, first, "a2")
    with pytest.raises(AssertionError):
        group.leader.track(group.append(second.data), group.term, second, "a3")


def test_snapshots_are_planned_on_the_head_after_pending_writes() -> None:
    """plan_snapshot folds the document as the pending writes leave it; applying the fold
    completes with the engines' count of removed deltas; a fold with nothing to fold is
    None (answered 0 without proposing)."""
    group = Group()
    group.write(init(A), "a1")
    group.write(patch(A, 2), "a2")
    group.write(patch(A, 3), "a3")
    fold = group.leader.plan_snapshot(A, 3, '{"seq":3}', 0)
    assert isinstance(fold, FoldOp)
    group.write(fold, "fold")
    assert group.leader.plan_snapshot(A, 3, '{"seq":3}', 0) is None
    engine = MemoryEngine()
    run_at_once(engine.initialize(A, init(A).update))
    run_at_once(engine.patch(A, patch(A, 2).updates))
    run_at_once(engine.patch(A, patch(A, 3).updates))
    removed = run_at_once(engine.snapshot(A, 3, '{"seq":3}', 0))
    assert outcome(group.commit()[-1]) == ("fold", removed, None)
    assert group.leader.get(A) == run_at_once(engine.get(A))
    assert group.follower.inventory() == run_at_once(engine.inventory())


# -- apply ----------------------------------------------------------------------------------------


def test_an_index_taken_by_another_leaders_entry_completes_as_not_applied() -> None:
    """A tracked write whose index is applied with another term (or other data) completes
    with NOT_LEADER "not applied, safe to retry"; the document's later pending write still
    settles first, and until then new writes to it are refused."""
    group = Group()
    group.write(init(A), "a1")
    group.commit()
    first = group.write(patch(A, 2), "a2")
    group.write(patch(A, 3), "a3")
    # Another leader (term 2) wrote index `first` and the one after it.
    del group.log[first - 1 :]
    group.append(encode_entry(patch(A, 2)), term=2)
    completions = group.commit()
    assert [outcome(c) for c in completions] == [("a2", None, NOT_LEADER)]
    error = completions[0].error
    assert error is not None and "not applied" in error.detail and "safe to retry" in error.detail
    assert completions[0].settled
    error = refusal(group.leader, patch(A, 3))
    assert error.info is NOT_LEADER
    assert "1 write(s)" in error.detail
    group.append(encode_entry(patch(A, 3)), term=2)  # a3's data, in another term
    assert [outcome(c) for c in group.commit()] == [("a3", None, NOT_LEADER)]
    # Everything proposed for A has settled: its head is the applied head again.
    assert group.leader.check(patch(A, 4)).op == patch(A, 4)


def test_same_index_and_term_with_other_data_is_not_applied() -> None:
    """The data is compared too: a tracked write completes only with its own entry."""
    group = Group()
    group.write(init(A), "a1")
    group.log[-1] = (group.term, encode_entry(init(A, 2)))
    assert [outcome(c) for c in group.commit()] == [("a1", None, NOT_LEADER)]
    assert group.leader.get(A).seq == 2


def test_an_entry_that_fails_its_check_is_skipped_alike_on_every_replica() -> None:
    """An entry the leader did not check (another leader's, here one moving A's head under a
    pending write) and the pending write it breaks both apply deterministically: the broken
    write completes with the engines' HEAD_SEQ_OFF, both replicas skip it and end identical."""
    group = Group()
    group.write(init(A), "a1")
    group.commit()
    proposal = group.leader.check(patch(A, 2))
    untracked = group.append(encode_entry(patch(A, 2)))  # not tracked by the leader
    group.leader.track(untracked + 1, group.term, proposal, "a2")
    group.append(proposal.data)
    group.append(encode_entry(patch(A, 9)))  # a gap: fails on both replicas
    group.append(b"\x02garbage")  # does not decode: skipped on both replicas
    completions = group.commit()
    assert [outcome(c) for c in completions] == [("a2", None, HEAD_SEQ_OFF)]
    assert completions[0].settled
    assert group.leader.skipped == group.follower.skipped == 3
    assert group.leader.get(A).seq == 2
    assert group.leader.digest() == group.follower.digest()
    assert group.leader.summary() == group.follower.summary()


def test_two_replicas_applying_the_same_entries_are_identical() -> None:
    """Leader and follower hold the same documents, inventory, summary and digest after every
    commit, and the digest changes with every write."""
    group = Group()
    digests = {group.leader.digest()}
    for op in (init(A), patch(A, 2), init(B), DeleteOp(A), init(A, 5), patch(B, 2)):
        group.write(op, "w")
        group.commit()
        assert group.leader.inventory() == group.follower.inventory()
        assert group.leader.summary() == group.follower.summary()
        assert group.leader.digest() == group.follower.digest()
        digests.add(group.leader.digest())
    assert len(digests) == 7
    for key in (A, B):
        assert group.leader.get(key) == group.follower.get(key)
        assert group.leader.compute(key, REWIND, 1) == group.follower.compute(key, REWIND, 1)


def test_a_document_digest_chains_its_retained_deltas() -> None:
    """summary() gives each document's head and the chain over its deltas; a fold rechains
    over the deltas it leaves."""
    group = Group()
    for op in (init(A), patch(A, 2), patch(A, 3)):
        group.write(op, "w")
    group.commit()
    log = DocumentLog([init(A).update, *patch(A, 2).updates, *patch(A, 3).updates])
    expected = EMPTY_DIGEST
    for delta in log.deltas:
        expected = chain(expected, delta)
    assert group.follower.summary() == {A: (3, expected)}
    fold = group.leader.plan_snapshot(A, 3, '{"seq":3}', 1)
    assert fold is not None
    group.write(fold, "fold")
    group.commit()
    document = group.follower.document(A)
    assert document is not None and len(document.deltas) == 2
    assert group.follower.summary() == {A: (3, document_digest(document))}
    assert document_digest(document) != expected


# -- leadership and failure ---------------------------------------------------------------------


def test_lost_leadership_fails_pending_writes_that_may_still_commit() -> None:
    """Every pending write completes with NOT_LEADER (retryable, "may still apply"); the
    partition refuses writes; the entries, committed by the new leader later, apply and
    complete nobody, and a retried patch then fails with HEAD_SEQ_OFF."""
    group = Group()
    group.write(init(A), "a1")
    group.write(patch(A, 2), "a2")
    completions = group.leader.lost_leadership()
    assert [outcome(c) for c in completions] == [("a1", None, NOT_LEADER), ("a2", None, NOT_LEADER)]
    assert all(c.error is not None and c.error.retryable for c in completions)
    assert all(c.error is not None and "may still apply" in c.error.detail for c in completions)
    assert not any(c.settled for c in completions)
    assert group.leader.pending == 0
    assert not group.leader.writable
    assert refusal(group.leader, patch(A, 3)).info is NOT_LEADER
    assert group.commit() == []
    group.leader.set_writable(True)
    assert refusal(group.leader, patch(A, 2)).info is HEAD_SEQ_OFF


def test_catastrophic_failure_fails_pending_writes_and_holds_their_documents() -> None:
    """Pending writes complete with WRITE_NOT_DURABLE (retryable, "may or may not"); new
    writes to their documents are refused until each write proposed for them has settled
    (applied, or its index taken by another entry), other documents take writes meanwhile,
    and the settled entries complete nobody a second time."""
    group = Group()
    group.write(init(A), "a1")
    group.commit()
    group.write(patch(A, 2), "a2")
    group.write(patch(A, 3), "a3")
    completions = group.leader.catastrophic("the log write failed")
    assert [outcome(c) for c in completions] == [
        ("a2", None, WRITE_NOT_DURABLE),
        ("a3", None, WRITE_NOT_DURABLE),
    ]
    assert all(c.error is not None and "may or may not" in c.error.detail for c in completions)
    assert not any(c.settled for c in completions)
    assert group.leader.catastrophic("again") == []
    error = refusal(group.leader, patch(A, 4))
    assert (error.info, error.retryable) == (WRITE_NOT_DURABLE, True)
    assert "2 write(s)" in error.detail
    group.write(init(B), "b1")  # untouched documents take writes
    # a2 commits; a new leader's no-ops (term 2) take a3's and b1's indexes.
    group.term += 1
    group.log[3] = group.log[4] = (group.term, NO_OP)
    completions = group.commit()
    assert [outcome(c) for c in completions] == [("b1", None, NOT_LEADER)]  # a2, a3 answered
    assert group.leader.get(A).seq == 2
    # A has nothing pending: its applied head (2) decides.
    assert refusal(group.leader, patch(A, 4)).info is HEAD_SEQ_OFF
    group.write(patch(A, 3), "a3 again")
    assert [outcome(c) for c in group.commit()] == [("a3 again", None, None)]


def test_install_replaces_the_state_with_documents_from_peers() -> None:
    """A sick replica installs its peer's documents as of an index: its summary and digest
    become the peer's, later entries apply on top, and a pending write fails NOT_LEADER."""
    group = Group()
    group.write(init(A), "a1")
    group.write(init(B), "b1")
    group.commit()
    sick: Partition[str] = Partition()
    sick.set_writable(True)
    proposal: Proposal = sick.check(init(A))
    sick.track(1, 1, proposal, "lost")
    documents: dict[Key, DocumentLog] = {}
    for key in (A, B):
        document = group.leader.document(key)
        assert document is not None
        documents[key] = document
    completions = sick.install(group.applied, group.term, documents)
    assert [outcome(c) for c in completions] == [("lost", None, NOT_LEADER)]
    assert (sick.applied_index, sick.applied_term) == (group.applied, group.term)
    assert sick.summary() == group.leader.summary()
    assert sick.digest() == group.leader.digest()
    index = group.write(patch(A, 2), "a2")
    group.commit()
    assert sick.apply(index, group.term, group.log[index - 1][1]) == []
    assert sick.digest() == group.leader.digest()
    assert sick.compute(A, HEAD_PATCH, 1) == group.leader.compute(A, HEAD_PATCH, 1)


def test_a_stale_fold_is_refused_at_apply_as_a_snapshot_mismatch() -> None:
    """A fold planned on deltas the document no longer has is skipped on every replica with
    SNAPSHOT_MISMATCH, never applied to other deltas."""
    group = Group()
    for op in (init(A), patch(A, 2), patch(A, 3)):
        group.write(op, "w")
    group.commit()
    fold = group.leader.plan_snapshot(A, 2, '{"seq":2}', 0)
    assert fold is not None
    group.append(encode_entry(DeleteOp(A)))
    group.append(encode_entry(init(A, 2)))
    index = group.write(fold, "fold")
    assert index == len(group.log)
    completions = group.commit()
    assert [outcome(c) for c in completions] == [("fold", None, SNAPSHOT_MISMATCH)]
    assert group.follower.get(A).seq == 2
