"""The message schema keeps its versioning rule, and the published protocol page matches it.

The rule (schema's docstring): fields are only appended, always with a default; never
removed, renamed, reordered or retyped; tags are never reused. So a peer one version older
keeps working: it ignores trailing fields it does not know, and a newer peer fills the
fields an older one did not send with their defaults. These tests freeze version 1 of every
message and nested structure, check the current declarations against it, and simulate a
peer one version newer (a copy of each message with one more defaulted field, same tag) in
both directions, down to a whole handshake through `Connection`.
"""

from __future__ import annotations

import hashlib
import hmac
import typing
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest

from braid.cli import protocol_page
from braid.cli.main import main
from braid.core.wire import schema
from braid.core.wire.connection import (
    NONCE_BYTES,
    Connection,
    ConnectionConfig,
    HandshakeComplete,
    ResponseReceived,
    Role,
    State,
)
from braid.core.wire.frames import FLAG_END, FrameDecoder, FrameType, encode_frame
from braid.model import ComputeMethod, Key, Update

DOCS_PROTOCOL = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# Version 1 as released: tag (None for nested structures) and fields in wire order, with
# their wire types. Never edit an entry; a later version may only append fields (with
# defaults) to the classes, and new messages need no entry here.
VERSION_1: dict[str, tuple[int | None, tuple[str, ...]]] = {
    "Hello": (
        1,
        (
            "version_min: int",
            "version_max: int",
            "cluster: str",
            "name: str",
            "nonce: bytes",
            "push_window: int",
        ),
    ),
    "Welcome": (
        2,
        ("version: int", "cluster: str", "name: str", "nonce: bytes", "proof: bytes"),
    ),
    "Auth": (3, ("proof: bytes",)),
    "Ready": (4, ("streams_max: int", "frame_bytes_max: int")),
    "Refuse": (5, ("code: int", "message: str")),
    "Initialize": (20, ("key: Key", "update: Update")),
    "Patch": (21, ("key: Key", "updates: list[Update]")),
    "Get": (22, ("key: Key",)),
    "Compute": (23, ("key: Key", "method: ComputeMethod", "seq: int")),
    "Snapshot": (24, ("key: Key", "seq: int", "document: str", "history: int")),
    "Delete": (25, ("key: Key",)),
    "Inventory": (26, ()),
    "Release": (27, ("key: Key",)),
    "Locate": (28, ("key: Key",)),
    "Done": (60, ()),
    "Change": (61, ("document: str", "seq: int", "reads: int")),
    "Count": (62, ("count: int",)),
    "InventoryList": (63, ("documents: list[InventoryItem]",)),
    "Located": (
        64,
        ("partition: int", "replicas: list[str]", "leader: str", "archived: bool"),
    ),
    "Failure": (65, ("code: int", "detail: str")),
    "GoAway": (100, ("code: int", "message: str", "last_stream: int")),
    "Ping": (101, ("token: int",)),
    "Pong": (102, ("token: int",)),
    "Key": (None, ("space: str", "key: str")),
    "Update": (
        None,
        (
            "seq_begin: int",
            "seq_end: int",
            "who: str",
            "request: str",
            "redo: str",
            "undo: str",
            "active: bool",
            "asset_bytes: int",
            "kind: str",
        ),
    ),
    "InventoryItem": (None, ("key: Key", "seq: int", "deltas: int", "bytes: int")),
}

KEY = Key("space", "doc")
SAMPLES: list[msgspec.Struct] = [
    schema.Hello(1, 2, "cluster", "client", b"n" * 16, 1000),
    schema.Welcome(1, "cluster", "server", b"s" * 16, b"p" * 32),
    schema.Auth(b"p" * 32),
    schema.Ready(8, 1 << 20),
    schema.Refuse(4005, "no"),
    schema.Initialize(KEY, Update(1, 1, redo='{"a":1}')),
    schema.Patch(
        KEY, [Update(1, 1), Update(2, 3, "w", "r", '{"b":2}', '{"b":null}', True, 5, "k")]
    ),
    schema.Get(KEY),
    schema.Compute(KEY, ComputeMethod.REWIND, 3),
    schema.Snapshot(KEY, 2, "{}", 1),
    schema.Delete(KEY),
    schema.Inventory(),
    schema.Release(KEY),
    schema.Locate(KEY),
    schema.Status(),
    schema.History(KEY),
    schema.Done(),
    schema.Change("{}", 1, 1),
    schema.Count(3),
    schema.InventoryList([schema.InventoryItem(KEY, 1, 2, 3)]),
    schema.Located(1, ["a", "b"], "a", True),
    schema.Failure(2001, "missing"),
    schema.NodeStatus("0.1.0", "cluster", "node", 1.5, 3, 9, 7, 2, 1, 0, 4, "", 0.25),
    schema.HistoryList([Update(1, 2, "w", "r", '{"a":1}', "{}", True, 3, "compacted")], 2, True),
    schema.GoAway(4008, "bye", 7),
    schema.Ping(1),
    schema.Pong(2),
]

GROUPS: dict[str, tuple[tuple[type[msgspec.Struct], ...], msgspec.msgpack.Decoder[Any], range]] = {
    "handshake": (schema.HANDSHAKE_TYPES, schema.handshake_decoder, range(1, 20)),
    "request": (schema.REQUEST_TYPES, schema.request_decoder, range(20, 60)),
    "response": (schema.RESPONSE_TYPES, schema.response_decoder, range(60, 100)),
    "control": (schema.CONTROL_TYPES, schema.control_decoder, range(100, 2**16)),
}

ADDED_FIELD = "added_in_version_2"
ADDED_DEFAULT = "filled in by default"


def tag_of(cls: type[msgspec.Struct]) -> int:
    tag = cls.__struct_config__.tag
    assert isinstance(tag, int)
    return tag


def decoder_for(cls: type[msgspec.Struct]) -> msgspec.msgpack.Decoder[Any]:
    [decoder] = [decoder for types, decoder, _ in GROUPS.values() if cls in types]
    return decoder


def wire_fields(cls: type[msgspec.Struct]) -> list[mi.Field]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return list(info.fields)


def wire_types() -> dict[str, type[msgspec.Struct]]:
    """Every message and every structure nested in one, by name."""
    messages = schema.all_message_types()
    nested = [
        cls for cls in protocol_page.nested_types(messages) if issubclass(cls, msgspec.Struct)
    ]
    return {cls.__name__: cls for cls in [*messages, *nested]}


def version_1_violations(
    types: dict[str, type[msgspec.Struct]], frozen: dict[str, tuple[int | None, tuple[str, ...]]]
) -> list[str]:
    """How the declarations break the versioning rule against the frozen version 1."""
    problems = []
    for name, (tag, first_fields) in frozen.items():
        cls = types.get(name)
        if cls is None:
            problems.append(f"{name} was removed")
            continue
        if cls.__struct_config__.tag != tag:
            problems.append(f"{name}'s tag changed from {tag} to {cls.__struct_config__.tag}")
        fields = [
            f"{field.name}: {protocol_page.type_name(field.type)}" for field in wire_fields(cls)
        ]
        if tuple(fields[: len(first_fields)]) != first_fields:
            problems.append(
                f"{name}'s version 1 fields were removed, reordered, renamed or retyped"
            )
        for field in wire_fields(cls)[len(first_fields) :]:
            if field.required:
                problems.append(f"{name}.{field.name} was appended without a default")
    return problems


def newer(cls: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """The same message one version later: same tag and fields, plus one defaulted field."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for field in wire_fields(cls):
        if field.required:
            fields.append((field.name, hints[field.name]))
        else:
            fields.append((field.name, hints[field.name], field.default))
    fields.append((ADDED_FIELD, str, ADDED_DEFAULT))
    return msgspec.defstruct(
        f"{cls.__name__}V2",
        fields,
        tag=cls.__struct_config__.tag,
        array_like=True,
        frozen=True,
    )


def values_of(message: msgspec.Struct) -> tuple[Any, ...]:
    return tuple(getattr(message, name) for name in message.__struct_fields__)


# -- the schema's own consistency ------------------------------------------------------------------


def test_samples_cover_every_message() -> None:
    """The samples used below hold exactly one instance of every message type."""
    assert [type(sample) for sample in SAMPLES] == schema.all_message_types()


def test_tags_are_unique_and_every_tagged_struct_is_listed() -> None:
    """No two messages share a tag, and every tagged Struct in the schema module is one of
    all_message_types() (so none escapes these checks or the decoders)."""
    tags = [tag_of(cls) for cls in schema.all_message_types()]
    assert len(tags) == len(set(tags))
    declared = {
        value
        for value in vars(schema).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__struct_config__.tag is not None
    }
    assert declared == set(schema.all_message_types())


def test_tags_lie_in_their_group_range() -> None:
    """Tags follow the documented ranges: 1-19 handshake, 20-59 requests, 60-99 responses,
    100+ connection control."""
    for types, _, tags in GROUPS.values():
        for cls in types:
            assert tag_of(cls) in tags, cls
    assert "1-19 handshake, 20-59 requests, 60-99 responses, 100+ connection control" in (
        " ".join((schema.__doc__ or "").split())
    )


def test_unions_and_type_lists_agree() -> None:
    """Each group's union (what its decoder accepts) holds exactly the group's type list."""
    assert typing.get_args(schema.HandshakeMessage) == schema.HANDSHAKE_TYPES
    assert typing.get_args(schema.Request) == schema.REQUEST_TYPES
    assert typing.get_args(schema.Response) == schema.RESPONSE_TYPES
    assert typing.get_args(schema.ControlMessage) == schema.CONTROL_TYPES


@pytest.mark.parametrize("name", sorted(wire_types()))
def test_every_wire_struct_tolerates_trailing_fields(name: str) -> None:
    """Every message and nested structure is an array that does not forbid unknown trailing
    elements: the configuration that lets an older peer ignore appended fields."""
    info = mi.type_info(wire_types()[name])
    assert isinstance(info, mi.StructType)
    assert info.array_like
    assert not info.forbid_unknown_fields


def test_round_trip_of_every_message() -> None:
    """Every sample encodes and decodes, through its group's decoder, to itself."""
    for sample in SAMPLES:
        assert decoder_for(type(sample)).decode(schema.encode(sample)) == sample


# -- the versioning rule ---------------------------------------------------------------------------


def test_version_1_is_kept() -> None:
    """Every version 1 message and nested structure still exists with its tag and its first
    fields (names, order, types) unchanged, and every field appended since has a default."""
    assert version_1_violations(wire_types(), VERSION_1) == []


def test_the_version_check_catches_each_kind_of_break() -> None:
    """The check above does fail: for a removed message, a changed tag, a removed, reordered,
    renamed or retyped field, and a field appended without a default."""
    types = wire_types()

    def variant(fields: list[Any], tag: int | None = 22) -> dict[str, type[msgspec.Struct]]:
        changed = msgspec.defstruct("Get", fields, tag=tag, array_like=True, frozen=True)
        return {**types, "Get": changed}

    frozen = {"Get": VERSION_1["Get"]}
    assert version_1_violations(variant([("key", Key)]), frozen) == []
    assert version_1_violations(variant([("key", Key), ("extra", int, 0)]), frozen) == []
    broken = [
        {name: cls for name, cls in types.items() if name != "Get"},
        variant([("key", Key)], tag=29),
        variant([]),
        variant([("name", Key)]),
        variant([("key", str)]),
        variant([("seq", int), ("key", Key)]),
        variant([("key", Key), ("extra", int)]),
    ]
    for case in broken:
        assert version_1_violations(case, frozen), case


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_current_peer_reads_a_newer_peers_message(sample: msgspec.Struct) -> None:
    """A message from a peer one version newer (one more field, same tag) decodes with the
    current decoder to the same message: the extra trailing field is ignored."""
    newer_message = newer(type(sample))(*values_of(sample), "sent by version 2")
    data = msgspec.msgpack.encode(newer_message)
    assert data != schema.encode(sample)
    assert decoder_for(type(sample)).decode(data) == sample


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: type(sample).__name__)
def test_newer_peer_reads_a_current_message(sample: msgspec.Struct) -> None:
    """A peer one version newer decodes a current message, filling its new field with the
    default."""
    newer_type = newer(type(sample))
    decoded = msgspec.msgpack.Decoder(newer_type).decode(schema.encode(sample))
    assert values_of(decoded)[:-1] == values_of(sample)
    assert getattr(decoded, ADDED_FIELD) == ADDED_DEFAULT


@pytest.mark.parametrize(
    "sample",
    [sample for sample in SAMPLES if any(not f.required for f in wire_fields(type(sample)))],
    ids=lambda sample: type(sample).__name__,
)
def test_defaulted_fields_may_be_absent(sample: msgspec.Struct) -> None:
    """An array that stops before the defaulted fields (as from the version before they were
    appended) decodes with those fields at their defaults."""
    fields = wire_fields(type(sample))
    required = [field.name for field in fields if field.required]
    short = [tag_of(type(sample)), *(getattr(sample, name) for name in required)]
    decoded = decoder_for(type(sample)).decode(msgspec.msgpack.encode(short))
    for field in fields:
        expected = getattr(sample, field.name) if field.required else field.default
        assert getattr(decoded, field.name) == expected


def test_nested_structures_follow_the_rule_too() -> None:
    """A Patch whose Updates carry one more field (a newer Update) decodes to the current
    Patch, and a newer Patch/Update pair reads a current Patch with the default filled in."""
    update_v2 = newer(Update)
    patch_v2 = msgspec.defstruct(
        "PatchV2",
        [("key", Key), ("updates", list[update_v2])],  # type: ignore[valid-type]
        tag=21,
        array_like=True,
        frozen=True,
    )
    current = SAMPLES[6]
    assert isinstance(current, schema.Patch)
    newer_patch = patch_v2(KEY, [update_v2(*values_of(update), "v2") for update in current.updates])
    assert schema.request_decoder.decode(msgspec.msgpack.encode(newer_patch)) == current
    decoded: Any = msgspec.msgpack.Decoder(patch_v2).decode(schema.encode(current))
    assert [getattr(update, ADDED_FIELD) for update in decoded.updates] == [ADDED_DEFAULT] * 2


# -- a newer peer through the connection -----------------------------------------------------------


SECRET = b"secret"
CLUSTER = "cluster"


def _config(name: str) -> ConnectionConfig:
    return ConnectionConfig(cluster=CLUSTER, name=name, secret=SECRET)


def _proof(label: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(SECRET, label + first + second + CLUSTER.encode(), hashlib.sha256).digest()


def _frames(data: bytes) -> list[Any]:
    decoder = FrameDecoder(1 << 20)
    return [schema.handshake_decoder.decode(frame.payload) for frame in decoder.feed(data)]


def test_a_newer_client_handshakes_with_a_current_server() -> None:
    """A client one version newer, whose Hello and Auth carry an extra field, completes the
    handshake with a current server."""
    server = Connection(Role.SERVER, _config("server"), b"s" * NONCE_BYTES)
    client_nonce = b"c" * NONCE_BYTES
    hello = newer(schema.Hello)(1, 1, CLUSTER, "client-v2", client_nonce, 4096, "v2 data")
    data = encode_frame(FrameType.HANDSHAKE, 0, msgspec.msgpack.encode(hello))
    assert server.receive_data(data) == []
    [welcome] = _frames(server.data_to_send())
    assert isinstance(welcome, schema.Welcome)
    auth = newer(schema.Auth)(_proof(b"braid-client", welcome.nonce, client_nonce), "v2 data")
    data = encode_frame(FrameType.HANDSHAKE, 0, msgspec.msgpack.encode(auth))
    assert server.receive_data(data) == [HandshakeComplete("client-v2", 1, 0)]
    assert server.state is State.READY
    assert server.push_window(server.open_push()) == 4096


def test_a_current_client_works_with_a_newer_server() -> None:
    """A current client accepts a newer server's Welcome and Ready (extra fields) and reads
    its Located response with an extra field as the current Located."""
    client_nonce = b"c" * NONCE_BYTES
    server_nonce = b"s" * NONCE_BYTES
    client = Connection(Role.CLIENT, _config("client"), client_nonce)
    client.initiate()
    client.data_to_send()
    proof = _proof(b"braid-server", client_nonce, server_nonce)
    welcome = newer(schema.Welcome)(1, CLUSTER, "server-v2", server_nonce, proof, "v2")
    ready = newer(schema.Ready)(4, 1 << 20, "v2")
    data = b"".join(
        encode_frame(FrameType.HANDSHAKE, 0, msgspec.msgpack.encode(message))
        for message in (welcome, ready)
    )
    assert client.receive_data(data) == [HandshakeComplete("server-v2", 1, 4)]
    stream = client.send_request(schema.Locate(KEY))
    located = newer(schema.Located)(3, ["n1"], "n1", False, "v2")
    data = encode_frame(FrameType.RESPONSE, stream, msgspec.msgpack.encode(located), FLAG_END)
    assert client.receive_data(data) == [
        ResponseReceived(stream, schema.Located(3, ["n1"], "n1", False))
    ]


# -- the published page ----------------------------------------------------------------------------


def test_docs_protocol_md_is_current() -> None:
    """docs/protocol.md is exactly what `braid protocol --markdown` renders from the code;
    regenerate it with that command when this fails."""
    assert DOCS_PROTOCOL.read_text(encoding="utf-8") == protocol_page.render_markdown()


def test_page_lists_every_message_field_and_frame_type() -> None:
    """The page has a row for every message (tag and name) with each of its fields, every
    frame type with the note from its source, and the handshake and versioning sections."""
    page = protocol_page.render_markdown()
    for cls in schema.all_message_types():
        row = next(line for line in page.splitlines() if f"| `{cls.__name__}` |" in line)
        assert row.startswith(f"| {tag_of(cls)} |")
        for name in cls.__struct_fields__:
            assert f"`{name}: " in row
    notes = protocol_page.frame_type_notes()
    assert set(notes) == set(FrameType.__members__)
    for kind in FrameType:
        assert f"| {int(kind)} | `{kind.name}` | {notes[kind.name]} |" in page
    for heading in ("## Frames", "## Handshake and streams", "## Messages and versioning"):
        assert heading in page
    assert "proof_c = HMAC-SHA256" in page
    assert "A field is only ever *appended*" in page


def test_cli_prints_the_page_and_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """`braid protocol --markdown` prints the page; `braid protocol` one line per message."""
    assert main(["protocol", "--markdown"]) == 0
    assert capsys.readouterr().out == protocol_page.render_markdown()
    assert main(["protocol"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(schema.all_message_types())
    assert lines[0].split()[:3] == ["1", "handshake", "Hello(version_min:"]
