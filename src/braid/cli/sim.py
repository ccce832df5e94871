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
from typing import TYPE_CHECKING

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


def run(args: argparse.Namespace) -> int:
    console = Console()
    broken = raft_cluster.Broken(args.broken) if args.broken else None
    if args.groups is not None:
        return run_hosts(args, console, broken)
    if args.seed is not None:
        result = raft_cluster.run_seed(args.seed, broken, trace=True, failover_only=args.failover)
        lines = result.trace if args.trace else result.trace[-40:]
        if result.failure is not None or args.trace:
            console.print("\n".join(lines), markup=False, highlight=False)
        if result.failure is None:
            console.print(f"seed {args.seed}: every checker green")
            return 0
        console.print(f"seed {args.seed} failed ({result.checker}): {result.failure}")
        return 1
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("seeds", total=args.seeds)
        summary = raft_cluster.sweep(
            range(args.seeds),
            broken,
            lambda seed: progress.advance(task),
            failover_only=args.failover,
        )
    figures = ", ".join(f"{name} {count:,}" for name, count in sorted(summary.figures.items()))
    speed = summary.simulated_seconds_per_wall_second
    console.print(
        f"{summary.seeds:,} seeds in {summary.wall_seconds:.1f} s "
        f"({speed:,.0f} simulated seconds per second): {figures}",
        markup=False,
    )
    for line in summary.failover_lines():
        console.print(line, markup=False)
    failed = summary.failed
    if failed is None:
        console.print("every checker green on every seed")
        return 0
    replay = raft_cluster.run_seed(failed.seed, broken, trace=True, failover_only=args.failover)
    console.print("\n".join(replay.trace[-40:]), markup=False, highlight=False)
    console.print(f"seed {failed.seed} failed ({failed.checker}): {failed.failure}", markup=False)
    console.print(f"replay: braid sim --seed {failed.seed} --trace", markup=False)
    return 1


def run_hosts(
    args: argparse.Namespace, console: Console, broken: raft_cluster.Broken | None
) -> int:
    """`braid sim --groups G`: the multi-Raft host simulator."""
    broken_host = host_cluster.BrokenHost(args.broken_host) if args.broken_host else None
    groups: int = args.groups
    failover: bool = args.failover
    if args.seed is not None:
        result = host_cluster.run_seed(
            args.seed,
            groups=groups,
            broken=broken,
            broken_host=broken_host,
            trace=True,  # a failure prints its trace's tail
            failover_only=failover,
        )
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
        summary = host_cluster.sweep(
            range(args.seeds),
            groups=groups,
            broken=broken,
            broken_host=broken_host,
            failover_only=failover,
            progress=lambda seed: progress.advance(task),
        )
    figures = ", ".join(f"{name} {count:,}" for name, count in sorted(summary.figures.items()))
    console.print(
        f"{summary.seeds:,} seeds of 3 hosts x {args.groups} groups in "
        f"{summary.wall_seconds:.1f} s: {figures}",
        markup=False,
    )
    for line in summary.failover_lines():
        console.print(line, markup=False)
    failed = summary.failed
    if failed is None:
        console.print("every checker green on every seed")
        return 0
    replay = host_cluster.run_seed(
        failed.seed,
        groups=groups,
        broken=broken,
        broken_host=broken_host,
        trace=True,
        failover_only=failover,
    )
    console.print("\n".join(replay.trace[-40:]), markup=False, highlight=False)
    console.print(f"seed {failed.seed} failed ({failed.checker}): {failed.failure}", markup=False)
    console.print(f"replay: braid sim --groups {args.groups} --seed {failed.seed} --trace")
    return 1
