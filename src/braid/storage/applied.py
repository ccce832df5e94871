"""The applied state: every document's deltas, checkpointed from the write-ahead log.

Kept in SQLite (stdlib `sqlite3`): one row per document (head seq, compaction marks) and one
row per delta keyed by (space, key, seq_end), so `get` and `compute` read one document's rows
instead of replaying the log, and the store does not hold every delta in memory.

A checkpoint applies a run of durable log operations and records the lsn it applied through
in the same transaction, committed with `synchronous=FULL`; only then may the log release
segments at or below that lsn. Replay after a crash starts after the recorded lsn, so an
operation is applied exactly once.

One connection reads (from the event loop thread); another, used only by the checkpoint
thread, writes. SQLite's own WAL mode lets the reader see the last committed checkpoint
while the next one is being written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import msgspec

from braid.core.document import DocumentLog
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp
from braid.errors import APPLIED_STATE_FAILED, STORE_FORMAT, BraidError
from braid.model import DocumentInfo, Key, Update

FORMAT_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    space TEXT NOT NULL, key TEXT NOT NULL, head INTEGER NOT NULL,
    compacted_through INTEGER NOT NULL, compacted_exact INTEGER NOT NULL,
    PRIMARY KEY (space, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deltas (
    space TEXT NOT NULL, key TEXT NOT NULL, seq_end INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (space, key, seq_end)) WITHOUT ROWID;
"""

_encode = msgspec.msgpack.Encoder().encode
_decode_update = msgspec.msgpack.Decoder(Update).decode


class AppliedState:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._writer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=FULL")
            self._writer.executescript(_SCHEMA)
            self._check_format()
            self._reader = sqlite3.connect(path, isolation_level=None)
        except sqlite3.DatabaseError as error:
            raise BraidError(STORE_FORMAT, f"{path}: {error}") from None

    def _check_format(self) -> None:
        row = self._writer.execute("SELECT value FROM meta WHERE name='format'").fetchone()
        if row is None:
            self._writer.execute("INSERT INTO meta VALUES ('format', ?)", (FORMAT_VERSION,))
            self._writer.execute("INSERT INTO meta VALUES ('applied_lsn', 0)")
        elif row[0] != FORMAT_VERSION:
            raise BraidError(STORE_FORMAT, f"applied state format {row[0]}, this braid reads 1")

    def applied_lsn(self) -> int:
        row = self._reader.execute("SELECT value FROM meta WHERE name='applied_lsn'").fetchone()
        assert row is not None
        return int(row[0])

    def load(self, key: Key) -> DocumentLog | None:
        """The document as checkpointed, or None if it does not exist there."""
        row = self._reader.execute(
            "SELECT head, compacted_through, compacted_exact FROM documents "
            "WHERE space=? AND key=?",
            (key.space, key.key),
        ).fetchone()
        if row is None:
            return None
        rows = self._reader.execute(
            "SELECT data FROM deltas WHERE space=? AND key=? ORDER BY seq_end",
            (key.space, key.key),
        ).fetchall()
        deltas = [_decode_update(data) for (data,) in rows]
        if not deltas or deltas[-1].seq_end != row[0]:
            raise BraidError(APPLIED_STATE_FAILED, f"{key}: document row and deltas disagree")
        return DocumentLog(deltas, int(row[1]), bool(row[2]))

    def inventory(self) -> Iterator[DocumentInfo]:
        rows = self._reader.execute(
            "SELECT d.space, d.key, d.head, COUNT(x.seq_end), "
            "COALESCE(SUM(LENGTH(x.data)), 0) FROM documents d "
            "JOIN deltas x ON x.space = d.space AND x.key = d.key "
            "GROUP BY d.space, d.key ORDER BY d.space, d.key"
        )
        for space, key, head, count, size in rows:
            yield DocumentInfo(Key(space, key), head, count, size)

    def checkpoint(self, operations: Sequence[Op], through_lsn: int) -> None:
        """Apply operations (in log order) and record through_lsn, atomically and durably.

        Runs in the checkpoint thread.
        """
        try:
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._apply(operations)
                self._writer.execute(
                    "UPDATE meta SET value=? WHERE name='applied_lsn'", (through_lsn,)
                )
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            self._writer.execute("COMMIT")
        except sqlite3.Error as error:
            raise BraidError(APPLIED_STATE_FAILED, f"checkpoint failed: {error}") from None

    def _apply(self, operations: Iterable[Op]) -> None:
        execute = self._writer.execute
        inserts: list[tuple[str, str, int, bytes]] = []
        heads: dict[Key, tuple[int, int, int] | None] = {}
        for op in operations:
            key = op.key
            if isinstance(op, PatchOp):
                for update in op.updates:
                    inserts.append((key.space, key.key, update.seq_end, _encode(update)))
                previous = heads.get(key) or self._document_row(key)
                assert previous is not None, f"patch of {key} without a document row"
                heads[key] = (op.updates[-1].seq_end, previous[1], previous[2])
                continue
            self._flush_inserts(inserts)
            if isinstance(op, InitOp):
                execute("DELETE FROM deltas WHERE space=? AND key=?", (key.space, key.key))
                inserts.append((key.space, key.key, op.update.seq_end, _encode(op.update)))
                heads[key] = (op.update.seq_end, 0, 1)
            elif isinstance(op, FoldOp):
                delta = op.fold.delta
                execute(
                    "DELETE FROM deltas WHERE space=? AND key=? AND seq_end<=?",
                    (key.space, key.key, delta.seq_end),
                )
                inserts.append((key.space, key.key, delta.seq_end, _encode(delta)))
                previous = heads.get(key) or self._document_row(key)
                assert previous is not None, f"fold of {key} without a document row"
                heads[key] = (previous[0], delta.seq_end, int(op.fold.exact))
            elif isinstance(op, DeleteOp):
                execute("DELETE FROM deltas WHERE space=? AND key=?", (key.space, key.key))
                heads[key] = None
        self._flush_inserts(inserts)
        for key, head in heads.items():
            if head is None:
                execute("DELETE FROM documents WHERE space=? AND key=?", (key.space, key.key))
            else:
                execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                    (key.space, key.key, *head),
                )

    def _flush_inserts(self, inserts: list[tuple[str, str, int, bytes]]) -> None:
        if inserts:
            self._writer.executemany("INSERT INTO deltas VALUES (?, ?, ?, ?)", inserts)
            inserts.clear()

    def _document_row(self, key: Key) -> tuple[int, int, int] | None:
        row = self._writer.execute(
            "SELECT head, compacted_through, compacted_exact FROM documents "
            "WHERE space=? AND key=?",
            (key.space, key.key),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
