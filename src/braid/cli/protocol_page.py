"""The protocol reference page (docs/protocol.md), rendered from the code that implements it.

Nothing here restates the protocol by hand: the frame layout is read from the layout table in
`frames`' docstring (which tests/unit/test_wire_frames.py checks byte by byte against
`encode_frame`), the frame types from `FrameType` and their source comments, the handshake and
stream rules from `connection`'s docstring, the versioning rule from `schema`'s docstring, and
every message — tag, fields, types, defaults — from the msgspec declarations by introspection
(`msgspec.inspect`). `braid protocol --markdown` prints the page; a test fails when
docs/protocol.md differs from it.

Pure: no I/O beyond reading `braid.core.wire`'s own source for comments
(`inspect.getsource`). It lives beside the command that prints it, not in `core/`: rendering
documentation is no part of the protocol.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec
import msgspec.inspect as mi

from braid import errors
from braid.core.wire import connection, frames, schema

GENERATED_BY = "braid protocol --markdown > docs/protocol.md"


@dataclass(frozen=True)
class LayoutRow:
    """One row of the frame layout table in `frames`' docstring."""

    offset: int
    size: str  # a byte count, or "n" for the payload
    field: str


_LAYOUT_HEADING = "offset  size  field"
_LAYOUT_ROW = re.compile(r"^    (\d+)\s+(\d+|n)\s+(\S.*)$")
_LAYOUT_CONTINUATION = re.compile(r"^ {6,}(\S.*)$")


def frame_layout() -> list[LayoutRow]:
    """The frame layout table exactly as `frames`' docstring documents it."""
    lines = _docstring(frames).splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == _LAYOUT_HEADING)
    rows: list[LayoutRow] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        row = _LAYOUT_ROW.match(line)
        if row is not None:
            rows.append(LayoutRow(int(row[1]), row[2], row[3]))
            continue
        continuation = _LAYOUT_CONTINUATION.match(line)
        assert continuation is not None and rows, f"unreadable layout line {line!r}"
        last = rows[-1]
        rows[-1] = LayoutRow(last.offset, last.size, f"{last.field} {continuation[1]}")
    assert rows, "frames' docstring lost its layout table"
    return rows


def frame_type_notes() -> dict[str, str]:
    """FrameType member name → the comment that follows it in frames.py."""
    notes: dict[str, str] = {}
    source = inspect.getsource(frames.FrameType)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    for index, token in enumerate(tokens):
        if token.type != tokenize.COMMENT:
            continue
        line_tokens = [t for t in tokens[:index] if t.start[0] == token.start[0]]
        names = [t.string for t in line_tokens if t.type == tokenize.NAME]
        if names and names[0] in frames.FrameType.__members__:
            notes[names[0]] = token.string.lstrip("#").strip()
    return notes


@dataclass(frozen=True)
class FieldInfo:
    position: int  # index in the encoded array; the tag is element 0
    name: str
    type: str
    default: str | None  # JSON text of the default; None when the field is required


@dataclass(frozen=True)
class MessageInfo:
    tag: int | None  # None for a nested structure (encoded without a tag)
    name: str
    doc: str
    fields: tuple[FieldInfo, ...]


MESSAGE_GROUPS: tuple[tuple[str, frames.FrameType, tuple[type[msgspec.Struct], ...]], ...] = (
    ("Handshake", frames.FrameType.HANDSHAKE, schema.HANDSHAKE_TYPES),
    ("Requests", frames.FrameType.REQUEST, schema.REQUEST_TYPES),
    ("Responses", frames.FrameType.RESPONSE, schema.RESPONSE_TYPES),
    ("Control", frames.FrameType.CONTROL, schema.CONTROL_TYPES),
)


def describe_message(cls: type[msgspec.Struct]) -> MessageInfo:
    """Tag, name, description and fields of one message or nested structure."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType), cls
    assert info.array_like, f"{cls.__name__} must be encoded as an array"
    tag = info.tag
    assert tag is None or isinstance(tag, int), f"{cls.__name__}: tags are integers"
    first = 1 if tag is not None else 0
    fields = tuple(
        FieldInfo(first + index, field.name, type_name(field.type), _default_text(field))
        for index, field in enumerate(info.fields)
    )
    return MessageInfo(tag, cls.__name__, _struct_doc(cls), fields)


def type_name(info: mi.Type) -> str:
    """A short, language-neutral name for a field's wire type."""
    simple = {
        mi.IntType: "int",
        mi.StrType: "str",
        mi.BytesType: "bytes",
        mi.BoolType: "bool",
        mi.FloatType: "float",
        mi.NoneType: "nil",
        mi.AnyType: "any",
    }
    for kind, name in simple.items():
        if isinstance(info, kind):
            return name
    if isinstance(info, mi.ListType):
        return f"list[{type_name(info.item_type)}]"
    if isinstance(info, mi.DictType):
        return f"map[{type_name(info.key_type)}, {type_name(info.value_type)}]"
    if isinstance(info, mi.StructType | mi.EnumType):
        return info.cls.__name__
    if isinstance(info, mi.UnionType):
        return " | ".join(type_name(member) for member in info.types)
    raise TypeError(f"describe.type_name does not know {info!r}; teach it")


def nested_types(classes: Iterable[type[msgspec.Struct]]) -> list[type]:
    """Every struct and enum reachable from the fields of `classes`, in first-use order."""
    found: list[type] = []

    def visit(info: mi.Type) -> None:
        if isinstance(info, mi.ListType):
            visit(info.item_type)
        elif isinstance(info, mi.DictType):
            visit(info.key_type)
            visit(info.value_type)
        elif isinstance(info, mi.UnionType):
            for member in info.types:
                visit(member)
        elif isinstance(info, mi.EnumType) and info.cls not in found:
            found.append(info.cls)
        elif isinstance(info, mi.StructType) and info.cls not in found:
            found.append(info.cls)
            for field in info.fields:
                visit(field.type)

    for cls in classes:
        struct = mi.type_info(cls)
        assert isinstance(struct, mi.StructType)
        for field in struct.fields:
            visit(field.type)
    return found


def render_markdown() -> str:
    """The whole page published as docs/protocol.md."""
    parts = [
        "# The braid wire protocol",
        "",
        f"Generated from `src/braid/core/wire/` by `{GENERATED_BY}`; do not edit by hand. "
        "A test fails when this page and the code disagree.",
        "",
        f"Protocol version: **{schema.PROTOCOL_VERSION}** (the handshake's version; it "
        "changes only for a change to framing or handshake).",
        "",
        *_frames_section(),
        *_connection_section(),
        *_versioning_section(),
        *_messages_section(),
        *_errors_section(),
    ]
    return "\n".join(parts).rstrip("\n") + "\n"


def render_summary() -> str:
    """One line per message (tag, group, name, fields): what `braid protocol` prints."""
    lines = []
    for group, _, classes in MESSAGE_GROUPS:
        for cls in classes:
            message = describe_message(cls)
            fields = ", ".join(_field_text(field) for field in message.fields)
            lines.append(f"{message.tag:>4}  {group.lower():<10} {message.name}({fields})")
    return "\n".join(lines) + "\n"


# -- sections ---------------------------------------------------------------------------------


def _frames_section() -> list[str]:
    lines = [
        "## Frames",
        "",
        "A connection carries a sequence of frames: a fixed "
        f"{frames.FRAME_HEADER_SIZE}-byte header, little endian, then the payload.",
        "",
        "| offset | size (bytes) | field |",
        "|---:|---:|---|",
    ]
    for row in frame_layout():
        lines.append(f"| {row.offset} | {row.size} | {_cell(row.field)} |")
    lines += ["", *_paragraphs_after_block(_docstring(frames), _LAYOUT_HEADING), ""]
    type_offset = next(row.offset for row in frame_layout() if row.field.startswith("type"))
    lines += [
        f"Frame types (header byte {type_offset}); any other value, a flag bit other than "
        "END, or a non-zero reserved field is a protocol error:",
        "",
        "| type | name | use |",
        "|---:|---|---|",
    ]
    notes = frame_type_notes()
    for kind in frames.FrameType:
        lines.append(f"| {int(kind)} | `{kind.name}` | {_cell(notes.get(kind.name, ''))} |")
    lines += ["", *_limits_table(), ""]
    return lines


def _limits_table() -> list[str]:
    lines = [
        "Connection settings and their defaults (`ConnectionConfig`; each side configures "
        "its own):",
        "",
        "| setting | default |",
        "|---|---:|",
    ]
    for field in dataclasses.fields(connection.ConnectionConfig):
        if field.default is not dataclasses.MISSING:
            lines.append(f"| `{field.name}` | {field.default} |")
    return lines


def _connection_section() -> list[str]:
    text = _docstring(connection)
    start = text.index("Handshake (stream 0)")
    return ["## Handshake and streams", "", *_markdown_from_docstring(text[start:]), ""]


def _versioning_section() -> list[str]:
    text = _docstring(schema)
    start = text.index("Versioning rule")
    intro = text.split("\n\n")[1].strip()  # the paragraph after the title line
    body = _markdown_from_docstring(text[start:])
    return ["## Messages and versioning", "", *intro.splitlines(), "", *body, ""]


def _messages_section() -> list[str]:
    lines = ["## Messages", ""]
    lines += [
        "Each table lists a message's fields in wire order (array element 1 onwards; "
        "element 0 is the tag). A field with a default may be absent from the array.",
        "",
    ]
    all_classes: list[type[msgspec.Struct]] = []
    for group, kind, classes in MESSAGE_GROUPS:
        all_classes += classes
        lines += [f"### {group} ({kind.name} frames)", ""]
        lines += ["| tag | message | fields | meaning |", "|---:|---|---|---|"]
        for cls in classes:
            message = describe_message(cls)
            fields = "<br>".join(f"`{_field_text(field)}`" for field in message.fields)
            lines.append(
                f"| {message.tag} | `{message.name}` | {fields or '—'} | {_cell(message.doc)} |"
            )
        lines.append("")
    lines += _nested_section(nested_types(all_classes))
    return lines


def _nested_section(types: Sequence[type]) -> list[str]:
    lines = [
        "### Nested types",
        "",
        "Structures inside messages are arrays of their fields, without a tag; enums are "
        "encoded as their values. The versioning rule applies to them too.",
        "",
    ]
    for cls in types:
        if issubclass(cls, enum.Enum):
            values = ", ".join(f"`{_json(member.value)}` ({member.name})" for member in cls)
            lines += [f"- `{cls.__name__}` (enum): {values}", ""]
            continue
        assert issubclass(cls, msgspec.Struct)
        message = describe_message(cls)
        lines += [f"#### `{message.name}`", ""]
        if message.doc:
            lines += [message.doc, ""]
        lines += ["| # | field | type | default |", "|---:|---|---|---|"]
        for field in message.fields:
            default = "required" if field.default is None else f"`{field.default}`"
            lines.append(f"| {field.position} | `{field.name}` | {field.type} | {default} |")
        lines.append("")
    return lines


def _errors_section() -> list[str]:
    lines = [
        "## Protocol error codes",
        "",
        "Sent in `Refuse` (handshake), `GoAway` (after Ready) and `Failure` (one stream). "
        "The full catalog is docs/errors.md.",
        "",
        "| code | name | description |",
        "|---:|---|---|",
    ]
    for info in errors.catalog():
        if 4000 <= info.code < 5000:
            lines.append(f"| {info.code} | `{info.name}` | {_cell(info.description)} |")
    lines.append("")
    return lines


# -- helpers ----------------------------------------------------------------------------------


def _docstring(module: object) -> str:
    text = inspect.getdoc(module)
    assert text, f"{module!r} has no docstring"
    return text


def _struct_doc(cls: type) -> str:
    # A Struct without its own docstring inherits none worth showing.
    text = cls.__dict__.get("__doc__") or ""
    return " ".join(inspect.cleandoc(text).split())


def _default_text(field: mi.Field) -> str | None:
    if field.default is not msgspec.NODEFAULT:
        return _json(field.default)
    if field.default_factory is not msgspec.NODEFAULT:
        return _json(field.default_factory())
    return None


def _json(value: object) -> str:
    return msgspec.json.encode(value).decode()


def _field_text(field: FieldInfo) -> str:
    text = f"{field.name}: {field.type}"
    return text if field.default is None else f"{text} = {field.default}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _paragraphs_after_block(text: str, heading: str) -> list[str]:
    """The prose that follows the literal block holding `heading`."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip() == heading)
    while index < len(lines) and (not lines[index].strip() or lines[index].startswith(" ")):
        index += 1
    return _markdown_from_docstring("\n".join(lines[index:]))


def _markdown_from_docstring(text: str) -> list[str]:
    """Docstring prose to Markdown: a paragraph ending in `::` introduces a literal block,
    which becomes a fenced code block; everything else is already Markdown."""
    out: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.endswith("::"):
            out.append(line)
            continue
        out += [line[:-1], "", "```text"]
        while index < len(lines) and not lines[index].strip():
            index += 1
        block: list[str] = []
        while index < len(lines) and (lines[index].startswith(" ") or not lines[index].strip()):
            block.append(lines[index])
            index += 1
        while block and not block[-1].strip():
            block.pop()
        indent = min(len(b) - len(b.lstrip()) for b in block if b.strip())
        out += [b[indent:] for b in block] + ["```", ""]
    return out
