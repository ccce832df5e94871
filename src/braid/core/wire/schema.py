"""Every message braid sends over the wire, declared once; the codecs are derived from it.

Each message is a msgspec `Struct` encoded as a msgpack array whose first element is the
message's numeric tag, then its fields in declaration order. msgspec generates the encoder
and a validating decoder (types, required fields) from these declarations.

Versioning rule (checked by tests/unit/test_wire_schema.py):

- A field is only ever *appended*, and always with a default. An older peer ignores trailing
  elements it does not know; a newer peer fills fields an older one did not send with their
  defaults. So a peer one version older keeps working.
- A field is never removed, renamed to a different meaning, reordered or retyped.
- A new message gets a new tag (never reuse one). A peer that receives a tag it does not know
  answers that stream with UNSUPPORTED_MESSAGE and keeps the connection.
- The handshake's protocol version changes only for a change to framing or handshake.

Tags: 1-19 handshake, 20-59 requests, 60-99 responses, 100+ connection control (and, later,
pushed stream messages).
"""

from __future__ import annotations

from typing import Any

import msgspec

from braid import limits
from braid.model import ComputeMethod, DocumentInfo, Key, Update

PROTOCOL_VERSION = 1


class _Message(msgspec.Struct, array_like=True, frozen=True, omit_defaults=False):
    pass


# -- handshake (stream 0) -------------------------------------------------------------------


class Hello(_Message, tag=1, frozen=True):
    """Client → server: who I am, which protocol versions I speak, a fresh nonce."""

    version_min: int
    version_max: int
    cluster: str
    name: str
    nonce: bytes
    push_window: int = 256 * 1024  # bytes the client accepts per push stream before a WINDOW


class Welcome(_Message, tag=2, frozen=True):
    """Server → client: the chosen version, the server's nonce, and its proof of the secret:
    HMAC-SHA256(secret, b"braid-server" | client nonce | server nonce | cluster)."""

    version: int
    cluster: str
    name: str
    nonce: bytes
    proof: bytes


class Auth(_Message, tag=3, frozen=True):
    """Client → server: HMAC-SHA256(secret, b"braid-client" | server nonce | client nonce |
    cluster)."""

    proof: bytes


class Ready(_Message, tag=4, frozen=True):
    """Server → client: the handshake is complete; the limits the server enforces."""

    streams_max: int
    frame_bytes_max: int


class Refuse(_Message, tag=5, frozen=True):
    """Either side: the handshake failed (error code and message); the connection closes."""

    code: int
    message: str


HANDSHAKE_TYPES = (Hello, Welcome, Auth, Ready, Refuse)
HandshakeMessage = Hello | Welcome | Auth | Ready | Refuse


# -- requests (client → server, each opens a stream) ----------------------------------------


class Initialize(_Message, tag=20, frozen=True):
    """Create a document (initialize); answered Done or Failure."""

    key: Key
    update: Update


class Patch(_Message, tag=21, frozen=True):
    """Append deltas (patch); answered Done once durable, or Failure."""

    key: Key
    updates: list[Update]


class Get(_Message, tag=22, frozen=True):
    """Read a document (get); answered Change."""

    key: Key


class Compute(_Message, tag=23, frozen=True):
    """HEAD_PATCH or REWIND from seq (compute); answered Change."""

    key: Key
    method: ComputeMethod
    seq: int


class Snapshot(_Message, tag=24, frozen=True):
    """Compact a document (snapshot); answered Count (deltas removed)."""

    key: Key
    seq: int
    document: str
    history: int


class Delete(_Message, tag=25, frozen=True):
    """Remove a document (delete); answered Done."""

    key: Key


class Inventory(_Message, tag=26, frozen=True):
    """List every document (inventory); answered InventoryList."""

    pass


class Release(_Message, tag=27, frozen=True):
    """close(key): release the document's memory on the server."""

    key: Key


class Locate(_Message, tag=28, frozen=True):
    """The seeds' getDataTarget: where does this key live?"""

    key: Key


class Status(_Message, tag=29, frozen=True):
    """The node's health and progress (`braid status`); answered NodeStatus. A node older
    than this message answers UNSUPPORTED_MESSAGE."""

    pass


class History(_Message, tag=30, frozen=True):
    """A document's retained deltas (history); answered HistoryList. A node older than this
    message answers UNSUPPORTED_MESSAGE."""

    key: Key


Request = (
    Initialize
    | Patch
    | Get
    | Compute
    | Snapshot
    | Delete
    | Inventory
    | Release
    | Locate
    | Status
    | History
)
REQUEST_TYPES = (
    Initialize,
    Patch,
    Get,
    Compute,
    Snapshot,
    Delete,
    Inventory,
    Release,
    Locate,
    Status,
    History,
)


# -- responses (server → client, each ends its stream) ---------------------------------------


class Done(_Message, tag=60, frozen=True):
    """Success with nothing to return (initialize, patch, delete, release)."""


DONE = Done()  # the one instance the node answers with (no allocation per patch)


class Change(_Message, tag=61, frozen=True):
    """A document or a merge patch, the seq it stands at, and the deltas read."""

    document: str
    seq: int
    reads: int


class Count(_Message, tag=62, frozen=True):
    """A number: the deltas a snapshot removed."""

    count: int


# A DocumentInfo (model.py) encoded as an array: its fields are declared once, there. The
# docstring is the protocol page's; the frozen field list in test_wire_schema.py guards the
# wire layout against a change to DocumentInfo.
class InventoryItem(DocumentInfo, array_like=True, frozen=True):
    """One document of an InventoryList."""


class InventoryList(_Message, tag=63, frozen=True):
    """Every document with its head seq, delta count and size."""

    documents: list[InventoryItem]


class Located(_Message, tag=64, frozen=True):
    """Where a key lives: partition, replicas, leader, whether archived."""

    partition: int
    replicas: list[str]
    leader: str
    archived: bool = False


class Failure(_Message, tag=65, frozen=True):
    """The request failed with a catalogued error (braid.errors)."""

    code: int
    detail: str


class NodeStatus(_Message, tag=66, frozen=True):
    """One node's status: its braid version, cluster id and name; seconds since it began
    serving; documents stored; the highest log sequence number that is durable and the one
    the applied state is checkpointed through, with the operations logged but not yet
    checkpointed between them; connections open and requests in flight; and what recovery
    did when the node opened its store (log records replayed, what it repaired, such as a
    torn tail truncated, and seconds the open took)."""

    version: str
    cluster: str
    name: str
    uptime_seconds: float
    documents: int
    durable_lsn: int
    applied_lsn: int
    pending_operations: int
    connections: int
    requests_in_flight: int
    replayed_records: int
    recovery_repairs: str
    recovery_seconds: float


class HistoryList(_Message, tag=67, frozen=True):
    """A document's retained deltas, oldest first, as stored, and how far its history was
    compacted: the delta ending at `compacted_through` folds every older one (0: never
    compacted); `compacted_exact` is False when that fold is not one exact merge patch.
    A document's deltas are bounded by its size, so the list fits a response frame (see
    the assertion below)."""

    deltas: list[Update]
    compacted_through: int
    compacted_exact: bool


# The largest HistoryList: a document's update_bytes count every character of its deltas'
# texts (at most 4 UTF-8 bytes each) plus 64 per delta, so it holds at most
# document_bytes_max / 64 deltas, each with its kind and numbers besides the texts.
_HISTORY_DELTAS_MAX = limits.document_bytes_max // 64
_DELTA_BESIDES_TEXTS_BYTES_MAX = (
    limits.kind_bytes_max * limits.utf8_bytes_per_character_max + limits.update_envelope_bytes_max
)
assert (
    limits.document_bytes_max * limits.utf8_bytes_per_character_max
    + _HISTORY_DELTAS_MAX * _DELTA_BESIDES_TEXTS_BYTES_MAX
    + limits.response_envelope_bytes_max
    <= limits.frame_bytes_max
)


Response = Done | Change | Count | InventoryList | Located | Failure | NodeStatus | HistoryList
RESPONSE_TYPES = (Done, Change, Count, InventoryList, Located, Failure, NodeStatus, HistoryList)


# -- connection control (stream 0) -----------------------------------------------------------


class GoAway(_Message, tag=100, frozen=True):
    """The sender will accept no new streams; streams up to last_stream still complete."""

    code: int
    message: str
    last_stream: int


class Ping(_Message, tag=101, frozen=True):
    token: int


class Pong(_Message, tag=102, frozen=True):
    token: int


ControlMessage = GoAway | Ping | Pong
CONTROL_TYPES = (GoAway, Ping, Pong)

_encoder = msgspec.msgpack.Encoder()
encode = _encoder.encode
handshake_decoder = msgspec.msgpack.Decoder(HandshakeMessage)
request_decoder = msgspec.msgpack.Decoder(Request)
response_decoder = msgspec.msgpack.Decoder(Response)
control_decoder = msgspec.msgpack.Decoder(ControlMessage)
_peek_decoder = msgspec.msgpack.Decoder(list[Any])


def message_tag(payload: bytes) -> int | None:
    """The tag of an encoded message, or None when the payload is not a tagged array."""
    try:
        value = _peek_decoder.decode(payload)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # msgspec reports a str that is not UTF-8 as UnicodeDecodeError, and arrays nested
        # past its depth limit as RecursionError.
        return None
    if not value or type(value[0]) is not int:
        return None
    return int(value[0])


def all_message_types() -> list[type[msgspec.Struct]]:
    return [*HANDSHAKE_TYPES, *REQUEST_TYPES, *RESPONSE_TYPES, *CONTROL_TYPES]
