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

Every row carries a CRC32C of its fields (`check`), computed when it is written and
verified whenever it is read: SQLite's own structure is trusted to find rows, braid's bytes
are checked. Any failure of a read (SQLite's errors, undecodable text or data, a checksum
that does not match, chunks that do not join) is APPLIED_STATE_CORRUPT naming the file and
the document; a full disk is DISK_FULL; a path braid may not write is STORE_ACCESS. Opened
read-only, the state is read with `immutable=1` when no SQLite journal is pending, so that
reading creates no file at all.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import crc32c
import msgspec

from braid import limits
from braid.core.document import DocumentLog
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, Op, PatchOp
from braid.errors import (
    APPLIED_STATE_CORRUPT,
    APPLIED_STATE_FAILED,
    DISK_FULL,
    STORE_ACCESS,
    STORE_FORMAT,
    BraidError,
    ErrorInfo,
)
from braid.model import DocumentInfo, Key, Update

FORMAT_VERSION = 2  # 2: every row carries a checksum (`check`)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY, value INTEGER NOT NULL, "check" INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    space TEXT NOT NULL, key TEXT NOT NULL, head INTEGER NOT NULL,
    compacted_through INTEGER NOT NULL, compacted_exact INTEGER NOT NULL,
    "check" INTEGER NOT NULL,
    PRIMARY KEY (space, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks (
    space TEXT NOT NULL, key TEXT NOT NULL, seq_end INTEGER NOT NULL,
    seq_begin INTEGER NOT NULL, deltas INTEGER NOT NULL, data BLOB NOT NULL,
    "check" INTEGER NOT NULL,
    PRIMARY KEY (space, key, seq_end)) WITHOUT ROWID;
"""

_encode = msgspec.msgpack.Encoder().encode
_decode_chunk = msgspec.msgpack.Decoder(list[Update]).decode
# space, key, seq_end, seq_begin, deltas, data, check
ChunkRow = tuple[str, str, int, int, int, bytes, int]

# SQLite's primary result codes that are not damage (everything else from a read is).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN = 3, 8, 14
_SQLITE_FULL = 13
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def row_check(*fields: object) -> int:
    """The CRC32C of a row's fields (msgpack-encoded, so types and order count)."""
    return crc32c.crc32c(_encode(fields))


def _chunk_check(
    space: str, key: str, seq_end: int, seq_begin: int, deltas: int, data: bytes
) -> int:
    return crc32c.crc32c(data, row_check(space, key, seq_end, seq_begin, deltas))


def storage_error(path: Path, error: Exception, doing: str, *, writing: bool = False) -> BraidError:
    """A failure of SQLite (or of decoding what it returned) as a catalogued error; while
    `writing`, an I/O failure is APPLIED_STATE_FAILED rather than damage."""
    info: ErrorInfo = APPLIED_STATE_CORRUPT
    if isinstance(error, sqlite3.Error):
        code = (getattr(error, "sqlite_errorcode", 0) or 0) & 0xFF
        if code == _SQLITE_FULL:
            info = DISK_FULL
        elif code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN):
            info = STORE_ACCESS
        elif writing and code not in (_SQLITE_CORRUPT, _SQLITE_NOTADB, 0):
            info = APPLIED_STATE_FAILED
    return BraidError(info, f"{path}: {doing}: {error}")


def read_only_uri(path: Path) -> str:
    """How to open the applied state without writing anything: `immutable=1` (no locks, no
    side files) unless SQLite's own journal holds committed pages it must read."""
    journal = path.with_name(path.name + "-wal")
    pending = journal.exists() and journal.stat().st_size > 0
    return f"file:{quote(str(path))}?mode=ro" + ("" if pending else "&immutable=1")


@dataclass(frozen=True)
class Problem:
    """One damaged thing found by `AppliedState.verify`."""

    key: Key | None  # the document it affects, None for the file or meta
    detail: str


class AppliedState:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._writer: sqlite3.Connection | None = None
        try:
            if read_only:
                self._reader = sqlite3.connect(
                    read_only_uri(path), uri=True, isolation_level=None, check_same_thread=False
                )
                self._check_format(self._reader)
                return
            self._writer = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=FULL")
            self._writer.executescript(_SCHEMA)
            self._check_format(self._writer)
            # SQLite opens a file it may not write read-only without a word; taking the
            # write lock here makes that STORE_ACCESS now, before anything is logged.
            self._writer.execute("BEGIN IMMEDIATE")
            try:
                self._writer.execute("UPDATE meta SET value=value WHERE name='format'")
            finally:
                self._writer.execute("ROLLBACK")
            self._reader = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as error:
            self.close()
            raise storage_error(path, error, "cannot open the applied state") from None
        except BraidError:
            self.close()
            raise

    def _check_format(self, connection: sqlite3.Connection) -> None:
        row = connection.execute("SELECT value, \"check\" FROM meta WHERE name='format'").fetchone()
        if row is None:
            if self.read_only:
                raise BraidError(APPLIED_STATE_CORRUPT, f"{self.path}: no format row")
            for name, value in (("format", FORMAT_VERSION), ("applied_lsn", 0)):
                connection.execute(
                    "INSERT INTO meta VALUES (?, ?, ?)", (name, value, row_check(name, value))
                )
            return
        if row[0] != FORMAT_VERSION:
            raise BraidError(
                STORE_FORMAT,
                f"{self.path}: applied state format {row[0]}, this braid reads {FORMAT_VERSION}",
            )
        if row[1] != row_check("format", row[0]):
            raise BraidError(APPLIED_STATE_CORRUPT, f"{self.path}: the format row's checksum")

    def _fail(self, error: Exception, doing: str, *, writing: bool = False) -> BraidError:
        return storage_error(self.path, error, doing, writing=writing)

    def applied_lsn(self) -> int:
        try:
            row = self._reader.execute(
                "SELECT value, \"check\" FROM meta WHERE name='applied_lsn'"
            ).fetchone()
        except sqlite3.Error as error:
            raise self._fail(error, "reading the applied lsn") from None
        if row is None or row[1] != row_check("applied_lsn", row[0]):
            raise BraidError(
                APPLIED_STATE_CORRUPT, f"{self.path}: the applied lsn is missing or damaged"
            )
        return int(row[0])

    def load(self, key: Key) -> DocumentLog | None:
        """The document as checkpointed, or None if it does not exist there."""
        try:
            return self._load(key)
        except BraidError:
            raise
        except (sqlite3.Error, UnicodeDecodeError, msgspec.DecodeError, ValueError) as error:
            raise self._fail(error, f"reading {key}") from None

    def _load(self, key: Key) -> DocumentLog | None:
        row = self._reader.execute(
            'SELECT head, compacted_through, compacted_exact, "check" FROM documents '
            "WHERE space=? AND key=?",
            (key.space, key.key),
        ).fetchone()
        if row is None:
            return None
        head, through, exact, check = row
        if check != row_check(key.space, key.key, head, through, exact):
            raise BraidError(APPLIED_STATE_CORRUPT, f"{self.path}: {key}: document row checksum")
        rows = self._reader.execute(
            'SELECT seq_end, seq_begin, deltas, data, "check" FROM chunks '
            "WHERE space=? AND key=? ORDER BY seq_end",
            (key.space, key.key),
        ).fetchall()
        deltas = self._joined(key, rows)
        if not deltas or deltas[-1].seq_end != head:
            raise BraidError(
                APPLIED_STATE_CORRUPT, f"{self.path}: {key}: document row and deltas disagree"
            )
        return DocumentLog(deltas, int(through), bool(exact))

    def _joined(self, key: Key, rows: list[tuple[int, int, int, bytes, int]]) -> list[Update]:
        """A document's chunks, each checked, joined into its deltas (which must follow on)."""
        deltas: list[Update] = []
        for seq_end, seq_begin, count, data, check in rows:
            if check != _chunk_check(key.space, key.key, seq_end, seq_begin, count, data):
                raise BraidError(
                    APPLIED_STATE_CORRUPT,
                    f"{self.path}: {key}: checksum of the chunk ending at seq {seq_end}",
                )
            chunk = _decode_chunk(data)
            if len(chunk) != count or chunk[0].seq_begin != seq_begin:
                raise BraidError(
                    APPLIED_STATE_CORRUPT, f"{self.path}: {key}: chunk {seq_end} disagrees"
                )
            if deltas and chunk[0].seq_begin != deltas[-1].seq_end + 1:
                raise BraidError(
                    APPLIED_STATE_CORRUPT,
                    f"{self.path}: {key}: deltas {deltas[-1].seq_end + 1}..{seq_begin - 1} "
                    "are missing",
                )
            deltas.extend(chunk)
        return deltas

    def inventory(self) -> Iterator[DocumentInfo]:
        try:
            rows = self._reader.execute(
                "SELECT d.space, d.key, d.head, SUM(x.deltas), "
                "COALESCE(SUM(LENGTH(x.data)), 0) FROM documents d "
                "JOIN chunks x ON x.space = d.space AND x.key = d.key "
                "GROUP BY d.space, d.key ORDER BY d.space, d.key"
            ).fetchall()
            return iter([DocumentInfo(Key(*row[:2]), *row[2:]) for row in rows])
        except BraidError as error:
            raise BraidError(APPLIED_STATE_CORRUPT, f"{self.path}: a stored key: {error}") from None
        except (sqlite3.Error, UnicodeDecodeError) as error:
            raise self._fail(error, "listing documents") from None

    def verify(self) -> Iterator[Problem]:
        """Read every row and check it (SQLite's quick_check, then braid's checksums and
        joins, document by document). Yields what is damaged; read only."""
        try:
            for (message,) in self._reader.execute("PRAGMA quick_check").fetchall():
                if message != "ok":
                    yield Problem(None, f"SQLite: {message}")
            keys = self._reader.execute("SELECT space, key FROM documents").fetchall()
            orphans = self._reader.execute(
                "SELECT DISTINCT space, key FROM chunks EXCEPT SELECT space, key FROM documents"
            ).fetchall()
        except (sqlite3.Error, UnicodeDecodeError) as error:
            yield Problem(None, str(self._fail(error, "reading the tables")))
            return
        for space, key_text in keys:
            try:
                key = Key(space, key_text)
            except BraidError:
                yield Problem(None, f"a document row names an invalid key {key_text!r}")
                continue
            try:
                self.load(key)
            except BraidError as error:
                yield Problem(key, error.detail)
        for space, key_text in orphans:
            yield Problem(None, f"chunks of {space}/{key_text} have no document row")

    def document_count(self) -> int:
        try:
            (count,) = self._reader.execute("SELECT COUNT(*) FROM documents").fetchone()
        except sqlite3.Error as error:
            raise self._fail(error, "counting documents") from None
        return int(count)

    def checkpoint(self, operations: Sequence[Op], through_lsn: int) -> None:
        """Apply operations (in log order) and record through_lsn, atomically and durably.

        Runs in the checkpoint thread. A failure leaves the state as it was (the
        transaction is rolled back if SQLite has not already done so) and reports the
        failure itself, never an error of the rollback.
        """
        writer = self._writer
        assert writer is not None, "checkpoint of a read-only applied state"
        try:
            writer.execute("BEGIN IMMEDIATE")
            self._apply(operations)
            writer.execute(
                "UPDATE meta SET value=?, \"check\"=? WHERE name='applied_lsn'",
                (through_lsn, row_check("applied_lsn", through_lsn)),
            )
            writer.execute("COMMIT")
        except BaseException as error:
            if writer.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    writer.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise self._fail(error, "checkpoint failed", writing=True) from None
            raise

    def _apply(self, operations: Iterable[Op]) -> None:
        writer = self._writer
        assert writer is not None
        execute = writer.execute
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
                    "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                    (key.space, key.key, *head, row_check(key.space, key.key, *head)),
                )

    def _write_chunks(self, key: Key, updates: list[Update]) -> None:
        writer = self._writer
        assert writer is not None
        rows: list[ChunkRow] = []
        step = limits.applied_chunk_deltas_max
        for start in range(0, len(updates), step):
            chunk = updates[start : start + step]
            data = _encode(chunk)
            fields = (key.space, key.key, chunk[-1].seq_end, chunk[0].seq_begin, len(chunk))
            rows.append((*fields, data, _chunk_check(*fields, data)))
        if rows:
            writer.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def _fold(self, key: Key, op: FoldOp) -> None:
        """Replace every delta ending at or before the fold's seq_end with the folded one."""
        writer = self._writer
        assert writer is not None
        execute = writer.execute
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
        writer = self._writer
        assert writer is not None
        row = writer.execute(
            "SELECT head, compacted_through, compacted_exact FROM documents "
            "WHERE space=? AND key=?",
            (key.space, key.key),
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]), int(row[2]))

    def close(self) -> None:
        for name in ("_reader", "_writer"):
            connection = getattr(self, name, None)
            if connection is not None:
                with contextlib.suppress(sqlite3.Error):
                    connection.close()
