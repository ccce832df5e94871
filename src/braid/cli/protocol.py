"""`braid protocol`: the wire protocol's messages, or its whole reference page.

`braid protocol` lists every message (tag, group, name, fields with types and defaults);
`braid protocol --markdown` prints the page published as docs/protocol.md, and a test keeps
the two equal. Both are rendered from the code by `braid.cli.protocol_page`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from braid.cli.common import EXIT_OK
from braid.cli.protocol_page import render_markdown, render_summary

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "protocol",
        help="describe braid's wire protocol",
        description="List every message of braid's wire protocol with its tag and fields; "
        "with --markdown, print the whole reference page (frame layout, handshake, "
        "versioning rule, messages) published as docs/protocol.md.",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="print the reference page as docs/protocol.md"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    sys.stdout.write(render_markdown() if args.markdown else render_summary())
    return EXIT_OK
