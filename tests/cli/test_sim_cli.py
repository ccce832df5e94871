"""`braid sim` through the real command: a sweep is green and says so, a broken core's sweep
fails naming the checker and how to replay the seed, and one seed replays with its trace."""

from __future__ import annotations

import subprocess

from tests.support import cli


def braid(*arguments: str) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py); the simulator needs no secret."""
    return cli.run_braid(*arguments, secret=None)


def test_a_sweep_is_green_and_prints_its_figures() -> None:
    """Eight seeds: exit 0, the seed count, the speed and the all-green verdict printed."""
    result = braid("sim", "--seeds", "8")
    assert result.returncode == 0, result.stderr
    assert "8 seeds in" in result.stdout and "simulated seconds per second" in result.stdout
    assert "every checker green on every seed" in result.stdout


def test_a_broken_core_fails_naming_the_checker_and_the_replay() -> None:
    """A lease that never lapses: exit 1, the lease checker named, the replay line given."""
    result = braid("sim", "--seeds", "100", "--broken", "stale-lease")
    assert result.returncode == 1
    assert "(lease safety)" in result.stdout
    assert "replay: braid sim --seed" in result.stdout


def test_one_seed_replays_with_its_trace() -> None:
    """The same seed twice prints the same trace, with its elections in it."""
    first, second = braid("sim", "--seed", "41", "--trace"), braid("sim", "--seed", "41", "--trace")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout and "leads term" in first.stdout


def test_the_host_simulator_runs_from_the_command_and_a_broken_host_fails() -> None:
    """`braid sim --groups 8`: green on three seeds with failover lines for quiet groups;
    with a host that serves reads from any replica without a lease, exit 1 naming the
    stale-read checker and the replay command."""
    green = braid("sim", "--groups", "8", "--seeds", "3")
    assert green.returncode == 0, green.stderr
    assert "3 hosts x 8 groups" in green.stdout and "every checker green" in green.stdout
    broken = braid("sim", "--groups", "8", "--seeds", "20", "--broken-host", "read-anywhere")
    assert broken.returncode == 1
    assert "(stale read)" in broken.stdout and "replay: braid sim --groups 8" in broken.stdout
