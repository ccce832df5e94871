"""`braid doc history` on an embedded store, through the real `braid` command (issue 10):
every retained delta with its seqs, who, request, kind, sizes, redo and undo, as a table
and as JSON; compaction shown; reading creates and changes nothing. (Through a node:
tests/cluster/test_ux_node_history.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from braid import errors
from tests.support import cli
from tests.support.files import tree


def run_braid(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py); an embedded store needs no secret."""
    return cli.run_braid(*argv, secret=None)


def write(store: Path) -> None:
    """chat/doc: seq 1 by alice, seq 2 by bob, seqs 3..5 in one delta with a kind."""
    steps = [
        ("init", "--redo", '{"title":"hi"}', "--who", "alice", "--request", "req-1"),
        ("patch", "--seq", "2", "--redo", '{"n":{"x":1}}', "--undo", '{"n":null}', "--who", "bob"),
        ("patch", "--seq-begin", "3", "--seq-end", "5", "--redo", '{"title":"hé"}',
         "--undo", '{"title":"hi"}'),
    ]  # fmt: skip
    for command, *options in steps:
        result = run_braid("doc", command, "--data", str(store), "chat", "doc", *options)
        assert result.returncode == 0, result.stderr


def test_history_json_lists_every_delta_with_its_fields_and_sizes(tmp_path: Path) -> None:
    """`doc history --json`: exit 0; the head seq, no compaction, and per delta its seqs,
    who, request, kind, UTF-8 sizes of redo and undo and both patches parsed; the store's
    files are unchanged by the read."""
    store = tmp_path / "store"
    write(store)
    before = tree(store)
    result = run_braid("doc", "history", "--data", str(store), "chat", "doc", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert (shown["space"], shown["key"], shown["seq"]) == ("chat", "doc", 5)
    assert (shown["compacted_through"], shown["retained"]) == (0, 3)
    first, second, third = shown["deltas"]
    assert (first["seq_begin"], first["seq_end"], first["who"], first["request"]) == (
        1, 1, "alice", "req-1",
    )  # fmt: skip
    assert (first["redo"], first["redo_bytes"]) == ({"title": "hi"}, 14)
    assert first["undo"] == {"title": None}  # computed: no --undo was given
    assert (second["who"], second["redo"], second["undo"]) == ("bob", {"n": {"x": 1}}, {"n": None})
    assert (third["seq_begin"], third["seq_end"], third["redo"]) == (3, 5, {"title": "hé"})
    assert third["redo_bytes"] == len('{"title":"hé"}'.encode()) == 15
    assert tree(store) == before


def test_history_table_names_seqs_people_and_patches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The text form is a table titled with the key, head seq and delta count, holding a row
    per delta (a range shown as 3..5) with who, request and both patches (on a terminal
    wide enough not to fold them)."""
    monkeypatch.setenv("COLUMNS", "200")
    store = tmp_path / "store"
    write(store)
    result = run_braid("doc", "history", "--data", str(store), "chat", "doc")
    assert result.returncode == 0, result.stderr
    assert "chat/doc at seq 5: 3 deltas retained" in result.stdout
    for text in ("3..5", "alice", "req-1", "bob", '{"n":{"x":1}}', '{"n":null}', '{"title":"hé"}'):
        assert text in result.stdout


def test_history_after_a_snapshot_shows_the_compacted_delta(tmp_path: Path) -> None:
    """After `doc snapshot 2 --history 1`, history shows one "compacted" delta 1..2 holding
    the document at seq 2, compacted_through 2, then the kept delta; `--last 1` shows only
    the newest while still counting every retained delta."""
    store = tmp_path / "store"
    write(store)
    snap = run_braid("doc", "snapshot", "--data", str(store), "chat", "doc", "2", "--history", "1")
    assert snap.returncode == 0, snap.stderr
    result = run_braid("doc", "history", "--data", str(store), "chat", "doc", "--json")
    shown = json.loads(result.stdout)
    folded, kept = shown["deltas"]
    assert (folded["seq_begin"], folded["seq_end"], folded["kind"]) == (1, 2, "compacted")
    assert folded["redo"] == {"title": "hi", "n": {"x": 1}}
    assert (kept["seq_begin"], kept["seq_end"], shown["compacted_through"]) == (3, 5, 2)
    last = run_braid("doc", "history", "--data", str(store), "chat", "doc", "--json", "--last", "1")
    shown_last = json.loads(last.stdout)
    assert [delta["seq_begin"] for delta in shown_last["deltas"]] == [3]
    assert shown_last["retained"] == 2
    text = run_braid("doc", "history", "--data", str(store), "chat", "doc")
    assert "compacted through seq 2" in text.stdout


def test_history_of_a_missing_document_or_store_creates_nothing(tmp_path: Path) -> None:
    """A missing document is DOCUMENT_NOT_FOUND (exit 1); a missing store STORE_NOT_FOUND
    and nothing is created; `--last 0` is bad usage (exit 2)."""
    store = tmp_path / "store"
    write(store)
    missing = run_braid("doc", "history", "--data", str(store), "chat", "other")
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error {errors.DOCUMENT_NOT_FOUND.code} DOCUMENT_NOT_FOUND")
    nowhere = tmp_path / "nowhere"
    absent = run_braid("doc", "history", "--data", str(nowhere), "chat", "doc")
    assert absent.returncode == 1
    assert f"{errors.STORE_NOT_FOUND.code} STORE_NOT_FOUND" in absent.stderr
    assert not nowhere.exists()
    bad = run_braid("doc", "history", "--data", str(store), "chat", "doc", "--last", "0")
    assert bad.returncode == 2
