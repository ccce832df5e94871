"""`braid demo` as a user runs it: a real process that SIGKILLs a real writer process.

Proves that the demo completes in seconds, reports zero lost acknowledged writes after the
kill and reopen, checks history operations, and removes its temporary store.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import braid
from braid import Update
from braid.cli import demo, demo_child

DEMO_SECONDS_MAX = 60


def run_demo(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m braid.cli.main demo` with its temporary files under tmp_path."""
    environment = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "braid.cli.main", "demo", *arguments],
        capture_output=True,
        text=True,
        timeout=DEMO_SECONDS_MAX,
        env=environment,
        check=False,
    )


def test_demo_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """The human-readable run exits 0, kills the writer, and reports 0 lost writes of a
    positive number acknowledged; its temporary store is gone afterwards."""
    result = run_demo(tmp_path, "--seed", "11")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "killed with SIGKILL" in result.stdout
    match = re.search(r"PASS: (\d+) lost writes of (\d+) acknowledged", result.stdout)
    assert match is not None, result.stdout
    assert int(match.group(1)) == 0
    assert int(match.group(2)) > 0
    assert "FAILED" not in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_demo_json_summary(tmp_path: Path) -> None:
    """The --json run accounts for every acknowledged write as present, and every history
    check (headpatch, rewind, snapshot, refused rewind past the snapshot) passes."""
    result = run_demo(tmp_path, "--json", "--writers", "3", "--documents", "5", "--seed", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    assert summary["killed"] is True
    assert summary["acked"] > 0
    assert summary["present"] == summary["acked"]
    assert summary["lost"] == 0
    assert summary["wrong_content"] == []
    assert summary["log_before_open"].split()[0] in ("clean", "torn")
    steps = [step["step"].split()[0] for step in summary["steps"]]
    assert steps == ["headpatch", "rewind", "snapshot", "rewind"]
    assert all(step["ok"] for step in summary["steps"])
    assert list(tmp_path.iterdir()) == []


async def test_the_checker_catches_lost_and_wrong_writes(tmp_path: Path) -> None:
    """The demo's verification has teeth: an acknowledged seq above the stored head and an
    acknowledged document that is missing count as lost, and a document whose content is
    not what its deltas should make is reported, so the run would fail."""
    async with braid.open(tmp_path) as store:
        updates, _ = demo_child.make_updates(0, {}, 1, 3)
        await store.initialize(demo_child.document_key(0), updates[0])
        await store.patch(demo_child.document_key(0), updates[1:])
        await store.initialize(demo_child.document_key(1), Update(1, 1, redo='{"forged":1}'))
    run = demo.ChildRun(acked={0: [1, 2, 3, 4], 1: [1], 2: [1, 2]}, ack_count=7, killed=True)
    result = await demo.verify(tmp_path, run, documents=3)
    assert (result.acked, result.present, result.lost) == (7, 4, 3)
    assert result.wrong_content == ["demo/doc-001 at seq 1"]
    assert result.heads == {0: 3, 1: 1}
    assert all(ok for *_, ok in result.steps)
    assert not result.ok
