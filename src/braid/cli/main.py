"""The `braid` entry point: builds the argument parser and dispatches to a subcommand.

Each subcommand module registers itself explicitly here (no import side effects) and sets a
`handler(args) -> int` default. Any BraidError a handler raises is printed as
`error <code> <NAME>: <detail>` plus the catalog description on stderr, never as a
traceback, and the command exits with the handler's `error_exit` status (1 unless the
subcommand says otherwise).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from braid import __version__
from braid.cli import bench, demo, doc, errors_cmd, protocol, serve, verify, wal
from braid.cli.common import EXIT_ERROR, print_error
from braid.errors import BraidError

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="braid",
        description="braid: a durable store for document logs. "
        "`braid COMMAND --help` explains each command.",
        epilog="Exit status: 0 success; 1 a braid error, printed as `error CODE NAME: detail` "
        "(`braid errors CODE` explains it); 2 bad usage. `braid verify`, `braid wal verify` "
        "and `braid demo` document their own statuses.",
    )
    parser.add_argument("--version", action="version", version=f"braid {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    doc.register(subparsers)
    errors_cmd.register(subparsers)
    protocol.register(subparsers)
    wal.register(subparsers)
    verify.register(subparsers)
    serve.register(subparsers)
    demo.register(subparsers)
    bench.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit status (argparse exits itself on --help/bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        status = args.handler(args)
    except BraidError as error:
        print_error(error)
        return int(getattr(args, "error_exit", EXIT_ERROR))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    assert isinstance(status, int), f"{args.command} handler returned {status!r}"
    return status


if __name__ == "__main__":
    sys.exit(main())
