"""The `braid` command line, driven in-process through `main([...])`.

Each test runs real commands against a real store in a temporary directory and checks the
exit status and what was printed, including the error code of every failure path.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import braid
from braid import DurableConfig, errors
from braid.cli.main import build_parser, main
from braid.core.wal.record import RECORD_HEADER_SIZE, RecordType
from braid.errors import catalog
from braid.storage.wal import analyze_log


@dataclass
class Result:
    code: int
    out: str
    err: str


Run = Callable[..., Result]


SMALL_SEGMENT_BYTES = 1 << 20


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open every store with 1 MiB log segments instead of the default 32 MiB.

    The default preallocates 32 MiB per segment plus a spare, about half a second of disk
    writes per new store; the CLI's behaviour does not depend on the segment size.
    """
    real_open = braid.open

    def open_small(
        directory: str | os.PathLike[str],
        config: DurableConfig | None = None,
        *,
        create: bool = True,
        read_only: bool = False,
    ) -> object:
        config = config or DurableConfig(SMALL_SEGMENT_BYTES)
        return real_open(directory, config, create=create, read_only=read_only)

    monkeypatch.setattr(braid, "open", open_small)


@pytest.fixture
def braid_cli(capsys: pytest.CaptureFixture[str]) -> Run:
    def run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exited:  # argparse: --help, bad usage
            assert isinstance(exited.code, int)
            code = exited.code
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def store(tmp_path: Path, braid_cli: Run) -> Path:
    """A store holding chat/doc at seq 4 (deltas 1, 2, 3..4) and chat/other at seq 1."""
    directory = tmp_path / "store"
    data = ("--data", str(directory))
    assert braid_cli("doc", "init", *data, "chat", "doc", "--redo", '{"a":1,"b":{"c":2}}').code == 0
    assert (
        braid_cli(
            "doc",
            "patch",
            *data,
            "chat",
            "doc",
            "--seq",
            "2",
            "--redo",
            '{"b":{"d":3}}',
            "--undo",
            '{"b":{"d":null}}',
        ).code
        == 0
    )
    assert (
        braid_cli(
            "doc",
            "patch",
            *data,
            "chat",
            "doc",
            "--seq-begin",
            "3",
            "--seq-end",
            "4",
            "--redo",
            '{"a":null}',
            "--undo",
            '{"a":1}',
        ).code
        == 0
    )
    assert braid_cli("doc", "init", *data, "chat", "other", "--redo", '{"x":true}').code == 0
    return directory


def file_hashes(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


# -- help ---------------------------------------------------------------------------------------


def _command_paths(parser: argparse.ArgumentParser, prefix: list[str]) -> Iterator[list[str]]:
    yield prefix
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _command_paths(child, [*prefix, name])


ALL_COMMANDS = list(_command_paths(build_parser(), []))


def test_the_command_tree_has_every_documented_command() -> None:
    """The parser offers the subcommands the README and Makefile rely on."""
    names = {" ".join(path) for path in ALL_COMMANDS}
    for expected in (
        "doc init",
        "doc patch",
        "doc get",
        "doc headpatch",
        "doc rewind",
        "doc snapshot",
        "doc delete",
        "doc list",
        "errors",
        "wal inspect",
        "wal verify",
        "demo",
        "bench engine",
    ):
        assert expected in names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda path: " ".join(path) or "braid")
def test_every_command_has_working_help(path: list[str], braid_cli: Run) -> None:
    """`--help` on every (sub)command prints a usage and exits with status 0."""
    result = braid_cli(*path, "--help")
    assert result.code == 0
    assert result.out.startswith("usage: braid")


def test_bad_usage_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing required argument is a usage error (status 2), not a traceback: argparse's
    own, or for a missing --data/--server (with neither BRAID_DATA nor BRAID_SERVER set)
    INVALID_SETTING naming both options."""
    monkeypatch.delenv("BRAID_DATA", raising=False)
    monkeypatch.delenv("BRAID_SERVER", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["doc", "get", "chat"])  # no key
    assert exit_info.value.code == 2
    assert main(["doc", "get", "chat", "doc"]) == 2  # no --data
    assert "--data DIR or --server HOST:PORT" in capsys.readouterr().err


# -- doc ------------------------------------------------------------------------------------------


def test_get_prints_document_and_seq(store: Path, braid_cli: Run) -> None:
    """get merges every redo: a deleted member is gone, nested objects merged."""
    result = braid_cli("doc", "get", "--data", str(store), "chat", "doc", "--json")
    assert result.code == 0
    assert json.loads(result.out) == {
        "space": "chat",
        "key": "doc",
        "seq": 4,
        "reads": 3,
        "document": {"b": {"c": 2, "d": 3}},
    }
    text = braid_cli("doc", "get", "--data", str(store), "chat", "doc")
    assert text.code == 0
    assert "chat/doc at seq 4" in text.out
    assert json.loads(text.out.split("\n", 1)[1]) == {"b": {"c": 2, "d": 3}}


def test_headpatch_and_rewind(store: Path, braid_cli: Run) -> None:
    """headpatch gives the merged redos after SEQ; rewind the merged undos back to SEQ."""
    data = ("--data", str(store))
    head = braid_cli("doc", "headpatch", *data, "chat", "doc", "1", "--json")
    assert head.code == 0
    assert json.loads(head.out)["patch"] == {"b": {"d": 3}, "a": None}
    assert json.loads(head.out)["seq"] == 4
    back = braid_cli("doc", "rewind", *data, "chat", "doc", "1", "--json")
    assert back.code == 0
    assert json.loads(back.out)["patch"] == {"a": 1, "b": {"d": None}}
    assert json.loads(back.out)["seq"] == 1
    text = braid_cli("doc", "rewind", *data, "chat", "doc", "2")
    assert "back to seq 2" in text.out


def test_patch_with_a_gap_is_head_seq_off(store: Path, braid_cli: Run) -> None:
    """A patch that does not start at head+1 fails with 2003 and changes nothing."""
    data = ("--data", str(store))
    result = braid_cli("doc", "patch", *data, "chat", "doc", "--seq", "9", "--redo", '{"z":1}')
    assert result.code == 1
    assert result.err.startswith("error 2003 HEAD_SEQ_OFF: ")
    assert "write from head + 1" in result.err  # the catalog description
    # and a hint in the command line's terms, not the API's
    assert "hint: `braid doc get` shows the head seq; patch with --seq HEAD+1" in result.err
    assert "compute(" not in result.err
    assert "Traceback" not in result.err
    after = braid_cli("doc", "get", *data, "chat", "doc", "--json")
    assert json.loads(after.out)["seq"] == 4


def test_snapshot_computes_the_document_when_not_given(store: Path, braid_cli: Run) -> None:
    """snapshot without --document folds old deltas; the document is unchanged; rewinding
    into the folded history is then refused with 2004."""
    data = ("--data", str(store))
    result = braid_cli("doc", "snapshot", *data, "chat", "doc", "2", "--history", "1", "--json")
    assert result.code == 0
    assert json.loads(result.out)["removed"] == 1
    listing = json.loads(braid_cli("doc", "list", *data, "--json").out)
    assert {"space": "chat", "key": "doc"}.items() <= listing[0].items()
    assert listing[0]["deltas"] == 2
    get = braid_cli("doc", "get", *data, "chat", "doc", "--json")
    assert json.loads(get.out)["document"] == {"b": {"c": 2, "d": 3}}
    refused = braid_cli("doc", "rewind", *data, "chat", "doc", "1")
    assert refused.code == 1
    assert refused.err.startswith("error 2004 REWIND_PAST_COMPACTED")


def test_snapshot_with_a_wrong_document_is_refused(store: Path, braid_cli: Run) -> None:
    """A --document that differs from the stored one at SEQ is 2006; nothing is folded."""
    data = ("--data", str(store))
    result = braid_cli(
        "doc", "snapshot", *data, "chat", "doc", "2", "--history", "0", "--document", '{"a":2}'
    )
    assert result.code == 1
    assert result.err.startswith("error 2006 SNAPSHOT_MISMATCH")
    listing = json.loads(braid_cli("doc", "list", *data, "--json").out)
    assert listing[0]["deltas"] == 3


def test_list_shows_every_document(store: Path, braid_cli: Run) -> None:
    """list prints a table with space, key, seq and delta count of every document."""
    result = braid_cli("doc", "list", "--data", str(store))
    assert result.code == 0
    assert "2 documents" in result.out
    rows = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in result.out.splitlines()
        if "chat" in line
    ]
    assert [row[:4] for row in rows] == [["chat", "doc", "4", "3"], ["chat", "other", "1", "1"]]


def test_delete_then_get_is_not_found(store: Path, braid_cli: Run) -> None:
    """delete removes the document: get reports 2001, list no longer shows it."""
    data = ("--data", str(store))
    assert braid_cli("doc", "delete", *data, "chat", "doc").code == 0
    result = braid_cli("doc", "get", *data, "chat", "doc")
    assert result.code == 1
    assert result.err.startswith("error 2001 DOCUMENT_NOT_FOUND")
    listing = json.loads(braid_cli("doc", "list", *data, "--json").out)
    assert [entry["key"] for entry in listing] == ["other"]


def test_init_twice_is_document_exists(store: Path, braid_cli: Run) -> None:
    """initialize on an existing key fails with 2002."""
    result = braid_cli("doc", "init", "--data", str(store), "chat", "doc", "--redo", "{}")
    assert result.code == 1
    assert result.err.startswith("error 2002 DOCUMENT_EXISTS")


@pytest.mark.parametrize(
    ("space", "key", "redo", "expected"),
    [
        ("BAD", "doc", "{}", "error 1001 INVALID_SPACE"),
        ("ok-space", "bad\nkey", "{}", "error 1002 INVALID_KEY"),
        ("ok-space", "doc", "{not json", "error 1003 MALFORMED_JSON"),
        ("ok-space", "doc", "[1, 2]", "error 1003 MALFORMED_JSON"),
    ],
)
def test_invalid_input_is_rejected_with_its_code(
    tmp_path: Path, braid_cli: Run, space: str, key: str, redo: str, expected: str
) -> None:
    """Bad spaces, keys and JSON are refused with their 1xxx code before touching storage."""
    directory = tmp_path / "store"
    result = braid_cli("doc", "init", "--data", str(directory), space, key, "--redo", redo)
    assert result.code == 1
    assert result.err.startswith(expected)
    assert "Traceback" not in result.err


def test_seq_arguments_are_checked(store: Path, braid_cli: Run) -> None:
    """A negative seq or history, or a patch seq of 0, is bad usage (exit 2, argparse
    naming the argument); --seq-end without --seq-begin too (1009 INVALID_SETTING); a seq
    beyond the head is 2008 (exit 1). The document is unchanged."""
    data = ("--data", str(store))
    before = braid_cli("doc", "get", *data, "chat", "doc", "--json").out
    bad = {
        "headpatch -1": ("doc", "headpatch", *data, "chat", "doc", "-1"),
        "rewind -1": ("doc", "rewind", *data, "chat", "doc", "-1"),
        "snapshot history -1": ("doc", "snapshot", *data, "chat", "doc", "1", "--history", "-1"),
        "patch --seq -1": ("doc", "patch", *data, "chat", "doc", "--seq", "-1", "--redo", "{}"),
        "patch --seq 0": ("doc", "patch", *data, "chat", "doc", "--seq", "0", "--redo", "{}"),
    }
    for name, argv in bad.items():
        result = braid_cli(*argv)
        assert result.code == 2, name
        assert "must be at least" in result.err, name
    beyond = braid_cli("doc", "rewind", *data, "chat", "doc", "99")
    assert beyond.code == 1
    assert beyond.err.startswith("error 2008 SEQ_BEYOND_HEAD")
    mixed = braid_cli(
        "doc", "patch", *data, "chat", "doc", "--seq", "5", "--seq-end", "6", "--redo", "{}"
    )
    assert mixed.code == 2
    assert mixed.err.startswith("error 1009 INVALID_SETTING: --seq-end goes with --seq-begin")
    assert braid_cli("doc", "get", *data, "chat", "doc", "--json").out == before


@pytest.mark.parametrize("command", ["get", "headpatch", "rewind", "snapshot", "delete", "patch"])
def test_commands_other_than_init_never_create_a_store(
    tmp_path: Path, braid_cli: Run, command: str
) -> None:
    """On a missing directory, or an existing one that is not a store, every command but
    init fails with 3007 and creates nothing."""
    extra = {
        "get": [],
        "delete": [],
        "headpatch": ["1"],
        "rewind": ["1"],
        "snapshot": ["1", "--history", "0"],
        "patch": ["--seq", "2", "--redo", "{}"],
    }[command]
    missing = tmp_path / "missing"
    result = braid_cli("doc", command, "--data", str(missing), "chat", "doc", *extra)
    assert result.code == 1
    assert result.err.startswith("error 3007 STORE_NOT_FOUND")
    assert not missing.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = braid_cli("doc", command, "--data", str(empty), "chat", "doc", *extra)
    assert result.err.startswith("error 3007 STORE_NOT_FOUND")
    assert list(empty.iterdir()) == []


def test_list_on_missing_store(tmp_path: Path, braid_cli: Run) -> None:
    """list, a read-only command, refuses a missing store with 3007 and does not create it."""
    result = braid_cli("doc", "list", "--data", str(tmp_path / "nowhere"))
    assert result.code == 1
    assert result.err.startswith("error 3007 STORE_NOT_FOUND")
    assert not (tmp_path / "nowhere").exists()


def test_store_held_by_another_process_is_locked(store: Path, braid_cli: Run) -> None:
    """While another open file description holds the store directory's flock, commands fail
    with 3003."""
    fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = braid_cli("doc", "get", "--data", str(store), "chat", "doc")
    finally:
        os.close(fd)
    assert result.code == 1
    assert result.err.startswith("error 3003 STORE_LOCKED")


def test_memory_keys_are_flagged_as_transient(tmp_path: Path, braid_cli: Run) -> None:
    """A mem_ key lives in this process only; init says so and the next command cannot see it."""
    data = ("--data", str(tmp_path / "store"))
    result = braid_cli("doc", "init", *data, "chat", "mem_scratch", "--redo", "{}")
    assert result.code == 0
    assert "live in memory" in result.out
    assert braid_cli("doc", "get", *data, "chat", "mem_scratch").err.startswith("error 2001")


# -- errors ---------------------------------------------------------------------------------------


def test_errors_lists_the_catalog(braid_cli: Run) -> None:
    """`braid errors` prints every code and name."""
    result = braid_cli("errors")
    assert result.code == 0
    for info in catalog():
        assert str(info.code) in result.out
        assert info.name in result.out


def test_errors_explains_one_code_by_number_or_name(braid_cli: Run) -> None:
    """A code or a name explains that entry; --json gives the fields."""
    by_number = braid_cli("errors", "2003")
    assert by_number.code == 0
    assert by_number.out.startswith("2003 HEAD_SEQ_OFF\n")
    assert "retryable: no" in by_number.out
    assert "user can fix: yes" in by_number.out
    by_name = braid_cli("errors", "store_locked", "--json")
    assert json.loads(by_name.out) == {
        "code": 3003,
        "name": "STORE_LOCKED",
        "retryable": False,
        "user_fixable": True,
        "description": errors.STORE_LOCKED.description,
    }


def test_errors_unknown_code_exits_2(braid_cli: Run) -> None:
    """An unknown code is a clear message and status 2."""
    result = braid_cli("errors", "4242")
    assert result.code == 2
    assert "unknown error code '4242'" in result.err
    assert result.out == ""


# -- wal ------------------------------------------------------------------------------------------


def test_wal_inspect_lists_records(store: Path, braid_cli: Run) -> None:
    """inspect decodes each record: type, key and seqs, in lsn order, with a clean verdict."""
    result = braid_cli("wal", "inspect", str(store), "--json")
    assert result.code == 0
    dump = json.loads(result.out)
    assert dump["verdict"] == "clean"
    operations = [(r["type"], r["key"], r["seqs"]) for r in dump["record_list"]]
    assert [op for op in operations if op[0] != "COMMIT"] == [
        ("INIT", "chat/doc", "1"),
        ("PATCH", "chat/doc", "2"),
        ("PATCH", "chat/doc", "3..4"),
        ("INIT", "chat/other", "1"),
    ]
    assert [r["lsn"] for r in dump["record_list"]] == list(range(1, 9))
    text = braid_cli("wal", "inspect", str(store / "wal"), "--limit", "3")
    assert text.code == 0
    assert "seg-00000001.wal" in text.out
    assert "… 5 more records" in text.out
    assert "verdict: clean" in text.out


def test_wal_verify_clean(store: Path, braid_cli: Run) -> None:
    """verify on an intact log says clean and exits 0."""
    result = braid_cli("wal", "verify", str(store))
    assert result.code == 0
    assert "clean: 1 segment, 8 intact records (lsn 1..8)" in result.out


def _middle_patch_payload_offset(store: Path) -> tuple[Path, int]:
    analysis = analyze_log(store / "wal")
    patches = [r for r in analysis.records if r.type is RecordType.PATCH]
    record = patches[0]
    assert record.lsn < analysis.records[-1].lsn
    return analysis.segments[0].path, record.offset + RECORD_HEADER_SIZE + 2


def test_wal_verify_corrupt_middle_record(store: Path, braid_cli: Run) -> None:
    """A flipped byte in a record followed by later intact batches is corruption: verify and
    inspect report 3001, verify exits 2, and no file is changed."""
    segment, offset = _middle_patch_payload_offset(store)
    with open(segment, "r+b") as handle:
        handle.seek(offset)
        original = handle.read(1)[0]
        handle.seek(offset)
        handle.write(bytes([original ^ 0x40]))
    before = file_hashes(store)
    result = braid_cli("wal", "verify", str(store))
    assert result.code == 2
    assert "damaged: the store will not open." in result.out
    assert "error 3001 WAL_CORRUPT" in result.out
    as_json = json.loads(braid_cli("wal", "verify", str(store), "--json").out)
    assert (as_json["verdict"], as_json["code"], as_json["opens"]) == ("damaged", 3001, False)
    inspect = braid_cli("wal", "inspect", str(store))
    assert inspect.code == 0
    assert "verdict: corrupt" in inspect.out
    assert file_hashes(store) == before
    refused = braid_cli("doc", "get", "--data", str(store), "chat", "other")
    assert refused.err.startswith("error 3001 WAL_CORRUPT")


def test_wal_verify_torn_tail(store: Path, braid_cli: Run) -> None:
    """Garbage after the last record is a torn tail: verify exits 1 without changing files,
    and so does a read-only command (doc get); a read-write open truncates it, after which
    verify says clean."""
    analysis = analyze_log(store / "wal")
    segment = analysis.segments[-1]
    with open(segment.path, "r+b") as handle:
        handle.seek(segment.end)
        handle.write(b"\x30\x00\x00\x00" + bytes(range(7, 43)))  # a record cut short
    before = file_hashes(store)
    result = braid_cli("wal", "verify", str(store / "wal"))
    assert result.code == 1
    assert "repairable: 1 segment, 8 intact records" in result.out
    assert f"torn tail at offset {segment.end} of seg-00000001.wal" in result.out
    assert file_hashes(store) == before
    assert braid_cli("doc", "get", "--data", str(store), "chat", "other").code == 0
    assert file_hashes(store) == before
    assert braid_cli("doc", "init", "--data", str(store), "chat", "third", "--redo", "{}").code == 0
    assert braid_cli("wal", "verify", str(store)).code == 0


def test_wal_on_a_path_without_a_log(tmp_path: Path, braid_cli: Run) -> None:
    """A path that holds no log is 3007, exit 3 (distinct from torn and corrupt)."""
    result = braid_cli("wal", "verify", str(tmp_path))
    assert result.code == 3
    assert result.err.startswith("error 3007 STORE_NOT_FOUND")
    assert list(tmp_path.iterdir()) == []
