"""`braid placement`: the partition map a membership file gives, and its figures.

It prints, per host, its replicas and preferred leaders against its fair share and how many
distinct hosts it shares partitions with against the most the zones allow; then the
spread (min/max against fair) and the partitions with two replicas in one zone where zones
allowed otherwise. `--add-host ID:ZONE` / `--remove-host ID` show the placement the change
gives, computed from the current one, and how many replicas it moves against the fewest
any balanced placement needs. `--map` adds the map itself; `--json` prints everything,
map included, as one JSON document. A bad file or option exits 2 (INVALID_SETTING).
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from braid.cli.common import EXIT_OK, add_json_flag, print_json
from braid.core.placement import (
    Figures,
    Placement,
    minimum_moves,
    partition_range,
    place,
    replicas_moved,
)
from braid.core.placement import figures as placement_figures
from braid.membership import Membership, load_membership

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "placement",
        help="show the partition map a membership file gives, and its balance",
        description="Place the partitions of a membership file (TOML: `partitions`, "
        "`replicas`, [[host]] tables of id, address, zone) on its hosts by the rainbow "
        "stripe, and print replicas and leaders per host against their fair share, distinct "
        "peers per host and zone violations. With --add-host or --remove-host, also the "
        "placement after that change and the replicas it moves against the minimum.",
    )
    parser.add_argument(
        "--config", type=Path, required=True, metavar="FILE", help="the membership file (TOML)"
    )
    change = parser.add_mutually_exclusive_group()
    change.add_argument(
        "--add-host",
        type=_host_and_zone,
        metavar="ID:ZONE",
        help="show the placement after adding this host",
    )
    change.add_argument(
        "--remove-host", metavar="ID", help="show the placement after removing this host"
    )
    parser.add_argument(
        "--map", action="store_true", help="also print each partition's hash range and replicas"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=handle)


def _host_and_zone(text: str) -> tuple[str, str]:
    host_id, separator, zone = text.partition(":")
    if not separator or not host_id or not zone:
        raise argparse.ArgumentTypeError(f"expected ID:ZONE, got {text!r}")
    return host_id, zone


def handle(args: argparse.Namespace) -> int:
    membership = load_membership(args.config)
    changed: Membership | None = None
    if args.add_host is not None:
        changed = membership.with_host(*args.add_host)
    elif args.remove_host is not None:
        changed = membership.without_host(args.remove_host)
    current = place(membership.hosts(), membership.partitions, membership.replicas)
    after = None
    if changed is not None:
        after = place(changed.hosts(), changed.partitions, changed.replicas, previous=current)
    if args.json:
        print_json(_as_json(current, after, changed, show_map=True))
        return EXIT_OK
    console = Console(highlight=False)
    _print_placement(console, "current placement", current, show_map=args.map)
    if after is not None and changed is not None:
        change = f"adding {args.add_host[0]}" if args.add_host else f"removing {args.remove_host}"
        _print_placement(console, f"after {change}", after, show_map=args.map)
        moved, minimum = replicas_moved(current, after), minimum_moves(current, changed.hosts())
        console.print(f"replicas moved: {moved} (minimum {minimum}{_ratio(moved, minimum)})")
    return EXIT_OK


def _ratio(moved: int, minimum: int) -> str:
    return f", {moved / minimum:.2f}x" if minimum else ""


def _number(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"


def _print_placement(console: Console, title: str, placement: Placement, *, show_map: bool) -> None:
    figures = placement_figures(placement)
    zones = len({host.zone for host in placement.hosts})
    heading = (
        f"{title}: {len(placement.hosts)} hosts in {zones} zones, "
        f"{placement.partitions} partitions × {placement.replicas} replicas"
    )
    table = Table(title=heading, title_justify="left")
    for column in ("host", "zone", "replicas", "fair", "leaders", "fair", "peers", "wanted"):
        table.add_column(column, justify="left" if column in ("host", "zone") else "right")
    for row in figures.hosts:
        table.add_row(
            row.id,
            row.zone,
            str(row.replicas),
            _number(row.replicas_fair),
            str(row.leaders),
            _number(row.leaders_fair),
            str(row.peers),
            str(row.peers_wanted),
        )
    console.print(table)
    for line in summary(figures):
        console.print(line)
    if show_map:
        for partition, members in enumerate(placement.assignment):
            first, end = partition_range(partition, placement.partitions)
            console.print(f"{partition:>5}  {first:016x}-{end - 1:016x}  {' '.join(members)}")


def summary(figures: Figures) -> list[str]:
    """The spread in a few lines: each figure's min/max against its fair range."""
    rows = figures.hosts
    off_replicas = sum(1 for r in rows if abs(r.replicas - r.replicas_fair) > 1)
    off_leaders = sum(1 for r in rows if abs(r.leaders - r.leaders_fair) > 1)
    short = sum(1 for r in rows if r.peers < r.peers_wanted)
    return [
        f"replicas per host: {min(r.replicas for r in rows)}-{max(r.replicas for r in rows)}, "
        f"{off_replicas} hosts more than 1 from fair",
        f"leaders per host: {min(r.leaders for r in rows)}-{max(r.leaders for r in rows)}, "
        f"{off_leaders} hosts more than 1 from fair",
        f"distinct peers per host: {min(r.peers for r in rows)}-{max(r.peers for r in rows)}, "
        f"{short} hosts short of the most the zones allow",
        f"zone violations: {figures.zone_violations} partitions",
    ]


def _as_json(
    current: Placement, after: Placement | None, changed: Membership | None, *, show_map: bool
) -> dict[str, Any]:
    document: dict[str, Any] = {"current": _placement_json(current, show_map)}
    if after is not None and changed is not None:
        document["after"] = _placement_json(after, show_map)
        document["replicas_moved"] = replicas_moved(current, after)
        document["replicas_moved_minimum"] = minimum_moves(current, changed.hosts())
    return document


def _placement_json(placement: Placement, show_map: bool) -> dict[str, Any]:
    figures = placement_figures(placement)
    document: dict[str, Any] = {
        "partitions": placement.partitions,
        "replicas": placement.replicas,
        "zone_violations": figures.zone_violations,
        "hosts": [
            {
                "id": row.id,
                "zone": row.zone,
                "replicas": row.replicas,
                "replicas_fair": float(row.replicas_fair),
                "leaders": row.leaders,
                "leaders_fair": float(row.leaders_fair),
                "peers": row.peers,
                "peers_wanted": row.peers_wanted,
            }
            for row in figures.hosts
        ],
    }
    if show_map:
        document["map"] = [list(members) for members in placement.assignment]
    return document
