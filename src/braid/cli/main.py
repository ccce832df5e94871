"""The `braid` entry point: builds the argument parser and dispatches to a subcommand.

Each subcommand module registers itself explicitly here (no import side effects) and sets a
`handler(args) -> int` default. Any BraidError a handler raises is printed as
`error <code> <NAME>: <detail>` plus the catalog description on stderr (under `--json`, as
one JSON object), never as a traceback, and the command exits 2 for a bad setting
(INVALID_SETTING) and otherwise with the handler's `error_exit` status (1 unless the
subcommand says otherwise). Under `--json`, argparse's usage errors are JSON too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from braid import __version__
from braid.cli import (
    bench,
    demo,
    doc,
    errors_cmd,
    placement,
    protocol,
    secret,
    serve,
    sim,
    transfer,
    verify,
    wal,
)
from braid.cli import status as status_command
from braid.cli.common import EXIT_ERROR, JsonErrorParser, exit_status, print_error
from braid.errors import BraidError

EXIT_INTERRUPTED = 130


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    """The whole command line; with `json_errors`, usage errors print as JSON."""
    parser_class = JsonErrorParser if json_errors else argparse.ArgumentParser
    parser = parser_class(
        prog="braid",
        description="braid: a durable store for document logs. "
        "`braid COMMAND --help` explains each command.",
        epilog="Exit status: 0 success; 1 a braid error, printed as `error CODE NAME: detail` "
        "(`braid errors CODE` explains it; with --json, a JSON object on stderr); 2 bad "
        "usage (a missing, malformed or contradictory option). `braid verify`, "
        "`braid wal verify` and `braid demo` document their own statuses.",
    )
    parser.add_argument("--version", action="version", version=f"braid {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doc.register(subparsers)
    errors_cmd.register(subparsers)
    protocol.register(subparsers)
    wal.register(subparsers)
    verify.register(subparsers)
    serve.register(subparsers)
    status_command.register(subparsers)
    transfer.register(subparsers)
    secret.register(subparsers)
    demo.register(subparsers)
    bench.register(subparsers)
    placement.register(subparsers)
    sim.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (argparse exits itself on --help/bad usage)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(json_errors="--json" in arguments).parse_args(arguments)
    try:
        status = args.handler(args)
    except BraidError as error:
        print_error(error, as_json=bool(getattr(args, "json", False)))
        return exit_status(error, int(getattr(args, "error_exit", EXIT_ERROR)))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    assert isinstance(status, int), f"{args.command} handler returned {status!r}"
    return status


if __name__ == "__main__":
    sys.exit(main())
