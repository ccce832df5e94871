"""`braid sim`: the Raft group simulator (`braid.sim.raft_cluster`) from the command line.

`braid sim --seeds 1000` runs seeds 0..999 with a progress bar and prints the fault mix seen,
the failover distribution and the speed (simulated seconds per wall second); the first seed
that fails prints itself, the checker that failed and the tail of its trace, and the command
exits 1. `braid sim --seed N [--trace]` replays one seed exactly. `--failover` runs only the
leader's host crashing on a healthy network: the failover figure alone.

`--groups G` runs the multi-Raft host simulator instead (`braid.sim.host_cluster`): three
hosts, each holding a replica of G groups, most of them idle and so quiet; the same
checkers per group, failover figures for busy and quiet groups, and what the hosts sent.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.progress import Progress

from braid.sim import host_cluster, raft_cluster

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "sim",
        help="run the Raft group simulator over many seeds, or replay one",
        description=(__doc__ or "").split("\n\n")[0],
    )
    raft_cluster.add_arguments(parser)
    parser.add_argument(
        "--groups",
        type=int,
        help="simulate three multi-Raft hosts holding this many groups (idle ones go quiet)",
    )
    parser.add_argument(
        "--broken-host",
        choices=[variant.value for variant in host_cluster.BrokenHost],
        help="with --groups: a deliberately broken host (to see a checker fail)",
    )
    parser.set_defaults(handler=run)


class _Result(Protocol):
    @property
    def trace(self) -> list[str]: ...
    @property
    def failure(self) -> str | None: ...
    @property
    def checker(self) -> str | None: ...
    @property
    def seed(self) -> int: ...


class _Summary(Protocol):
    @property
    def seeds(self) -> int: ...
    @property
    def wall_seconds(self) -> float: ...
    @property
    def figures(self) -> Counter[str]: ...
    @property
    def failed(self) -> _Result | None: ...
    def failover_lines(self) -> list[str]: ...


def run(args: argparse.Namespace) -> int:
    """One simulator or the other (`--groups`), replayed on one seed or swept over many,
    reported the same way."""
    broken = raft_cluster.Broken(args.broken) if args.broken else None
    failover: bool = args.failover
    replay: Callable[[int], _Result]
    sweep: Callable[[Callable[[int], None]], _Summary]
    if args.groups is None:

        def replay(seed: int) -> _Result:
            return raft_cluster.run_seed(seed, broken, trace=True, failover_only=failover)

        def sweep(advance: Callable[[int], None]) -> _Summary:
            seeds = range(args.seeds)
            return raft_cluster.sweep(seeds, broken, advance, failover_only=failover)

        def headline(summary: _Summary) -> str:
            speed = summary.simulated_seconds_per_wall_second  # type: ignore[attr-defined]
            return (
                f"{summary.seeds:,} seeds in {summary.wall_seconds:.1f} s "
                f"({speed:,.0f} simulated seconds per second)"
            )

        command = "braid sim"
    else:
        groups: int = args.groups
        broken_host = host_cluster.BrokenHost(args.broken_host) if args.broken_host else None

        def replay(seed: int) -> _Result:
            return host_cluster.run_seed(
                seed, groups=groups, broken=broken, broken_host=broken_host, trace=True,
                failover_only=failover,
            )  # fmt: skip

        def sweep(advance: Callable[[int], None]) -> _Summary:
            return host_cluster.sweep(
                range(args.seeds), groups=groups, broken=broken, broken_host=broken_host,
                failover_only=failover, progress=advance,
            )  # fmt: skip

        def headline(summary: _Summary) -> str:
            return (
                f"{summary.seeds:,} seeds of 3 hosts x {groups} groups in "
                f"{summary.wall_seconds:.1f} s"
            )

        command = f"braid sim --groups {groups}"

    console = Console()
    if args.seed is not None:
        result = replay(args.seed)  # traced: a failure prints its trace's tail
        if result.failure is not None or args.trace:
            lines = result.trace if args.trace else result.trace[-40:]
            console.print("\n".join(lines), markup=False, highlight=False)
        if result.failure is None:
            console.print(f"seed {args.seed}: every checker green")
            return 0
        console.print(f"seed {args.seed} failed ({result.checker}): {result.failure}")
        return 1
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("seeds", total=args.seeds)
        summary = sweep(lambda seed: progress.advance(task))
    figures = ", ".join(f"{name} {count:,}" for name, count in sorted(summary.figures.items()))
    console.print(f"{headline(summary)}: {figures}", markup=False)
    for line in summary.failover_lines():
        console.print(line, markup=False)
    failed = summary.failed
    if failed is None:
        console.print("every checker green on every seed")
        return 0
    console.print("\n".join(replay(failed.seed).trace[-40:]), markup=False, highlight=False)
    console.print(f"seed {failed.seed} failed ({failed.checker}): {failed.failure}", markup=False)
    console.print(f"replay: {command} --seed {failed.seed} --trace", markup=False)
    return 1
