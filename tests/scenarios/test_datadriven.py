"""The scenario runner itself: parsing, argument accessors, mismatch reports, rewrite mode and
discovery, each on small files written to a temporary directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from . import collection
from .datadriven import (
    REWRITE_ENV,
    ScenarioError,
    TestCase,
    normalize,
    output_block,
    parse,
    parse_command,
    render,
    run_file,
)

SELFTEST = Path(__file__).parent / "selftest"


def echo(case: TestCase) -> str:
    """A handler that answers with its input lines and reads no arguments."""
    return case.input_text


def write(tmp_path: Path, text: str, name: str = "case.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def only_case(text: str) -> TestCase:
    (parsed,) = parse("# proves a thing\n" + text, "f.txt")
    return parsed.case


# --- command lines -------------------------------------------------------------------------


def test_command_line_arguments_of_every_form() -> None:
    """Bare words, key=value, lists with or without spaces, nested parentheses and the empty
    list parse to words and values in order; extra spaces between arguments do not matter."""
    command, words, args = parse_command(
        "step  flag k=v list=(a, b,c)   nested=(1, (2, 3)) empty=() other", "f.txt:2"
    )
    assert command == "step"
    assert words == ("flag", "other")
    assert args == {
        "k": ("v",),
        "list": ("a", "b", "c"),
        "nested": ("1", "(2, 3)"),
        "empty": (),
    }


@pytest.mark.parametrize(
    "line",
    [
        "cmd k=",
        "cmd k=(a",
        "cmd k=a)",
        "cmd k=(a)b",
        "cmd =v",
        "cmd k=1 k=2",
        "cmd k k=2",
        "cmd k=(a,,b)",
        "k=v",
        "cmd k=f(x)",
    ],
)
def test_malformed_command_lines_name_file_and_line(line: str) -> None:
    """Every malformed argument is an error that starts with the file:line of the command."""
    with pytest.raises(ScenarioError, match=r"^f\.txt:3: "):
        parse(f"# proves a thing\n\n{line}\n----\n", "f.txt")


# --- files -----------------------------------------------------------------------------------


def test_cases_are_parsed_with_their_lines_input_and_expected_output() -> None:
    """Comments and blank lines separate cases; input runs to ----; single-separator output ends
    at a blank line, double-separator output may hold blank lines; trailing whitespace and a
    missing final newline do not matter."""
    text = (
        "# proves a thing\n"
        "\n"
        "# a comment\n"
        "first a=1\n"
        "in 1  \n"
        "# input, not a comment\n"
        "----\n"
        "out 1   \n"
        "out 2\n"
        "\n"
        "second\n"
        "----\n"
        "----\n"
        "x\n"
        "\n"
        "y\n"
        "----\n"
        "----\n"
        "\n"
        "third\n"
        "----\n"
        "\n"
        "fourth\n"
        "----\n"
        "last"
    )
    cases = [parsed.case for parsed in parse(text, "f.txt")]
    assert [(case.command, case.line) for case in cases] == [
        ("first", 4),
        ("second", 11),
        ("third", 20),
        ("fourth", 23),
    ]
    assert cases[0].input == ("in 1", "# input, not a comment")
    assert cases[0].args == {"a": ("1",)}
    assert [case.expected for case in cases] == ["out 1\nout 2", "x\n\ny", "", "last"]


@pytest.mark.parametrize("text", ["", "\n# late\n", "cmd\n----\n", "#\n", "#   \n", " # x\n"])
def test_the_first_line_must_be_a_comment_saying_what_the_file_proves(text: str) -> None:
    """A file whose first line is not a non-empty '#' comment is refused at line 1."""
    with pytest.raises(ScenarioError, match=r"^f\.txt:1: the first line must be a '#' comment"):
        parse(text, "f.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cmd a=1\ninput\n", r"^f\.txt:3: cmd: no '----' line"),
        ("cmd\n\nnext\n----\n", r"^f\.txt:4: cmd: blank line before '----'"),
        ("cmd\n----\n----\nout\n\n", r"^f\.txt:4: cmd: output opened with '----' '----' is never"),
        ("cmd\n----\n----\nout\n----\n", r"^f\.txt:4: cmd: output opened with '----' '----'"),
        ("cmd\n----\n----\nout\n----\n----\nnext\n", r"^f\.txt:9: cmd: a blank line must follow"),
        ("cmd\n----\nout\n\n----\n", r"^f\.txt:7: '----' where a command was expected"),
    ],
)
def test_malformed_files_fail_with_file_and_line(text: str, message: str) -> None:
    """A missing ----, a blank input line, an unterminated double separator, text right after a
    closing double separator and a stray ---- each fail naming the line at fault."""
    with pytest.raises(ScenarioError, match=message):
        parse("# proves a thing\n\n" + text, "f.txt")


# --- accessors -------------------------------------------------------------------------------


def test_typed_accessors_read_values_and_defaults() -> None:
    """get, int, ints, values, has and bare return typed values and defaults for absent keys."""
    case = only_case("cmd flag word n=-12 s=text l=(1, 2)\n----\n")
    assert case.int("n") == -12
    assert case.int("absent", 5) == 5
    assert case.get("s") == "text"
    assert case.get("absent", "d") == "d"
    assert case.values("l") == ("1", "2")
    assert case.values("absent", ()) == ()
    assert case.ints("l") == [1, 2]
    assert case.has("flag")
    assert not case.has("absent")
    assert case.bare() == ["flag", "word"]
    assert case.unread() == []


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda case: case.get("absent"), "missing argument absent="),
        (lambda case: case.int("absent"), "missing argument absent="),
        (lambda case: case.int("s"), "argument s='text' is not an integer"),
        (lambda case: case.int("n", 0), "argument n='1_0' is not an integer"),
        (lambda case: case.get("l"), r"argument l needs exactly one value"),
        (lambda case: case.get("flag"), r"argument flag needs a value"),
        (lambda case: case.ints("l"), r"argument l='x' is not an integer"),
    ],
)
def test_a_missing_or_malformed_argument_names_file_and_line(
    read: Callable[[TestCase], object], message: str
) -> None:
    """Each accessor refuses a missing or ill-typed argument with the case's file:line."""
    case = only_case("cmd flag s=text n=1_0 l=(1, x)\n----\n")
    with pytest.raises(ScenarioError, match=rf"^f\.txt:2: cmd: {message}"):
        read(case)


def test_an_argument_the_interpreter_never_read_fails_the_case(tmp_path: Path) -> None:
    """A typo'd argument (here lns=) is not silently ignored."""
    path = write(tmp_path, "# proves a thing\ncmd lns=3\n----\n")
    with pytest.raises(ScenarioError, match=r":2: cmd: argument\(s\) never read .*: lns$"):
        run_file(path, echo, rewrite=False)


# --- running ---------------------------------------------------------------------------------


def test_a_correct_file_passes(tmp_path: Path) -> None:
    """Outputs equal to the expectations (after trailing whitespace is dropped) pass."""
    path = write(tmp_path, "# proves a thing\ncmd\na  \nb\n----\na\nb   \n\n\ncmd\n----\n")
    run_file(path, echo, rewrite=False)


def test_a_mismatch_fails_with_file_line_command_and_diff(tmp_path: Path) -> None:
    """Every differing case is reported: its file:line, its command line as written, and a
    unified diff from the expected to the actual output, then how to accept the change."""
    path = write(
        tmp_path,
        "# proves a thing\n\ncmd k=1\nsame\n----\nsame\n\ncmd\nnew\n----\nold\n\ncmd\nx\n----\nz\n",
    )

    def reading(case: TestCase) -> str:
        case.has("k")
        return echo(case)

    with pytest.raises(pytest.fail.Exception) as failure:
        run_file(path, reading, rewrite=False)
    message = str(failure.value)
    assert f"{path}:8: cmd\n--- expected\n+++ actual\n@@ -1 +1 @@\n-old\n+new" in message
    assert f"{path}:13: cmd\n" in message
    assert f"{path}:3:" not in message
    assert f"{REWRITE_ENV}=1 .venv/bin/pytest tests/scenarios && git diff {path}" in message


def test_a_handler_that_raises_fails_with_file_and_line(tmp_path: Path) -> None:
    """An exception is not output: it fails the test naming the case and keeps its cause."""

    def broken(case: TestCase) -> str:
        raise KeyError("boom")

    path = write(tmp_path, "# proves a thing\n\n\nexplode\n----\n")
    with pytest.raises(ScenarioError, match=r":4: explode: the interpreter raised KeyError") as e:
        run_file(path, broken, rewrite=False)
    assert isinstance(e.value.__cause__, KeyError)


def test_an_error_returned_as_text_is_output(tmp_path: Path) -> None:
    """A handler's "error: ..." answer is compared like any output, not raised."""
    path = write(tmp_path, "# proves a thing\nfail\n----\nerror: no such key\n")
    run_file(path, lambda case: "error: no such key", rewrite=False)


# --- rewrite ---------------------------------------------------------------------------------

BEFORE = (
    "# proves a thing\n"
    "\n"
    "# a comment that stays\n"
    "cmd\n"
    "kept\n"
    "----\n"
    "kept   \n"
    "\n"
    "\n"
    "cmd\n"
    "kept\n"
    "----\n"
    "----\n"
    "kept\n"
    "----\n"
    "----\n"
    "\n"
    "cmd\n"
    "new\n"
    "----\n"
    "old 1\n"
    "old 2\n"
    "# (part of the old output)\n"
    "\n"
    "cmd\n"
    "----\n"
    "----\n"
    "was\n"
    "\n"
    "spaced\n"
    "----\n"
    "----\n"
    "\n"
    "spaced\n"
    "----\n"
    "single\n"
    "\n"
    "cmd\n"
    "----\n"
    "not empty"
)

AFTER = (
    "# proves a thing\n"
    "\n"
    "# a comment that stays\n"
    "cmd\n"
    "kept\n"
    "----\n"
    "kept   \n"
    "\n"
    "\n"
    "cmd\n"
    "kept\n"
    "----\n"
    "----\n"
    "kept\n"
    "----\n"
    "----\n"
    "\n"
    "cmd\n"
    "new\n"
    "----\n"
    "new\n"
    "\n"
    "cmd\n"
    "----\n"
    "\n"
    "spaced\n"
    "----\n"
    "----\n"
    "a\n"
    "\n"
    "b\n"
    "----\n"
    "----\n"
    "\n"
    "cmd\n"
    "----\n"
)


def spaced_or_echo(case: TestCase) -> str:
    return "a\n\nb\n" if case.command == "spaced" else echo(case)


def test_rewrite_replaces_exactly_the_differing_outputs(tmp_path: Path) -> None:
    """Only the output blocks of differing cases change: matching cases keep their bytes (even
    trailing spaces and an unneeded double separator), comments and blank lines stay, output
    with blank lines gets the double separator and output without them loses it."""
    path = write(tmp_path, BEFORE)
    run_file(path, spaced_or_echo, rewrite=True)
    assert path.read_bytes().decode("utf-8") == AFTER


def test_rewritten_file_passes_and_a_second_rewrite_changes_nothing(tmp_path: Path) -> None:
    """After a rewrite the file passes as is, and rewriting it again is a no-op."""
    path = write(tmp_path, BEFORE)
    run_file(path, spaced_or_echo, rewrite=True)
    run_file(path, spaced_or_echo, rewrite=False)
    inode = path.stat().st_ino
    run_file(path, spaced_or_echo, rewrite=True)
    assert path.read_bytes().decode("utf-8") == AFTER
    assert path.stat().st_ino == inode  # not even rewritten


@pytest.mark.parametrize("name", sorted(path.name for path in SELFTEST.glob("*.txt")))
def test_rewrite_of_a_correct_file_is_byte_identical(tmp_path: Path, name: str) -> None:
    """The self-test scenarios, rewritten with their own interpreter, do not change a byte."""
    original = (SELFTEST / name).read_bytes()
    path = tmp_path / name
    path.write_bytes(original)
    run_file(path, collection.load_interpreter("selftest").make(), rewrite=True)
    assert path.read_bytes() == original


def test_rewrite_keeps_crlf_line_endings(tmp_path: Path) -> None:
    """A file written with CRLF endings gets CRLF endings in its rewritten block too."""
    path = write(tmp_path, "# proves a thing\r\ncmd\r\nx\r\n----\r\ny\r\n\r\ncmd\r\n----\r\n")
    run_file(path, echo, rewrite=True)
    assert path.read_bytes() == b"# proves a thing\r\ncmd\r\nx\r\n----\r\nx\r\n\r\ncmd\r\n----\r\n"


def test_the_environment_variable_turns_rewrite_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BRAID_REWRITE=1 rewrites; any other value compares."""
    path = write(tmp_path, "# proves a thing\ncmd\nx\n----\ny\n")
    monkeypatch.setenv(REWRITE_ENV, "0")
    with pytest.raises(pytest.fail.Exception):
        run_file(path, echo)
    monkeypatch.setenv(REWRITE_ENV, "1")
    run_file(path, echo)
    assert path.read_text() == "# proves a thing\ncmd\nx\n----\nx\n"


def test_output_the_format_cannot_hold_is_refused() -> None:
    """Output with two '----' lines in a row (or ending in one) would end the block early."""
    case = only_case("cmd\n----\n")
    with pytest.raises(ScenarioError, match=r"^f\.txt:2: cmd: output with a '----' line"):
        output_block(case, "a\n\n----\n----\nb")
    with pytest.raises(ScenarioError, match=r"^f\.txt:2: cmd: output with a '----' line"):
        output_block(case, "a\n\n----")


LINES = st.lists(
    st.sampled_from(["", " ", "----", "# hash", "x", "y z  ", "----x", "\t"]), max_size=6
)


@given(LINES)
def test_any_writable_output_reads_back_as_written(lines: list[str]) -> None:
    """Whatever output the rewrite writes, parsing the file gives back that output (normalized),
    and the case after it is still found: blocks never swallow or lose lines."""
    output = "\n".join(lines)
    text = "# proves a thing\ncmd\n----\nold\n\nafter\n----\nend\n"
    parsed = parse(text, "f.txt")
    try:
        new_text = render(text, parsed, [normalize(output), "end"])
    except ScenarioError:
        return
    reparsed = [item.case for item in parse(new_text, "f.txt")]
    assert [case.command for case in reparsed] == ["cmd", "after"]
    assert reparsed[0].expected == normalize(output)
    assert reparsed[1].expected == "end"


# --- discovery -------------------------------------------------------------------------------


def test_discovery_pairs_every_file_with_its_directory(tmp_path: Path) -> None:
    """Each <name>/*.txt is one scenario run by <name>; directories without either are skipped."""
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "interpreter.py").write_text("")
        (tmp_path / name / "two.txt").write_text("")
        (tmp_path / name / "one.txt").write_text("")
    (tmp_path / "__pycache__").mkdir()
    found = [scenario.name for scenario in collection.discover(tmp_path)]
    assert found == ["a/one", "a/two", "b/one", "b/two"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["stray.txt"], "a scenario file must sit in an interpreter's directory"),
        (["x/one.txt"], "scenario files but no interpreter.py"),
        (["x/interpreter.py"], "interpreter.py but no scenario files"),
    ],
)
def test_discovery_refuses_to_skip_anything(tmp_path: Path, files: list[str], message: str) -> None:
    """A scenario without an interpreter, or an interpreter without scenarios, is an error."""
    for name in files:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    with pytest.raises(ScenarioError, match=message):
        collection.discover(tmp_path)


def test_the_real_scenarios_directory_has_the_selftest_files() -> None:
    """Discovery of tests/scenarios finds the self-test files (the scheme is not vacuous)."""
    names = [scenario.name for scenario in collection.discover()]
    assert {"selftest/forms", "selftest/kv"} <= set(names)
