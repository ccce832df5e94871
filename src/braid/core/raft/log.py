"""One replica's Raft log: its entries, which of them are durable, and the commit index.

Indexes start at 1. Entries at or below `offset` were compacted away (the applied state holds
them); `offset_term` is the term of the entry at `offset`. Entries are handed to the driver
to make durable (`take_unstable`) and reported back (`persisted_to`); an entry overwritten
meanwhile (a conflicting leader's) is not reported durable by a report for the old one,
because the report names the term it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence

from braid.core.raft.messages import Entry


class RaftLog:
    def __init__(
        self, entries: Sequence[Entry] = (), offset: int = 0, offset_term: int = 0
    ) -> None:
        """A log restored from durable state: `entries` (contiguous, after `offset`) are
        all durable."""
        for position, entry in enumerate(entries):
            assert entry.index == offset + 1 + position, (entry.index, offset, position)
        self.offset = offset
        self.offset_term = offset_term
        self.entries = list(entries)
        self.persisted = self.last_index  # what the driver reported durable
        self.unstable_from = self.last_index + 1  # not yet handed to the driver
        self.committed = offset
        self.applied = offset

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.offset_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index`; None when it is compacted away or not there."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset or index > self.last_index:
            return None
        return self.entries[index - self.offset - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset - 1]

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as this
        one (§5.4.1: the later last term wins; on a tie, the longer log)."""
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    # -- changes --------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> int | None:
        """Add entries following (or overwriting) the log: an entry that conflicts with one
        held (same index, other term) drops it and every entry after it. Entries already
        held are kept as they are (and stay durable). Returns the first index written (all
        entries from there on are new), or None when every entry was held already."""
        for position, entry in enumerate(entries):
            if entry.index <= self.offset:
                continue  # compacted: committed, so the same entry
            held = self.term_at(entry.index)
            if held == entry.term:
                continue
            assert entry.index > self.committed, "a committed entry is never overwritten"
            assert entry.index <= self.last_index + 1, "entries are contiguous"
            del self.entries[entry.index - self.offset - 1 :]
            self.persisted = min(self.persisted, entry.index - 1)
            self.unstable_from = min(self.unstable_from, entry.index)
            self.entries.extend(entries[position:])
            return entry.index
        return None

    def take_unstable(self) -> list[Entry]:
        """The entries the driver must make durable next, in order (each handed out once)."""
        if self.unstable_from > self.last_index:
            return []
        start = self.unstable_from - self.offset - 1
        self.unstable_from = self.last_index + 1
        return self.entries[start:]

    def persisted_to(self, index: int, term: int) -> bool:
        """The driver made the entries through `index` (of `term`) durable; False when that
        entry has been overwritten since (the report is stale)."""
        if index <= self.persisted or self.term_at(index) != term:
            return False
        assert index < self.unstable_from, "reported durable before it was handed out"
        self.persisted = index
        return True

    def commit_to(self, index: int) -> bool:
        if index <= self.committed:
            return False
        assert index <= self.last_index, (index, self.last_index)
        self.committed = index
        return True

    def take_committed(self) -> list[Entry]:
        """The committed entries to apply next, in order: only durable ones (the applied
        state never holds an entry this replica's log could lose)."""
        end = min(self.committed, self.persisted)
        if end <= self.applied:
            return []
        start = self.applied
        self.applied = end
        return self.entries[start - self.offset : end - self.offset]

    def slice(self, first: int, count_max: int) -> tuple[Entry, ...]:
        """Up to `count_max` entries from `first` on (first > offset)."""
        assert first > self.offset
        start = first - self.offset - 1
        return tuple(self.entries[start : start + count_max])

    def compact(self, index: int) -> None:
        """Drop the entries through `index` (applied: the applied state holds them)."""
        assert index <= self.applied, (index, self.applied)
        if index <= self.offset:
            return
        term = self.term_at(index)
        assert term is not None
        del self.entries[: index - self.offset]
        self.offset, self.offset_term = index, term

    def install(self, index: int, term: int) -> None:
        """Replace the log by a snapshot's position: everything through (`index`, `term`) is
        committed and held by the applied state (the driver loads it), nothing after it."""
        assert index > self.committed, (index, self.committed)
        self.entries = []
        self.offset, self.offset_term = index, term
        self.committed = self.applied = self.persisted = index
        self.unstable_from = index + 1
