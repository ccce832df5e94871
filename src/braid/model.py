"""The document model: keys, updates, document changes, and JSON merge (RFC 7396).

A document is the merge of its deltas' redo patches applied in order to `{}`. Three pure
functions carry all the JSON algebra:

- `apply_patch(target, patch)`: RFC 7396 — objects merge recursively, arrays and scalars
  replace, `null` deletes.
- `compose(acc, patch)`: merges one patch into another so that applying the result equals
  applying both in turn. Null markers are kept (a deletion must survive the merge). One case
  cannot be expressed as a single merge patch: a member that was replaced by a non-object and
  is then patched with an object must *replace* whatever object the target held, while a merge
  patch can only merge into it. `compose` reports that case as inexact; callers then fall back
  to `diff` of two exactly computed documents. Applied to `{}` a composed patch is always exact.
- `diff(old, new)`: the merge patch that turns `old` into `new`, always exact.

Values are compared with `same_json`, not `==`: in Python `True == 1`, in JSON they differ.

Bounds that make every read safe (DESIGN §3 invariant 7; `limits.py` holds the numbers):

- Depth. Every redo, undo and snapshot document is refused past `limits.json_depth_max`
  (MALFORMED_JSON), and no merge nests deeper than its inputs: each function returns either
  one of its inputs' values or an object whose members are its inputs' members or its own
  result on a pair of members one level down, so by induction on the depth its result is no
  deeper than the deeper input. Each recursion here takes one recursion level per JSON
  level (`diff` calls `same_json` only on the levels below its own), within
  `limits.json_frames_per_level_max`, so reads stay inside Python's limit (a test runs
  every read path under exactly that budget).
- Size. Re-encoded, a merge (`apply_patch`, `compose`) is no larger than the patches merged:
  each member of its result is a member, at the same place, of one of them, and each object
  of its result is an object at the same place in one of them. A `diff` holds members of
  `new` and a `"name":null` marker per member removed from `old`, at most 7/4 of that
  member's own size (a member is at least `"":0`), so it is at most new + 7/4 old.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Any

import msgspec

from braid import limits
from braid.errors import (
    INVALID_KEY,
    INVALID_SPACE,
    INVALID_UPDATE,
    MALFORMED_JSON,
    BraidError,
)

_SPACE_PATTERN = re.compile(r"[a-z0-9][a-z0-9.-]{2,126}")

JsonValue = Any  # dict | list | str | int | float | bool | None, as msgspec decodes JSON


def validate_space(space: str) -> None:
    if not isinstance(space, str) or _SPACE_PATTERN.fullmatch(space) is None:
        raise BraidError(INVALID_SPACE, f"invalid space {space!r}")


# Unicode category Cc is exactly these 65 code points (C0, DEL, C1); the set is fixed by the
# standard, so a character class is the whole test (unicodedata.category per character would
# cost a call each).
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def validate_key(key: str) -> None:
    """A key is 1 to `limits.key_bytes_max` bytes of valid UTF-8 with no control character
    (Unicode category Cc). Format characters (U+200D inside emoji sequences), non-ASCII
    spaces and line separators are allowed; a lone surrogate is not UTF-8 and is refused.

    Runs on every request, so the common cases stay in C scans: a printable key (most are)
    holds no Cc and no surrogate, so the character class is searched only in the others; an
    ASCII key's UTF-8 size is its length."""
    if not isinstance(key, str) or not key:
        raise BraidError(INVALID_KEY, f"invalid key {key!r}: must be a non-empty string")
    if not key.isprintable() and _CONTROL_CHARACTER.search(key) is not None:
        raise BraidError(INVALID_KEY, f"invalid key {key!r}: control characters")
    if key.isascii():
        size = len(key)
    else:
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise BraidError(
                INVALID_KEY, f"invalid key {key!r}: a lone surrogate is not UTF-8"
            ) from None
    if size > limits.key_bytes_max:
        raise BraidError(INVALID_KEY, f"key is {size} bytes; the limit is {limits.key_bytes_max}")


# `gc=False` on Key and Update: the store holds millions of them and they hold only strings
# and numbers, so the cyclic garbage collector has nothing to find in them.


class Key(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A document's address: a space (a namespace) and a key within it."""

    space: str
    key: str

    def __post_init__(self) -> None:
        validate_space(self.space)
        validate_key(self.key)

    def __str__(self) -> str:
        return f"{self.space}/{self.key}"


class Update(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One delta of a document log, covering seqs seq_begin..seq_end inclusive.

    `redo` turns the document at seq_begin-1 into the document at seq_end; `undo` turns it
    back. Both are JSON merge patches given as JSON text. The other fields are carried for
    the application and stored as given.
    """

    seq_begin: int
    seq_end: int
    who: str = ""
    request: str = ""
    redo: str = "{}"
    undo: str = "{}"
    active: bool = False
    asset_bytes: int = 0
    kind: str = ""

    @classmethod
    def of(
        cls,
        seq_begin: int,
        redo: JsonValue,
        undo: JsonValue = None,
        *,
        seq_end: int | None = None,
        who: str = "",
        request: str = "",
        active: bool = False,
        asset_bytes: int = 0,
        kind: str = "",
    ) -> Update:
        """An update from parsed JSON: `redo` and `undo` (default: an empty patch) are JSON
        values, encoded here into the text the write path keeps; seq_end defaults to
        seq_begin."""
        end = seq_begin if seq_end is None else seq_end
        undo_text = "{}" if undo is None else _patch_text(undo, "undo")
        redo_text = _patch_text(redo, "redo")
        return cls(seq_begin, end, who, request, redo_text, undo_text, active, asset_bytes, kind)

    def redo_json(self) -> JsonValue:
        """`redo`, parsed."""
        return _json_decoder.decode(self.redo)

    def undo_json(self) -> JsonValue:
        """`undo`, parsed."""
        return _json_decoder.decode(self.undo)


class DocumentChange(msgspec.Struct, frozen=True):
    """What get and compute answer: a JSON text, the seq it stands at, and how many deltas
    were read to produce it. `json()` parses the text for a caller who wants the value."""

    document: str
    seq: int
    reads: int

    def json(self) -> JsonValue:
        """The document (or patch), parsed."""
        return _json_decoder.decode(self.document)


class ComputeMethod(enum.Enum):
    HEAD_PATCH = "head_patch"
    REWIND = "rewind"


HEAD_PATCH = ComputeMethod.HEAD_PATCH
REWIND = ComputeMethod.REWIND


class DocumentInfo(msgspec.Struct, frozen=True):
    """One line of an inventory."""

    key: Key
    seq: int
    deltas: int
    bytes: int


_json_decoder = msgspec.json.Decoder()
_json_encoder = msgspec.json.Encoder()


def parse_object(text: str, what: str) -> dict[str, JsonValue]:
    """Parse JSON text that must be an object no deeper than `limits.json_depth_max`;
    raise MALFORMED_JSON otherwise."""
    try:
        value = _json_decoder.decode(text)
    except (msgspec.DecodeError, TypeError) as error:
        raise BraidError(MALFORMED_JSON, f"{what} is not valid JSON: {error}") from None
    except UnicodeEncodeError as error:
        raise BraidError(
            MALFORMED_JSON,
            f"{what} is not valid Unicode: a lone surrogate at character {error.start} "
            "(invalid UTF-8 input decodes to one)",
        ) from None
    except RecursionError:
        raise BraidError(MALFORMED_JSON, f"{what} {_too_deep()}") from None
    if not isinstance(value, dict):
        raise BraidError(
            MALFORMED_JSON, f"{what} must be a JSON object, got {type(value).__name__}"
        )
    check_depth(text, value, what)
    return value


def check_depth(text: str, value: JsonValue, what: str) -> None:
    """Refuse `value` (decoded from `text`) if it nests deeper than `limits.json_depth_max`.

    Each level takes two characters (`[` and `]`) and at most one `{` or `[`, so a short
    text, or one with few containers (two C-speed counts), is shallow enough. A larger one
    is measured from its text (`_text_within_depth`, about 4x faster than walking the
    decoded value), or walked when its text cannot be read that way.
    """
    if len(text) <= _SHALLOW_CHARACTERS_MAX or _few_containers(text):
        return
    within = _text_within_depth(text)
    if within is None:
        within = json_depth(value) <= limits.json_depth_max
    if not within:
        raise BraidError(MALFORMED_JSON, f"{what} {_too_deep()}")


_SHALLOW_CHARACTERS_MAX = 2 * limits.json_depth_max + 1  # depth D + 1 takes 2D + 2 characters

# Outside its strings, valid JSON holds only these characters: brackets become parentheses,
# the rest (whitespace, numbers, literals, separators) is deleted.
_BRACKETS_ONLY = str.maketrans(
    {"{": "(", "[": "(", "}": ")", "]": ")", **dict.fromkeys(" \t\n\r0123456789+-.eEtrufalsn,:")}
)


def _few_containers(text: str) -> bool:
    return text.count("{") + text.count("[") <= limits.json_depth_max


def _text_within_depth(text: str) -> bool | None:
    """Whether valid JSON `text` nests at most `limits.json_depth_max` levels, read from
    the text with C-speed string operations; None when that cannot be decided this way.

    Splitting at `"` cuts the strings out, unless a string holds an escaped quote. What is
    left, as parentheses, loses exactly its innermost level to each `replace("()", "")`
    (replace does not rescan what it produced), so it is empty after d passes iff its
    depth is at most d.
    """
    if '\\"' in text:
        return None
    brackets = "".join(text.split('"')[0::2]).translate(_BRACKETS_ONLY)
    if brackets.count("(") + brackets.count(")") != len(brackets):
        return None  # not what valid JSON leaves: let the walk decide
    for _ in range(limits.json_depth_max):
        brackets = brackets.replace("()", "")
        if not brackets:
            return True
    return False


def _too_deep() -> str:
    return f"nests deeper than {limits.json_depth_max} levels of objects and arrays"


def json_depth(value: JsonValue) -> int:
    """How deeply `value` nests: a scalar 0, an object or array 1 + its deepest member.
    Iterative, so any depth msgspec can decode is measured without recursion."""
    if type(value) is not dict and type(value) is not list:
        return 0
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for member in node.values() if type(node) is dict else node:
            if type(member) is dict or type(member) is list:
                stack.append((member, depth + 1))
    return deepest


def _patch_text(value: JsonValue, field: str) -> str:
    """A JSON value as the text an update carries; INVALID_UPDATE if it is not JSON (an
    object of another type, bytes, NaN or an infinity)."""
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise BraidError(INVALID_UPDATE, f"{field} is not a JSON value: {error}") from None


def to_json(value: JsonValue) -> str:
    return _json_encoder.encode(value).decode("utf-8")


def validate_update(update: Update) -> None:
    """Check an update's fields before it touches storage (JSON is checked too)."""
    if not isinstance(update, Update):
        raise BraidError(INVALID_UPDATE, f"expected braid.Update, got {type(update).__name__}")
    _validate_update_fields(update)
    redo, undo = update.redo, update.undo
    for name, text in (("redo", redo), ("undo", undo)):
        if len(text) > limits.json_bytes_max:
            raise BraidError(INVALID_UPDATE, f"{name} is larger than {limits.json_bytes_max} bytes")
    # The common case in one test; only bad input pays for saying which text is wrong.
    try:
        decode = _json_decoder.decode
        redo_value, undo_value = decode(redo), decode(undo)
        valid = type(redo_value) is dict and type(undo_value) is dict
    except (msgspec.DecodeError, TypeError, UnicodeEncodeError, RecursionError):
        valid = False
    if not valid:
        for name, text in (("redo", redo), ("undo", undo)):
            parse_object(text, f"{name} of update {update.seq_begin}..{update.seq_end}")
    # A short text cannot nest past the bound (see check_depth): its length decides that.
    if len(redo) > _SHALLOW_CHARACTERS_MAX or len(undo) > _SHALLOW_CHARACTERS_MAX:
        where = f"of update {update.seq_begin}..{update.seq_end}"
        check_depth(redo, redo_value, f"redo {where}")
        check_depth(undo, undo_value, f"undo {where}")


def _validate_update_fields(update: Update) -> None:
    # Plain comparisons rather than loops: this runs for every update on the write path.
    begin, end, assets = update.seq_begin, update.seq_end, update.asset_bytes
    if type(begin) is not int or type(end) is not int or type(assets) is not int:
        raise BraidError(INVALID_UPDATE, "seq_begin, seq_end and asset_bytes must be integers")
    if begin < 1 or end < begin:
        raise BraidError(INVALID_UPDATE, f"seq_begin={begin} seq_end={end}: need 1 <= begin <= end")
    if end >= 2**63:
        raise BraidError(INVALID_UPDATE, "seq_end does not fit in 63 bits")
    if assets < 0 or assets >= 2**63:
        raise BraidError(INVALID_UPDATE, "asset_bytes must be in [0, 2**63)")
    who, request, kind = update.who, update.request, update.kind
    if (
        type(who) is not str
        or type(request) is not str
        or type(kind) is not str
        or type(update.redo) is not str
        or type(update.undo) is not str
    ):
        raise BraidError(INVALID_UPDATE, "who, request, redo, undo and kind must be strings")
    if type(update.active) is not bool:
        raise BraidError(INVALID_UPDATE, "active must be a bool")
    if not (who.isascii() and request.isascii() and kind.isascii()):  # isascii is O(1)
        _check_encodable(update)
    if (
        len(who) > limits.who_bytes_max
        or len(request) > limits.request_bytes_max
        or len(kind) > limits.kind_bytes_max
    ):
        raise BraidError(
            INVALID_UPDATE,
            f"who, request and kind are limited to {limits.who_bytes_max}, "
            f"{limits.request_bytes_max} and {limits.kind_bytes_max} characters",
        )


def _check_encodable(update: Update) -> None:
    """Refuse a lone surrogate in who, request or kind: it cannot be stored as UTF-8 (the
    command line turns invalid UTF-8 arguments into lone surrogates)."""
    for name in ("who", "request", "kind"):
        text: str = getattr(update, name)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:
            raise BraidError(
                INVALID_UPDATE,
                f"{name} is not valid Unicode: a lone surrogate at character {error.start} "
                "(invalid UTF-8 input decodes to one)",
            ) from None


def apply_patch(target: JsonValue, patch: JsonValue) -> JsonValue:
    """RFC 7396 MergePatch(target, patch); `target` is not modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = apply_patch(result.get(name), value)
    return result


def compose(acc: JsonValue, patch: JsonValue) -> tuple[JsonValue, bool]:
    """Merge `patch` into the patch `acc`, keeping null markers.

    Returns (composed, exact). When exact, apply(apply(t, acc), patch) == apply(t, composed)
    for every target t; when not, only for t == {} (see the module docstring).
    """
    if not isinstance(patch, dict):
        return patch, True
    if not isinstance(acc, dict):
        # acc set this member to a non-object (or deleted it); patch builds an object on
        # top of nothing. As a merge patch that can only be written as "merge into".
        return apply_patch(None, patch), False
    result = dict(acc)
    exact = True
    for name, value in patch.items():
        if value is None or not isinstance(value, dict):
            result[name] = value
        elif name in result:
            merged, member_exact = compose(result[name], value)
            result[name] = merged
            exact = exact and member_exact
        else:
            result[name] = value
    return result, exact


def diff(old: JsonValue, new: JsonValue) -> JsonValue:
    """The merge patch p with apply_patch(old, p) == new (documents hold no null members)."""
    if not isinstance(new, dict) or not isinstance(old, dict):
        return new
    patch: dict[str, JsonValue] = {}
    for name in old:
        if name not in new:
            patch[name] = None
    for name, value in new.items():
        if name not in old:
            patch[name] = value
        elif not same_json(old[name], value):
            patch[name] = diff(old[name], value) if isinstance(value, dict) else value
    return patch


def same_json(left: JsonValue, right: JsonValue) -> bool:
    """JSON equality of decoded values. Python's `==` holds `true == 1` and `false == 0`;
    JSON does not, so booleans equal only booleans here (numbers compare by value)."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    # Plain loops, not all(generator): that costs three recursion levels per JSON level
    # instead of one (it made depth 329 unreadable; see the module docstring).
    if isinstance(left, dict):
        if not isinstance(right, dict) or left.keys() != right.keys():
            return False
        for name, value in left.items():  # noqa: SIM110
            if not same_json(value, right[name]):
                return False
        return True
    if isinstance(left, list):
        if not isinstance(right, list) or len(left) != len(right):
            return False
        for a, b in zip(left, right, strict=True):  # noqa: SIM110
            if not same_json(a, b):
                return False
        return True
    return bool(left == right)
