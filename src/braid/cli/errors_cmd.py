"""`braid errors`: the error catalog — the whole table, one code explained, or the Markdown.

`braid errors --markdown` is what `make docs` writes to docs/errors.md; a test keeps the two
equal.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from braid.cli.common import EXIT_OK, EXIT_USAGE, add_json_flag, print_json
from braid.errors import ErrorInfo, catalog, lookup, render_markdown

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "errors",
        help="explain braid's error codes",
        description="With no CODE, list every error code; with a CODE (number or name), "
        "explain it: what it means, whether a retry can succeed, whether the user can fix it.",
    )
    parser.add_argument("code", nargs="?", help="an error code such as 2003, or its name")
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "--markdown", action="store_true", help="print the catalog as docs/errors.md"
    )
    add_json_flag(output)
    parser.set_defaults(handler=handle)


def find(text: str) -> ErrorInfo | None:
    """The entry for a code number or a name (any case)."""
    if text.strip().isdigit():
        return lookup(int(text))
    wanted = text.strip().upper()
    return next((info for info in catalog() if info.name == wanted), None)


def as_dict(info: ErrorInfo) -> dict[str, object]:
    return {
        "code": info.code,
        "name": info.name,
        "description": info.description,
        "retryable": info.retryable,
        "user_fixable": info.user_fixable,
    }


def _yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def handle(args: argparse.Namespace) -> int:
    if args.markdown:
        if args.code is not None:
            print("braid errors: --markdown prints the whole catalog; drop CODE", file=sys.stderr)
            return EXIT_USAGE
        sys.stdout.write(render_markdown())
        return EXIT_OK
    if args.code is None:
        return _show_catalog(args.json)
    info = find(args.code)
    if info is None:
        print(
            f"braid errors: unknown error code {args.code!r}; `braid errors` lists them all",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.json:
        print_json(as_dict(info))
        return EXIT_OK
    print(f"{info.code} {info.name}")
    print(f"  {info.description}")
    print(f"  retryable: {_yes_no(info.retryable)}")
    print(f"  user can fix: {_yes_no(info.user_fixable)}")
    return EXIT_OK


def _show_catalog(as_json: bool) -> int:
    entries = catalog()
    if as_json:
        print_json([as_dict(info) for info in entries])
        return EXIT_OK
    table = Table(
        title="braid error codes (retry: a retry can succeed; user: the user can fix it)",
        show_lines=True,
    )
    table.add_column("code", justify="right")
    table.add_column("name", no_wrap=True)
    table.add_column("retry")
    table.add_column("user")
    table.add_column("description", overflow="fold")
    for info in entries:
        table.add_row(
            str(info.code),
            info.name,
            _yes_no(info.retryable),
            _yes_no(info.user_fixable),
            Text(info.description),
        )
    Console(highlight=False).print(table)
    return EXIT_OK
