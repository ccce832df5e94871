"""Data-driven scenario files: commands in, expected output beside them, one interpreter.

The style of etcd-io/raft's ``testdata/*.txt`` (the cockroachdb/datadriven format). A scenario
file is a sequence of test cases; each case is a command line, optional input lines, a ``----``
line, then the expected output, which ends at the first blank line::

    # The first line is a comment saying what this file proves (required).

    put a=1 b=2
    ----
    ok

    # Comments and blank lines may sit between cases.
    load prefix=x keys=(a, b)
    input line one
    input line two
    ----
    loaded 2

Output that contains blank lines uses the double separator; it ends at ``----`` ``----``, which
must be followed by a blank line or the end of the file::

    dump spaced
    ----
    ----
    a=1

    b=2
    ----
    ----

Command lines: ``name arg1 key=value key=(v1, v2)``. A bare word is a flag (or a positional
word: ``get a b``), ``key=value`` has one value, ``key=(a, b, c)`` a list (spaces after commas are
ignored, nested parentheses stay inside one value, ``key=()`` is the empty list); parentheses
appear only as a list. Input lines run from the line after the command to ``----`` and may not
be blank. Every line's trailing
whitespace is ignored, and so are an output's trailing blank lines.

The interpreter is a ``Handler``: a function from a ``TestCase`` to its output text. It reads
arguments through the typed accessors (``case.get``, ``case.int``, ``case.values``, ``case.has``,
``case.bare``, ...), each of which raises a ``ScenarioError`` naming ``file:line`` on a missing
or malformed argument, and an argument the handler never read fails the case (a typo such as
``lns=3`` must not pass silently). A failure of the system under test is *output*: return
``"error: ..."`` text so the file records it. An exception from the handler fails the test with
the case's ``file:line``. ``raise case.error("...")`` reports a malformed scenario.

``run_file(path, handler)`` runs every case and fails (``pytest.fail``) with ``file:line``, the
command and a unified diff for each case whose output differs. With ``BRAID_REWRITE=1`` it
rewrites the file in place with the actual outputs instead (a temporary file renamed over it):
only the output blocks of the cases that differ change, every other byte (comments, blank lines,
order) stays. Review the result as a diff::

    BRAID_REWRITE=1 .venv/bin/pytest tests/scenarios && git diff tests/scenarios
"""

from __future__ import annotations

import builtins
import difflib
import enum
import itertools
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SEPARATOR = "----"
REWRITE_ENV = "BRAID_REWRITE"

_FIRST_LINE = re.compile(r"#\s*\S")
_INTEGER = re.compile(r"-?[0-9]+")


class ScenarioError(Exception):
    """A malformed scenario file or argument, or an interpreter that raised.

    The message starts with ``file:line`` of the offending line or case.
    """


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


@dataclass(eq=False)
class TestCase:
    """One case of a scenario file, as the interpreter sees it.

    ``args`` maps each ``key=value`` argument to its values in command-line order: one for
    ``key=value``, as many as listed for ``key=(a, b)``; ``words`` holds the bare words (flags
    or positional words) in order. ``line`` is the 1-based line of the command; ``file`` the
    path used in messages. Read arguments through the accessors: they record what was read.
    """

    __test__ = False  # a data class, not a pytest test class

    command: str
    args: Mapping[str, tuple[str, ...]]
    input: tuple[str, ...]
    expected: str
    line: builtins.int
    file: str
    words: tuple[str, ...] = ()
    command_line: str = ""
    _read: set[str] = field(default_factory=set, repr=False)

    @property
    def where(self) -> str:
        """``file:line`` of the command, for messages."""
        return f"{self.file}:{self.line}"

    @property
    def input_text(self) -> str:
        """The input lines joined with newlines."""
        return "\n".join(self.input)

    def error(self, message: str) -> ScenarioError:
        """An error naming this case, for the interpreter to raise on a malformed scenario."""
        return ScenarioError(f"{self.where}: {self.command}: {message}")

    def has(self, key: str) -> bool:
        """Whether the argument is present (a flag, or any argument)."""
        self._read.add(key)
        return key in self.args or key in self.words

    def bare(self) -> list[str]:
        """The bare words (arguments without ``=``), in order: flags or positional words."""
        self._read.update(self.words)
        return list(self.words)

    def values(self, key: str, default: tuple[str, ...] | _Missing = _MISSING) -> tuple[str, ...]:
        """All values of ``key``: one for ``key=v``, the list for ``key=(a, b)``."""
        self._read.add(key)
        if key in self.args:
            return self.args[key]
        if key in self.words:
            raise self.error(f"argument {key} needs a value ({key}=...)")
        if isinstance(default, _Missing):
            raise self.error(f"missing argument {key}=")
        return default

    def get(self, key: str, default: str | _Missing = _MISSING) -> str:
        """The single value of ``key=value``; ``default`` if absent, an error if no default."""
        if not isinstance(default, _Missing) and not self.has(key):
            return default
        values = self.values(key)
        if len(values) != 1:
            raise self.error(f"argument {key} needs exactly one value, has {list(values)}")
        return values[0]

    def int(self, key: str, default: builtins.int | _Missing = _MISSING) -> builtins.int:
        """The single value of ``key=N`` as an integer; ``default`` if absent."""
        if not isinstance(default, _Missing) and not self.has(key):
            return default
        return self._integer(key, self.get(key))

    def ints(self, key: str) -> list[builtins.int]:
        """Every value of ``key`` (``key=N`` or ``key=(1, 2)``) as integers."""
        return [self._integer(key, value) for value in self.values(key)]

    def pairs(self) -> list[tuple[str, str]]:
        """Every ``key=value`` argument in order (each with exactly one value)."""
        return [(key, self.get(key)) for key in self.args]

    def unread(self) -> list[str]:
        """The arguments no accessor has read yet."""
        return [key for key in (*self.words, *self.args) if key not in self._read]

    def _integer(self, key: str, value: str) -> builtins.int:
        if _INTEGER.fullmatch(value) is None:
            raise self.error(f"argument {key}={value!r} is not an integer")
        return builtins.int(value)


Handler = Callable[[TestCase], str]


@dataclass(frozen=True)
class ParsedCase:
    """A case and the lines ``[block_start, block_end)`` its output block occupies."""

    case: TestCase
    block_start: int
    block_end: int


def normalize(output: str) -> str:
    """Output as compared and written: trailing whitespace and trailing blank lines removed."""
    lines = [line.rstrip() for line in output.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def split_lines(text: str) -> list[str]:
    """``text`` as lines keeping their endings (only ``\\n`` ends a line)."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def parse(text: str, file: str) -> list[ParsedCase]:
    """Parse a scenario file's text; ``file`` names it in errors."""
    lines = [line.rstrip() for line in split_lines(text)]
    if not lines or _FIRST_LINE.match(lines[0]) is None:
        raise ScenarioError(f"{file}:1: the first line must be a '#' comment saying what it proves")
    cases: list[ParsedCase] = []
    index = 0
    while index < len(lines):
        if not lines[index] or lines[index].startswith("#"):
            index += 1
            continue
        parsed = _parse_case(lines, index, file)
        cases.append(parsed)
        index = parsed.block_end
    return cases


def _parse_case(lines: list[str], start: int, file: str) -> ParsedCase:
    if lines[start] == SEPARATOR:
        raise ScenarioError(f"{file}:{start + 1}: '{SEPARATOR}' where a command was expected")
    command, words, args = parse_command(lines[start], f"{file}:{start + 1}")
    index = start + 1
    while index < len(lines) and lines[index] != SEPARATOR:
        if not lines[index]:
            raise ScenarioError(
                f"{file}:{index + 1}: {command}: blank line before '{SEPARATOR}' "
                "(input lines may not be blank; a case needs a '----' line even with no output)"
            )
        index += 1
    if index == len(lines):
        raise ScenarioError(f"{file}:{start + 1}: {command}: no '{SEPARATOR}' line after it")
    block_start = index
    if index + 1 < len(lines) and lines[index + 1] == SEPARATOR:
        output, block_end = _double_block(lines, block_start, file, command)
    else:
        block_end = index + 1
        while block_end < len(lines) and lines[block_end]:
            block_end += 1
        output = lines[block_start + 1 : block_end]
    case = TestCase(
        command=command,
        args=args,
        input=tuple(lines[start + 1 : block_start]),
        expected=normalize("\n".join(output)),
        line=start + 1,
        file=file,
        words=words,
        command_line=lines[start],
    )
    return ParsedCase(case, block_start, block_end)


def _double_block(
    lines: list[str], block_start: int, file: str, command: str
) -> tuple[list[str], int]:
    """The output between ``----`` ``----`` and ``----`` ``----``, and the line after it."""
    index = block_start + 2
    while index + 1 < len(lines):
        if lines[index] == SEPARATOR and lines[index + 1] == SEPARATOR:
            end = index + 2
            if end < len(lines) and lines[end]:
                raise ScenarioError(
                    f"{file}:{end + 1}: {command}: a blank line must follow the closing "
                    f"'{SEPARATOR}' '{SEPARATOR}'"
                )
            return lines[block_start + 2 : index], end
        index += 1
    raise ScenarioError(
        f"{file}:{block_start + 1}: {command}: output opened with '{SEPARATOR}' '{SEPARATOR}' "
        f"is never closed with '{SEPARATOR}' '{SEPARATOR}'"
    )


def parse_command(text: str, where: str) -> tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]:
    """A command line's name, bare words and ``key=value`` arguments; ``where`` (``file:line``)
    names it in errors."""
    pieces = _split_top_level(text, where, separator=None)
    command = pieces[0]
    if "=" in command or "(" in command or ")" in command:
        raise ScenarioError(f"{where}: {command!r} is not a command name")
    words: list[str] = []
    args: dict[str, tuple[str, ...]] = {}
    for piece in pieces[1:]:
        key, equals, value = piece.partition("=")
        if not key or "(" in key or ")" in key:
            raise ScenarioError(f"{where}: {command}: malformed argument {piece!r}")
        if key in args or key in words:
            raise ScenarioError(f"{where}: {command}: argument {key} given twice")
        if equals:
            args[key] = _parse_value(value, where, command, piece)
        else:
            words.append(key)
    return command, tuple(words), args


def _parse_value(value: str, where: str, command: str, word: str) -> tuple[str, ...]:
    if not value:
        raise ScenarioError(f"{where}: {command}: argument {word!r} has no value")
    if not value.startswith("("):
        if "(" in value or ")" in value:
            raise ScenarioError(f"{where}: {command}: stray parenthesis in {word!r}")
        return (value,)
    if not value.endswith(")") or _closing_paren(value) != len(value) - 1:
        raise ScenarioError(f"{where}: {command}: malformed list in {word!r}")
    inner = value[1:-1]
    if not inner.strip():
        return ()
    items = _split_top_level(inner, where, separator=",")
    return tuple(item.strip() for item in items)


def _closing_paren(text: str) -> int:
    """Index of the parenthesis closing the one at ``text[0]``."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return -1


def _split_top_level(text: str, where: str, separator: str | None) -> list[str]:
    """Split ``text`` at ``separator`` (``None``: runs of whitespace) outside parentheses."""
    pieces: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ScenarioError(f"{where}: unbalanced ')' in {text!r}")
        at_separator = char.isspace() if separator is None else char == separator
        if depth == 0 and at_separator:
            pieces.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise ScenarioError(f"{where}: unbalanced '(' in {text!r}")
    pieces.append("".join(current))
    if separator is None:
        return [piece for piece in pieces if piece]
    if any(not piece.strip() for piece in pieces):
        raise ScenarioError(f"{where}: empty item in list ({text})")
    return pieces


def rewrite_requested() -> bool:
    """Whether ``BRAID_REWRITE=1`` asks for expectations to be regenerated."""
    return os.environ.get(REWRITE_ENV, "") == "1"


def run_case(case: TestCase, handler: Handler) -> str:
    """The handler's normalized output for one case; an exception names the case."""
    try:
        output = handler(case)
    except ScenarioError:
        raise
    except Exception as exc:
        raise case.error(f"the interpreter raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(output, str):
        raise case.error(f"the interpreter returned {type(output).__name__}, not str")
    unread = case.unread()
    if unread:
        raise case.error(f"argument(s) never read by the interpreter: {', '.join(unread)}")
    return normalize(output)


def run_file(
    path: str | os.PathLike[str],
    handler: Handler,
    *,
    rewrite: bool | None = None,
    display: str | None = None,
) -> None:
    """Run every case of the file at ``path`` through ``handler`` and compare the outputs.

    A difference fails the test (``pytest.fail``) with ``file:line``, the command and a unified
    diff for every differing case. ``rewrite`` (default: ``BRAID_REWRITE=1``) rewrites the
    differing output blocks in place instead. ``display`` is the path shown in messages.
    """
    __tracebackhide__ = True
    path = Path(path)
    name = display if display is not None else str(path)
    text = path.read_bytes().decode("utf-8")
    parsed = parse(text, name)
    actuals = [run_case(item.case, handler) for item in parsed]
    if rewrite_requested() if rewrite is None else rewrite:
        new_text = render(text, parsed, actuals)
        if new_text != text:
            _replace_file(path, new_text)
        return
    failures = [
        mismatch_report(item.case, actual)
        for item, actual in zip(parsed, actuals, strict=True)
        if actual != item.case.expected
    ]
    if failures:
        hint = f"to accept: {REWRITE_ENV}=1 .venv/bin/pytest tests/scenarios && git diff {name}"
        pytest.fail("\n\n".join([*failures, hint]), pytrace=False)


def mismatch_report(case: TestCase, actual: str) -> str:
    """``file:line``, the command and a unified diff from the expected to the actual output."""
    diff = difflib.unified_diff(
        case.expected.split("\n") if case.expected else [],
        actual.split("\n") if actual else [],
        fromfile="expected",
        tofile="actual",
        lineterm="",
    )
    return f"{case.where}: {case.command_line}\n" + "\n".join(diff)


def render(text: str, parsed: list[ParsedCase], actuals: list[str]) -> str:
    """``text`` with the output block of every case whose output differs replaced."""
    raw = split_lines(text)
    pieces: list[str] = []
    position = 0
    for item, actual in zip(parsed, actuals, strict=True):
        if actual == item.case.expected:
            continue
        ending = "\r\n" if raw[item.block_start].endswith("\r\n") else "\n"
        pieces.extend(raw[position : item.block_start])
        pieces.extend(line + ending for line in output_block(item.case, actual))
        position = item.block_end
    pieces.extend(raw[position:])
    return "".join(pieces)


def output_block(case: TestCase, output: str) -> list[str]:
    """The lines that write ``output`` (normalized): ``----`` then the output, or the
    double-separator form when the output has blank lines or starts with ``----``."""
    lines = output.split("\n") if output else []
    if "" not in lines and lines[:1] != [SEPARATOR]:
        return [SEPARATOR, *lines]
    doubled = any(a == b == SEPARATOR for a, b in itertools.pairwise(lines))
    if doubled or lines[-1] == SEPARATOR:
        raise case.error(f"output with a '{SEPARATOR}' line here cannot be written in the file")
    return [SEPARATOR, SEPARATOR, *lines, SEPARATOR, SEPARATOR]


def _replace_file(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it over ``path``."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
