"""`braid bench core` (braid.bench.core): the pure Raft core's throughput benchmark runs end
to end through the real command and reports what it measured.

Proves: every batch size commits exactly the entries proposed (the figures are about real
commits), proposals made together share appends (fewer messages per entry as the batch
grows: 4 per entry one at a time, 1/16 at 64), and the JSON carries the figures printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from braid.bench.core import BATCHES, measure, measure_hosts, measure_idle
from braid.sim.raft_cluster import TICK_SECONDS


def test_each_batch_commits_every_entry_and_batching_shares_messages() -> None:
    """measure() asserts the commit count itself; messages per entry fall with the batch."""
    rows = [measure(batch, 640) for batch in BATCHES]
    per_entry = [row["messages_per_committed_entry"] for row in rows]
    assert per_entry == sorted(per_entry, reverse=True)
    assert per_entry[0] == 4.0  # one append and its reply per follower (commits ride later)
    assert per_entry[-1] <= 0.25


def test_the_command_prints_and_writes_its_figures(tmp_path: Path) -> None:
    """`braid bench core` exits 0, prints its table and idle figure, and writes every batch
    size's figures to the JSON file (an idle group: two heartbeats and two replies a tick)."""
    out = tmp_path / "core.json"
    result = subprocess.run(
        [sys.executable, "-m", "braid.cli.main", "bench", "core", "--entries", "640",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "CPU us/entry" in result.stdout and "idle group" in result.stdout
    report = json.loads(out.read_text())
    assert [row["batch"] for row in report["results"]] == list(BATCHES)
    assert all(row["cpu_us_per_committed_entry"] > 0 for row in report["results"])
    assert report["idle_messages_per_tick_per_group"] == 4.0
    assert [row["batch"] for row in report["hosts"]] == list(BATCHES)
    assert report["idle_hosts"]["quiet_replicas"] == 3 * 256


def test_three_hosts_commit_every_entry_and_idle_partitions_send_no_group_message() -> None:
    """Through three multi-Raft hosts, every proposed entry commits (measure_hosts asserts
    it), batching shares envelopes, and 256 quiet partitions per host cost envelopes between
    the hosts only: not one group message (the issue's idle target)."""
    rows = [measure_hosts(batch, 640, partitions=64) for batch in BATCHES]
    per_entry = [row["envelopes_per_committed_entry"] for row in rows]
    assert per_entry == sorted(per_entry, reverse=True) and per_entry[-1] < 1
    idle = measure_idle(ticks=100)
    assert idle["quiet_replicas"] == 3 * 256
    assert idle["group_messages_per_second"] == 0
    # One beat each way per host pair at most every other tick: 3 per tick, 150 per second.
    assert 0 < idle["envelopes_per_second"] <= 3 / TICK_SECONDS
