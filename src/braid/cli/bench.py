"""`braid bench`: benchmarks (they print figures and write JSON; they are not tests).

`braid bench engine` takes its options from `braid.bench.engine.add_arguments` and runs
`braid.bench.engine.main(args)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.bench import engine

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="run benchmarks", description="Run braid's benchmarks."
    )
    commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    parser = commands.add_parser(
        "engine",
        help="acknowledged patches/s of the durable engine against SQLite",
        description=(engine.__doc__ or "").split("\n\n")[0],
    )
    engine.add_arguments(parser)
    parser.set_defaults(handler=engine.main)
