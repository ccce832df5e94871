"""The applied state: every document's deltas, checkpointed from the write-ahead log.

Kept in SQLite (stdlib `sqlite3`): one row per document (head seq, compaction marks) and its
deltas in *chunks*: a row keyed by (space, key, seq_end of its last delta) holding a msgpack
list of consecutive deltas (at most `limits.applied_chunk_deltas_max`). `get` and `compute`
read one document's chunks instead of replaying the log, and the store does not hold every
delta in memory. Chunks rather than a row per delta: a checkpoint of 65,536 patches to 64
documents writes about 64 rows, not 65,536, which measured about 30% of the write
throughput when every delta was its own row.

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

from braid import limits
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
CREATE TABLE IF NOT EXISTS chunks (
    space TEXT NOT NULL, key TEXT NOT NULL, seq_end INTEGER NOT NULL,
    seq_begin INTEGER NOT NULL, deltas INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (space, key, seq_end)) WITHOUT ROWID;
"""

_encode = msgspec.msgpack.Encoder().encode
_decode_chunk = msgspec.msgpack.Decoder(list[Update]).decode
ChunkRow = tuple[str, str, int, int, int, bytes]  # space, key, seq_end, seq_begin, deltas, data


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
            "SELECT data FROM chunks WHERE space=? AND key=? ORDER BY seq_end",
            (key.space, key.key),
        ).fetchall()
        deltas = [update for (data,) in rows for update in _decode_chunk(data)]
        if not deltas or deltas[-1].seq_end != row[0]:
            raise BraidError(APPLIED_STATE_FAILED, f"{key}: document row and deltas disagree")
        return DocumentLog(deltas, int(row[1]), bool(row[2]))

    def inventory(self) -> Iterator[DocumentInfo]:
        rows = self._reader.execute(
            "SELECT d.space, d.key, d.head, SUM(x.deltas), "
            "COALESCE(SUM(LENGTH(x.data)), 0) FROM documents d "
            "JOIN chunks x ON x.space = d.space AND x.key = d.key "
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
        appended: dict[Key, list[Update]] = {}  # per document, deltas not yet in a chunk
        heads: dict[Key, tuple[int, int, int] | None] = {}
        for op in operations:
            key = op.key
            if isinstance(op, PatchOp):
                appended.setdefault(key, []).extend(op.updates)
                previous = heads.get(key) or self._document_row(key)
                assert previous is not None, f"patch of {key} without a document row"
                heads[key] = (op.updates[-1].seq_end, previous[1], previous[2])
            elif isinstance(op, InitOp):
                execute("DELETE FROM chunks WHERE space=? AND key=?", (key.space, key.key))
                appended[key] = [op.update]
                heads[key] = (op.update.seq_end, 0, 1)
            elif isinstance(op, FoldOp):
                self._write_chunks(key, appended.pop(key, []))
                self._fold(key, op)
                previous = heads.get(key) or self._document_row(key)
                assert previous is not None, f"fold of {key} without a document row"
                heads[key] = (previous[0], op.fold.delta.seq_end, int(op.fold.exact))
            elif isinstance(op, DeleteOp):
                appended.pop(key, None)
                execute("DELETE FROM chunks WHERE space=? AND key=?", (key.space, key.key))
                heads[key] = None
        for key, updates in appended.items():
            self._write_chunks(key, updates)
        for key, head in heads.items():
            if head is None:
                execute("DELETE FROM documents WHERE space=? AND key=?", (key.space, key.key))
            else:
                execute(
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?)",
                    (key.space, key.key, *head),
                )

    def _write_chunks(self, key: Key, updates: list[Update]) -> None:
        rows: list[ChunkRow] = []
        step = limits.applied_chunk_deltas_max
        for start in range(0, len(updates), step):
            chunk = updates[start : start + step]
            rows.append(
                (
                    key.space,
                    key.key,
                    chunk[-1].seq_end,
                    chunk[0].seq_begin,
                    len(chunk),
                    _encode(chunk),
                )
            )
        if rows:
            self._writer.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _fold(self, key: Key, op: FoldOp) -> None:
        """Replace every delta ending at or before the fold's seq_end with the folded one."""
        execute = self._writer.execute
        boundary = op.fold.delta.seq_end
        execute(
            "DELETE FROM chunks WHERE space=? AND key=? AND seq_end<=?",
            (key.space, key.key, boundary),
        )
        straddling = execute(
            "SELECT seq_end, seq_begin, data FROM chunks WHERE space=? AND key=? AND seq_end>? "
            "ORDER BY seq_end LIMIT 1",
            (key.space, key.key, boundary),
        ).fetchone()
        if straddling is not None and straddling[1] <= boundary:
            kept = [update for update in _decode_chunk(straddling[2]) if update.seq_end > boundary]
            execute(
                "DELETE FROM chunks WHERE space=? AND key=? AND seq_end=?",
                (key.space, key.key, straddling[0]),
            )
            self._write_chunks(key, kept)
        self._write_chunks(key, [op.fold.delta])

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
