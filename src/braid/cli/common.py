"""What every subcommand shares: exit statuses, error printing, JSON output, store opening.

Errors are printed in one shape, `error <code> <NAME>: <detail>` followed by the catalog's
description, so a person can look the code up (`braid errors CODE`) and a script can match it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeAlias

import braid
from braid.errors import BraidError
from braid.storage.api import DataService
from braid.storage.router import Store
from braid.storage.scan import APPLIED_FILE

if TYPE_CHECKING:
    # argparse's subparsers action is generic only to type checkers.
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

Handler = Callable[[argparse.Namespace], int]

EXIT_OK = 0
EXIT_ERROR = 1  # a BraidError: the operation failed with a catalogued code
EXIT_USAGE = 2  # argparse's own status for bad arguments; also an unknown error code

APPLIED_STATE_NAME = APPLIED_FILE  # a store directory always holds this file
WAL_DIRECTORY_NAME = "wal"


def format_error(error: BraidError) -> str:
    """The two lines printed for a BraidError: the specific detail, then the catalog text."""
    info = error.info
    headline = f"error {info.code} {info.name}: {error.detail or info.description}"
    if not error.detail:
        return headline
    return f"{headline}\n  {info.description}"


def print_error(error: BraidError, stream: TextIO | None = None) -> None:
    print(format_error(error), file=stream or sys.stderr)


def print_json(value: Any) -> None:
    """Machine output: one JSON document on stdout."""
    print(json.dumps(value, ensure_ascii=False, sort_keys=True))


def add_json_flag(parser: argparse._ActionsContainer) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON instead of text"
    )


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number greater than 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
    return value


def run_on_store(
    directory: str,
    action: Callable[[Store], Awaitable[int]],
    *,
    create: bool,
    read_only: bool = False,
) -> int:
    """Open the embedded store in `directory`, run `action` on it, close it. A read-only
    command opens it read-only: it writes nothing, not even a repair."""
    path = Path(directory)

    async def opened() -> int:
        async with braid.open(path, create=create, read_only=read_only) as store:
            return await action(store)

    return asyncio.run(opened())


def run_on_server(
    address: str,
    secret_file: Path | None,
    cluster: str,
    action: Callable[[DataService], Awaitable[int]],
    tls_ca: Path | None = None,
) -> int:
    """Connect to the node at `address`, run `action` through the client, disconnect."""
    from braid.cli.serve import load_secret

    secret = load_secret(secret_file)
    tls = ssl.create_default_context(cafile=str(tls_ca)) if tls_ca is not None else None

    async def connected() -> int:
        async with braid.connect([address], secret=secret, cluster=cluster, tls=tls) as client:
            return await action(client)

    return asyncio.run(connected())


def pretty_json(text: str) -> str:
    """A JSON text indented for people (keys in their stored order)."""
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
