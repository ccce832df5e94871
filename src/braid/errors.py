"""The error catalog: every failure braid can report, with a stable numeric code.

Each entry has a unique code that never changes meaning once released, a name, a
description written for the person reading it, whether a client should retry the same
request, and whether the user (rather than an operator or a braid developer) can fix it.

`docs/errors.md` is generated from this table (`braid errors --markdown`) and a test fails
when it is stale or when two entries share a code or name. Code ranges:

    1xxx  invalid input (keys, JSON, updates, arguments)
    2xxx  document state (missing, exists, sequence conflicts, compaction)
    3xxx  storage (write-ahead log, applied state, store directory)
    4xxx  network and protocol (frames, handshake, overload, connections)
    9xxx  internal faults (bugs in braid; please report)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: int
    name: str
    description: str
    retryable: bool
    user_fixable: bool


_CATALOG: dict[int, ErrorInfo] = {}


def _entry(code: int, name: str, description: str, *, retryable: bool, user: bool) -> ErrorInfo:
    assert code not in _CATALOG, f"duplicate error code {code}"
    assert all(e.name != name for e in _CATALOG.values()), f"duplicate error name {name}"
    info = ErrorInfo(code, name, description, retryable, user)
    _CATALOG[code] = info
    return info


# 1xxx — invalid input
INVALID_SPACE = _entry(
    1001,
    "INVALID_SPACE",
    "The space name is not valid: it must match [a-z0-9][a-z0-9.-]{2,126} "
    "(3 to 127 characters: lowercase letters, digits, '.' and '-').",
    retryable=False,
    user=True,
)
INVALID_KEY = _entry(
    1002,
    "INVALID_KEY",
    "The document key is not valid (or not a braid.Key): it must be 1 to 511 bytes of valid "
    "UTF-8 with no "
    "control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F) and no lone "
    "surrogate; format characters such as U+200D and non-ASCII spaces are allowed.",
    retryable=False,
    user=True,
)
MALFORMED_JSON = _entry(
    1003,
    "MALFORMED_JSON",
    "A redo, undo or snapshot document is not JSON text, not valid JSON or Unicode, not a "
    "JSON object, or nests deeper than braid keeps (the detail says which).",
    retryable=False,
    user=True,
)
INVALID_UPDATE = _entry(
    1004,
    "INVALID_UPDATE",
    "An update is not well formed: it must be a braid.Update whose fields have their types, "
    "with 1 <= seq_begin <= seq_end < 2**63, asset_bytes not negative, who, request and kind "
    "valid Unicode, and every field within its size limit (the detail names the field).",
    retryable=False,
    user=True,
)
UPDATES_NOT_CONTIGUOUS = _entry(
    1005,
    "UPDATES_NOT_CONTIGUOUS",
    "The updates of one patch call must be contiguous: each seq_begin must be the "
    "previous update's seq_end + 1.",
    retryable=False,
    user=True,
)
EMPTY_PATCH = _entry(
    1006,
    "EMPTY_PATCH",
    "A patch call must carry at least one update.",
    retryable=False,
    user=True,
)
INVALID_ARGUMENT = _entry(
    1007,
    "INVALID_ARGUMENT",
    "An argument of a document operation is out of range or of the wrong kind: a negative "
    "seq or history count, more updates than one patch call may carry, a snapshot document "
    "longer than the limit, or an unknown compute method (the detail names it). Nothing was "
    "changed.",
    retryable=False,
    user=True,
)
RECORD_TOO_LARGE = _entry(
    1008,
    "RECORD_TOO_LARGE",
    "The request is larger than the largest one braid accepts (one write-ahead log record, "
    "or one network frame); nothing was sent or written. Split the patch into smaller calls.",
    retryable=False,
    user=True,
)
INVALID_SETTING = _entry(
    1009,
    "INVALID_SETTING",
    "A setting of a command, of connect or of serve, or of a cluster membership file, is "
    "missing, unreadable, malformed or contradicts another: an address without a port, a "
    "secret file that cannot be read, no cluster secret or one shorter than 16 bytes, a TLS "
    "certificate that does not load, options that go together given alone, a bound out of "
    "range, a host listed twice. The detail names the setting (and the file); nothing was "
    "created or changed.",
    retryable=False,
    user=True,
)
IMPORT_FILE_INVALID = _entry(
    1010,
    "IMPORT_FILE_INVALID",
    "A file given to `braid import` is not a braid export: no export header, a line that is "
    "not JSON or lacks a field, a document whose deltas are out of order, or a file cut short "
    "before its end line. The detail names the file and line; documents on earlier lines were "
    "imported, and re-running the import after fixing the file imports the rest.",
    retryable=False,
    user=True,
)

# 2xxx — document state
DOCUMENT_NOT_FOUND = _entry(
    2001,
    "DOCUMENT_NOT_FOUND",
    "No document exists under this key (it was never initialized, or was deleted).",
    retryable=False,
    user=True,
)
DOCUMENT_EXISTS = _entry(
    2002,
    "DOCUMENT_EXISTS",
    "initialize was called for a key that already holds a document.",
    retryable=False,
    user=True,
)
HEAD_SEQ_OFF = _entry(
    2003,
    "HEAD_SEQ_OFF",
    "The patch does not start at the document's head seq + 1 (a gap or an overlap; the "
    "detail gives the head). Nothing was written. The writer is behind or ahead of the "
    "store: read the document (or the patch from the writer's seq to the head) and write "
    "from head + 1.",
    retryable=False,
    user=True,
)
REWIND_PAST_COMPACTED = _entry(
    2004,
    "REWIND_PAST_COMPACTED",
    "The rewind target lies inside history that a snapshot compacted away; the undos "
    "needed to go back that far no longer exist.",
    retryable=False,
    user=True,
)
SNAPSHOT_SEQ_INVALID = _entry(
    2005,
    "SNAPSHOT_SEQ_INVALID",
    "The snapshot seq must be the seq_end of one of the document's deltas (at most the head seq).",
    retryable=False,
    user=True,
)
SNAPSHOT_MISMATCH = _entry(
    2006,
    "SNAPSHOT_MISMATCH",
    "The document given to snapshot differs from the document the store holds at that "
    "seq; the writer's state and the store disagree, so nothing was compacted.",
    retryable=False,
    user=True,
)
HEAD_PATCH_PAST_COMPACTED = _entry(
    2007,
    "HEAD_PATCH_PAST_COMPACTED",
    "compute(HEAD_PATCH) was asked from a seq inside compacted history, and the compacted "
    "delta cannot be re-applied exactly; load the whole document with get instead.",
    retryable=False,
    user=True,
)
SEQ_BEYOND_HEAD = _entry(
    2008,
    "SEQ_BEYOND_HEAD",
    "The seq given to compute or snapshot is newer than the document's head seq.",
    retryable=False,
    user=True,
)
DOCUMENT_TOO_LARGE = _entry(
    2009,
    "DOCUMENT_TOO_LARGE",
    "The write would take the document past the largest size braid keeps for one document "
    "(the bytes of its retained deltas), the bound that keeps every answer about it "
    "readable over the network. Nothing was written. Make room by compacting old deltas "
    "with snapshot, or spread the data over several documents.",
    retryable=False,
    user=True,
)

# 3xxx — storage
WAL_CORRUPT = _entry(
    3001,
    "WAL_CORRUPT",
    "The write-ahead log holds a damaged record followed by later intact records, so the "
    "damage is not a torn tail from a crash. Nothing was skipped or truncated; the files "
    "are preserved for inspection with `braid wal verify`.",
    retryable=False,
    user=False,
)
WAL_FAILED = _entry(
    3002,
    "WAL_FAILED",
    "A write or fsync of the write-ahead log failed. The log is closed for writing (a "
    "failed fsync is never retried); restart the store to recover from what is on disk.",
    retryable=False,
    user=False,
)
STORE_LOCKED = _entry(
    3003,
    "STORE_LOCKED",
    "Another process holds this store directory (the detail names it): a store has one "
    "writer, and readers keep a writer out while they read. Wait for it to exit, or go "
    "through it: when it is a node (`braid serve`), reach its documents over the network "
    "(`--server HOST:PORT`).",
    retryable=False,
    user=True,
)
STORE_FORMAT = _entry(
    3004,
    "STORE_FORMAT",
    "A file in the store directory is not in a format this version of braid reads (wrong "
    "magic number or version).",
    retryable=False,
    user=False,
)
STORE_CLOSED = _entry(
    3005,
    "STORE_CLOSED",
    "The store (or the network client) has been closed, or is closing; open it (or connect) "
    "again to continue.",
    retryable=False,
    user=True,
)
APPLIED_STATE_FAILED = _entry(
    3006,
    "APPLIED_STATE_FAILED",
    "Writing the applied state (the checkpoint of the log into the document tables) "
    "failed. Acknowledged writes are still safe in the write-ahead log.",
    retryable=False,
    user=False,
)
STORE_NOT_FOUND = _entry(
    3007,
    "STORE_NOT_FOUND",
    "The store directory does not exist, or is not a braid store (it holds other files, "
    "which braid neither uses nor turns into a store). Nothing was created.",
    retryable=False,
    user=True,
)

DISK_FULL = _entry(
    3008,
    "DISK_FULL",
    "The disk holding the store is full (or its quota is used up). The write was not "
    "applied and nothing stored was lost; reads keep working. Free space and retry: the "
    "node continues by itself once there is room.",
    retryable=True,
    user=False,
)
STORE_ACCESS = _entry(
    3009,
    "STORE_ACCESS",
    "braid cannot use a path of the store: permission denied, a read-only file system, or "
    "a file where a directory belongs (or the reverse). The detail names the path; fix it "
    "and open the store again. Nothing stored was changed.",
    retryable=False,
    user=True,
)
APPLIED_STATE_CORRUPT = _entry(
    3010,
    "APPLIED_STATE_CORRUPT",
    "Stored bytes of the applied state (applied.sqlite3) failed their checksum or could not "
    "be read: the file is damaged. Nothing damaged was returned. `braid verify` reports "
    "what is affected; a single node cannot repair it (replication does).",
    retryable=False,
    user=False,
)
STORE_READ_ONLY = _entry(
    3011,
    "STORE_READ_ONLY",
    "The store is open read-only (its files or file system are not writable, or it was "
    "opened for reading): reads work, writes are refused before anything is logged.",
    retryable=False,
    user=True,
)
WRITE_NOT_DURABLE = _entry(
    3012,
    "WRITE_NOT_DURABLE",
    "The leader of the document's partition could not make writes to it durable: its own "
    "log write failed, or no majority of replicas stored them within its time bound. It "
    "failed the document's pending writes (each may or may not have been applied: a retried "
    "patch that was applied fails with HEAD_SEQ_OFF) and refuses new writes to the document, "
    "without running them, until the writes already proposed for it have settled. Retry "
    "after a short backoff.",
    retryable=True,
    user=False,
)

# 4xxx — network and protocol
PROTOCOL_ERROR = _entry(
    4001,
    "PROTOCOL_ERROR",
    "The peer sent bytes that break the braid protocol (a malformed frame or message, or a "
    "frame not allowed in the connection's state). That connection is closed; others are "
    "not affected.",
    retryable=False,
    user=False,
)
FRAME_TOO_LARGE = _entry(
    4002,
    "FRAME_TOO_LARGE",
    "A frame is larger than the receiver's frame size limit; the connection is closed.",
    retryable=False,
    user=True,
)
VERSION_UNSUPPORTED = _entry(
    4003,
    "VERSION_UNSUPPORTED",
    "The peers share no protocol version; upgrade the older one.",
    retryable=False,
    user=True,
)
CLUSTER_MISMATCH = _entry(
    4004,
    "CLUSTER_MISMATCH",
    "The peer belongs to a different cluster (its cluster id differs from ours).",
    retryable=False,
    user=True,
)
AUTH_FAILED = _entry(
    4005,
    "AUTH_FAILED",
    "The cluster secrets differ: the peer's handshake proof does not match this side's "
    "secret (the secret never crosses the wire). Give both sides the same secret "
    "(--secret-file or BRAID_SECRET).",
    retryable=False,
    user=True,
)
UNSUPPORTED_MESSAGE = _entry(
    4006,
    "UNSUPPORTED_MESSAGE",
    "The receiver does not know this message type (the sender is newer); the connection "
    "stays open.",
    retryable=False,
    user=False,
)
OVERLOADED = _entry(
    4007,
    "OVERLOADED",
    "The node has reached its bound of in-flight requests (per connection or per node) and "
    "refused this one instead of queueing it; retry after a short backoff. Past its bound "
    "of bytes buffered for incomplete frames, it closes the connection holding the most.",
    retryable=True,
    user=False,
)
SHUTTING_DOWN = _entry(
    4008,
    "SHUTTING_DOWN",
    "The node is shutting down: it refused this request without running it, or the request "
    "did not finish within the shutdown grace period (then it may have been applied, and a "
    "retried patch that was applied fails with HEAD_SEQ_OFF). Retry, on another node when "
    "there is one.",
    retryable=True,
    user=False,
)
CONNECTION_LOST = _entry(
    4009,
    "CONNECTION_LOST",
    "The connection closed before the answer arrived; the request may or may not have been "
    "applied. Retrying a patch is safe: a duplicate fails with HEAD_SEQ_OFF.",
    retryable=True,
    user=False,
)
TIMEOUT = _entry(
    4010,
    "TIMEOUT",
    "The call did not complete within its timeout: no connection in time (nothing was "
    "sent), or no answer in time (the request may or may not have been applied); the detail "
    "says which.",
    retryable=True,
    user=False,
)
FLOW_CONTROL_ERROR = _entry(
    4011,
    "FLOW_CONTROL_ERROR",
    "The peer sent more stream data than the receiver's window allowed; the connection is closed.",
    retryable=False,
    user=False,
)
UNREACHABLE = _entry(
    4012,
    "UNREACHABLE",
    "No node could be connected to: refused, unreachable, timed out, or closed the "
    "connection before completing the handshake. Nothing was sent.",
    retryable=True,
    user=True,
)
FRAME_TIMEOUT = _entry(
    4013,
    "FRAME_TIMEOUT",
    "A frame began to arrive but did not complete within the node's time bound for one "
    "frame (a peer that stalled or sends far too slowly): the node closed the connection. "
    "Requests whose frames had arrived may have been applied.",
    retryable=True,
    user=False,
)
NOT_A_BRAID_NODE = _entry(
    4014,
    "NOT_A_BRAID_NODE",
    "The address accepted the connection but answered the handshake with bytes that are not "
    "braid's protocol (another service, or a node's metrics port, which speaks HTTP): check "
    "the address and port (a node's --listen address). Nothing was sent but the handshake.",
    retryable=False,
    user=True,
)
LISTEN_FAILED = _entry(
    4015,
    "LISTEN_FAILED",
    "The node cannot listen on an address it was given (--listen or --metrics): the port is "
    "in use by another process, the host is not an address of this machine, or the port is "
    "privileged. The detail names the address and the reason; nothing was created.",
    retryable=False,
    user=True,
)
NOT_LEADER = _entry(
    4016,
    "NOT_LEADER",
    "This node does not lead the partition that holds the document: it never did, it lost "
    "leadership, or as a new leader it has not yet applied its predecessors' writes. A "
    "request it refused was not run; for a write that was pending when leadership moved, "
    "the detail says whether the new leader may still apply it (a retried patch that was "
    "applied fails with HEAD_SEQ_OFF). Retry: the client finds the current leader.",
    retryable=True,
    user=False,
)

# 9xxx — internal
INTERNAL = _entry(
    9001,
    "INTERNAL",
    "An unexpected internal error; this is a bug in braid. Please report it with the "
    "message and the steps that led to it.",
    retryable=False,
    user=False,
)


class BraidError(Exception):
    """Every failure braid reports: carries the catalog entry and a specific detail."""

    def __init__(self, info: ErrorInfo, detail: str = "") -> None:
        self.info = info
        self.detail = detail
        super().__init__(f"[{info.code} {info.name}] {detail or info.description}")

    @property
    def code(self) -> int:
        return self.info.code

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def retryable(self) -> bool:
        return self.info.retryable

    @property
    def user_fixable(self) -> bool:
        return self.info.user_fixable


def catalog() -> list[ErrorInfo]:
    """Every entry, ordered by code."""
    return [_CATALOG[code] for code in sorted(_CATALOG)]


def lookup(code: int) -> ErrorInfo | None:
    return _CATALOG.get(code)


def render_markdown() -> str:
    """The error table published as docs/errors.md."""
    lines = [
        "# braid error codes",
        "",
        "Generated from `src/braid/errors.py` by `braid errors --markdown`; do not edit by hand.",
        "`braid errors CODE` explains one code.",
        "",
        "| code | name | retry? | user can fix? | description |",
        "|---:|---|---|---|---|",
    ]
    for info in catalog():
        retry = "yes" if info.retryable else "no"
        user = "yes" if info.user_fixable else "no"
        text = info.description.replace("|", "\\|")
        lines.append(f"| {info.code} | `{info.name}` | {retry} | {user} | {text} |")
    return "\n".join(lines) + "\n"
