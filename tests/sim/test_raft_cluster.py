"""The Raft group simulator (braid.sim.raft_cluster): replicas of the pure core over a lossy,
partitioned network and slow disks, crashed, restarted and paused, checked after every event.

Proves: on the default fault mix the checkers stay green over many seeds while the faults
really happen (elections, crashes, partitions, pauses, lost messages, acknowledged entries);
each deliberately broken core is caught within 500 seeds, by the checker that should catch
it; and a seed replays exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from braid.sim import raft_cluster
from braid.sim.raft_cluster import TICK_SECONDS, Broken, main, run_seed

CI_SEEDS = 60
SLOW_SEEDS = 1_000
BROKEN_SEEDS = 500
# Each broken core, and the checkers that may be the first to see it.
CAUGHT_BY = {
    Broken.COMMIT_ALONE: {"leader completeness", "acknowledged entry lost", "state-machine safety"},
    Broken.DOUBLE_VOTE: {"election safety", "leader completeness", "state-machine safety"},
    Broken.STALE_LEASE: {"lease safety"},
    Broken.ACK_UNDURABLE: {
        "leader completeness",
        "acknowledged entry lost",
        "state-machine safety",
    },
}


def sweep(seeds: range, broken: Broken | None = None) -> tuple[list[str], dict[str, int]]:
    failures: list[str] = []
    figures: dict[str, int] = {}
    for seed in seeds:
        result = run_seed(seed, broken)
        for name, count in result.figures.items():
            figures[name] = figures.get(name, 0) + count
        if result.failure is not None:
            failures.append(f"seed {seed}: {result.failure} ({result.checker})")
            if broken is not None:
                break
    return failures, figures


def test_the_default_fault_mix_keeps_every_promise() -> None:
    """Sixty seeds, every checker green, and the faults and the work really happened:
    elections, crashes, power cuts, partitions, pauses, transfers, compactions and snapshots
    installed by followers behind a compacted leader, hosts lost for good and replaced by
    empty replicas through two membership changes."""
    failures, figures = sweep(range(CI_SEEDS))
    assert not failures, failures[0]
    reached = {
        "elections": 20,
        "crashes": 20,
        "power cuts": 20,
        "partitions": 20,
        "pauses": 20,
        "transfers": 20,
        "compactions": 20,
        "snapshots installed": 5,  # a follower behind a compacted leader: rarer
        "hosts replaced": 5,  # removed from the group, a new empty replica added
    }
    for figure, least in reached.items():
        assert figures.get(figure, 0) >= least, (figure, figures)
    assert figures["acknowledged"] > 100 * CI_SEEDS, figures
    assert figures["commits after faults"] > 10 * CI_SEEDS, figures


@pytest.mark.parametrize("broken", list(CAUGHT_BY), ids=[variant.value for variant in CAUGHT_BY])
def test_each_broken_core_is_caught_within_500_seeds(broken: Broken) -> None:
    """A leader that commits on its own vote, or counts its own entry before it is durable; a
    replica that votes twice in a term; a lease that never lapses; a follower that
    acknowledges before its write is durable: each is found, by a checker that names what it
    broke (the durability bugs show after a power cut, which only durable data survives)."""
    for seed in range(BROKEN_SEEDS):
        result = run_seed(seed, broken)
        if result.failure is not None:
            assert result.checker in CAUGHT_BY[broken], result.failure
            return
    pytest.fail(f"{broken.value} survived {BROKEN_SEEDS} seeds")


def test_a_seed_replays_exactly() -> None:
    """The same seed gives the same trace, event for event, and the same figures."""
    lines = 0
    for seed in (3, 41):
        first, second = run_seed(seed, trace=True), run_seed(seed, trace=True)
        assert first.trace == second.trace
        assert first.figures == second.figures
        lines += len(first.trace)
    assert lines > 20


@pytest.mark.slow
def test_a_thousand_seeds_keep_every_promise() -> None:
    """The long sweep (`make test-slow`)."""
    failures, _ = sweep(range(SLOW_SEEDS))
    assert not failures, failures[0]


def test_the_readme_tells_the_truth_about_the_simulator() -> None:
    """The README's seed counts are this suite's, and its command lines run: a seed replayed
    with --trace prints its events and exits 0."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"CI runs {CI_SEEDS} seeds, `make test-slow` {SLOW_SEEDS:,}" in readme
    assert "braid sim --seed 41 --trace" in readme
    assert main(["--seed", "41", "--trace"]) == 0


def test_failover_after_a_leader_crash_is_within_the_target() -> None:
    """On a healthy network with only the leader's host crashing (`braid sim --failover`),
    in simulated time with the default timings (a 20 ms tick, election timeout 10..20
    ticks): the median failover, from the crash to the next entry a new leader
    acknowledges, is at most 0.5 s and the worst at most 1 s (the issue's target). This is
    simulated time, decided by the seeds: no wall clock is involved."""
    summary = raft_cluster.sweep(range(60), failover_only=True)
    assert summary.failed is None, summary.failed.failure if summary.failed else ""
    seconds = sorted(ticks * TICK_SECONDS for ticks in summary.failovers)
    assert len(seconds) >= 100, len(seconds)
    assert seconds[len(seconds) // 2] <= 0.5, seconds[len(seconds) // 2]
    assert seconds[-1] <= 1.0, seconds[-1]
