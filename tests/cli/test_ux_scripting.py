"""Scripting with `braid doc`, through the real command (issue 10): patches read from a
file (`--redo @FILE`) or stdin (`--redo -`), `--seq next`, an undo computed exactly when
`--undo` is left out, and BRAID_DATA standing in for `--data`. (BRAID_SERVER against a
node: tests/cluster/test_ux_node_history.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from braid import errors
from tests.support import cli
from tests.support.json_model import merge_patch

# Each step's redo (no undo given) and the document after it: members replaced, merged,
# deleted, an array replaced, an object replaced by a scalar.
STEPS = [
    ({"title": "hi", "tags": ["a"], "n": 1}, {"title": "hi", "tags": ["a"], "n": 1}),
    ({"n": {"deep": {"x": 1}}, "tags": ["b", "c"]}, {"title": "hi", "tags": ["b", "c"],
                                                      "n": {"deep": {"x": 1}}}),
    ({"title": None, "n": {"deep": {"y": 2}}}, {"tags": ["b", "c"],
                                                "n": {"deep": {"x": 1, "y": 2}}}),
    ({"n": 5, "extra": True}, {"tags": ["b", "c"], "n": 5, "extra": True}),
]  # fmt: skip


def run_braid(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py); embedded stores need no secret."""
    return cli.run_braid(*argv, secret=None, stdin=stdin)


def document(store: Path) -> tuple[object, int]:
    result = run_braid("doc", "get", "--data", str(store), "chat", "doc", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    return shown["document"], shown["seq"]


def test_redo_from_a_file_and_stdin_with_seq_next(tmp_path: Path) -> None:
    """`init --redo @FILE`, then `patch --seq next --redo -` with the patch on stdin, twice:
    each lands at the head + 1 and the document is the patches merged."""
    store, first = tmp_path / "store", tmp_path / "first.json"
    first.write_text(json.dumps(STEPS[0][0]))
    created = run_braid("doc", "init", "--data", str(store), "chat", "doc", "--redo", f"@{first}")
    assert created.returncode == 0, created.stderr
    for redo, _ in STEPS[1:3]:
        patched = run_braid(
            "doc", "patch", "--data", str(store), "chat", "doc", "--seq", "next", "--redo", "-",
            stdin=json.dumps(redo),
        )  # fmt: skip
        assert patched.returncode == 0, patched.stderr
    assert document(store) == (STEPS[2][1], 3)


def test_a_left_out_undo_is_computed_exactly(tmp_path: Path) -> None:
    """With no --undo, init and patch store the exact inverse of each redo: rewinding from
    the head to every earlier seq gives the patch back to that seq's document, through
    replacements, deletions, arrays and an object replaced by a scalar."""
    store = tmp_path / "store"
    for seq, (redo, _) in enumerate(STEPS, start=1):
        command = ("init",) if seq == 1 else ("patch", "--seq", str(seq))
        result = run_braid("doc", *command, "--data", str(store), "chat", "doc",
                           "--redo", json.dumps(redo))  # fmt: skip
        assert result.returncode == 0, result.stderr
    head, seq = document(store)
    assert (head, seq) == (STEPS[-1][1], len(STEPS))
    for target in range(len(STEPS)):
        rewind = run_braid("doc", "rewind", "--data", str(store), "chat", "doc", str(target),
                           "--json")  # fmt: skip
        patch = json.loads(rewind.stdout)["patch"]
        expected = {} if target == 0 else STEPS[target - 1][1]
        assert merge_patch(head, patch) == expected, target


def test_braid_data_stands_in_for_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With BRAID_DATA set, `doc` commands need no --data (an explicit --data still wins);
    with neither, or with BRAID_DATA and BRAID_SERVER both set, the command is bad usage
    (exit 2) naming the options and variables, and creates nothing."""
    store, other = tmp_path / "store", tmp_path / "other"
    monkeypatch.delenv("BRAID_SERVER", raising=False)
    monkeypatch.setenv("BRAID_DATA", str(store))
    assert run_braid("doc", "init", "chat", "doc", "--redo", '{"a":1}').returncode == 0
    assert document(store) == ({"a": 1}, 1)
    assert (
        run_braid("doc", "init", "--data", str(other), "chat", "doc", "--redo", "{}").returncode
        == 0
    )
    assert other.exists()
    monkeypatch.setenv("BRAID_SERVER", "127.0.0.1:1")
    both = run_braid("doc", "get", "chat", "doc")
    assert both.returncode == 2
    assert "both BRAID_SERVER and BRAID_DATA are set" in both.stderr
    monkeypatch.delenv("BRAID_SERVER")
    monkeypatch.delenv("BRAID_DATA")
    neither = run_braid("doc", "list")
    assert neither.returncode == 2
    assert "--data DIR or --server HOST:PORT (or set BRAID_DATA or BRAID_SERVER)" in neither.stderr


def test_an_unreadable_patch_file_is_bad_usage_and_creates_nothing(tmp_path: Path) -> None:
    """`--redo @missing` is INVALID_SETTING naming the file (exit 2); two options reading
    stdin at once are refused the same way; neither creates the store."""
    store = tmp_path / "store"
    missing = run_braid("doc", "init", "--data", str(store), "chat", "doc", "--redo", "@nope.json")
    assert missing.returncode == 2
    code = errors.INVALID_SETTING.code
    assert missing.stderr.startswith(f"error {code} INVALID_SETTING: cannot read --redo from nope")
    twice = run_braid("doc", "init", "--data", str(store), "chat", "doc", "--redo", "-",
                      "--undo", "-", stdin="{}")  # fmt: skip
    assert twice.returncode == 2
    assert "--redo and --undo both read stdin" in twice.stderr
    assert not store.exists()
