"""`braid bench`: benchmarks (they print figures and write JSON; they are not tests).

`braid bench engine`, `server`, `core` and `transfer` take their options from
the benchmark module's `add_arguments` and run its `main(args)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from braid.bench import core, engine, server, transfer

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    bench = subparsers.add_parser(
        "bench", help="run benchmarks", description="Run braid's benchmarks."
    )
    commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    for name, module, text in (
        ("engine", engine, "acknowledged patches/s of the durable engine against SQLite"),
        ("server", server, "patches and gets/s through the client against braid serve"),
        ("core", core, "committed entries/s and CPU per entry of the pure Raft core"),
        ("transfer", transfer, "documents/s and MB/s of braid export and braid import"),
    ):
        parser = commands.add_parser(
            name, help=text, description=(module.__doc__ or "").split("\n\n")[0]
        )
        module.add_arguments(parser)
        parser.set_defaults(handler=module.main)
