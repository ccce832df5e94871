"""What every subcommand shares: exit statuses, error printing, JSON output, store opening.

Errors are printed in one shape, `error <code> <NAME>: <detail>` followed by the catalog's
description (and, for a few codes, a hint in command-line terms), so a person can look the
code up (`braid errors CODE`) and a script can match it. Under `--json` an error is one JSON
object on stderr instead: `{"code": …, "name": …, "detail": …}`.

Exit statuses: 2 for bad usage (argparse's own, and INVALID_SETTING: an option that is
missing, malformed or contradicts another), 1 for every other catalogued error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeAlias

import braid
from braid import errors
from braid.client import Client, parse_address
from braid.errors import BraidError
from braid.storage.api import DataService
from braid.storage.durable import ServingNode, serving_node
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


# Hints in the command line's terms, for codes whose catalog text speaks of the API.
CLI_HINTS = {
    errors.HEAD_SEQ_OFF.code: "`braid doc get` shows the head seq; patch with --seq HEAD+1",
}


def format_error(error: BraidError) -> str:
    """The lines printed for a BraidError: the specific detail, then the catalog text and
    the command-line hint for its code, if there is one."""
    info = error.info
    headline = f"error {info.code} {info.name}: {error.detail or info.description}"
    lines = [headline]
    if error.detail:
        lines.append(f"  {info.description}")
    hint = CLI_HINTS.get(info.code)
    if hint is not None:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


def error_json(error: BraidError) -> str:
    """A BraidError as the one JSON object `--json` commands print on stderr."""
    fields = {"code": error.code, "name": error.name, "detail": error.detail}
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


def print_error(error: BraidError, stream: TextIO | None = None, *, as_json: bool = False) -> None:
    text = error_json(error) if as_json else format_error(error)
    print(text, file=stream or sys.stderr)


def exit_status(error: BraidError, otherwise: int = EXIT_ERROR) -> int:
    """A bad setting is bad usage (2); any other error exits with `otherwise`."""
    return EXIT_USAGE if error.info is errors.INVALID_SETTING else otherwise


class JsonErrorParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are JSON on stderr (for `--json` commands):
    INVALID_SETTING with argparse's message as the detail, exit status 2."""

    def error(self, message: str) -> NoReturn:
        error = BraidError(errors.INVALID_SETTING, f"{self.prog}: {message}")
        self.exit(EXIT_USAGE, error_json(error) + "\n")


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


def target_options() -> argparse.ArgumentParser:
    """The options that say where the documents are, as a parent parser: `--data DIR` (an
    embedded store) or `--server HOST:PORT` (a node, with `--secret-file`, `--cluster`,
    `--tls-ca`), and `--json`."""
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_mutually_exclusive_group()
    where.add_argument(
        "--data", metavar="DIR", help=f"the embedded store's directory (or {DATA_VARIABLE})"
    )
    where.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"a braid node, see braid serve (or {SERVER_VARIABLE})",
    )
    common.add_argument(
        "--secret-file", type=Path, help="with --server: the cluster secret (or BRAID_SECRET)"
    )
    common.add_argument("--cluster", default="braid", help="with --server: the cluster id")
    common.add_argument(
        "--tls-ca", type=Path, help="with --server: connect with TLS, trusting this CA (PEM)"
    )
    add_json_flag(common)
    return common


SERVER_VARIABLE = "BRAID_SERVER"
DATA_VARIABLE = "BRAID_DATA"


def resolve_target(args: argparse.Namespace) -> None:
    """Fill in --server or --data from BRAID_SERVER or BRAID_DATA when neither option was
    given (an option always wins over the environment); INVALID_SETTING when neither names
    a target, or both variables do."""
    if args.server is not None or args.data is not None:
        return
    server = os.environ.get(SERVER_VARIABLE) or None
    data = os.environ.get(DATA_VARIABLE) or None
    if server is not None and data is not None:
        raise BraidError(
            errors.INVALID_SETTING,
            f"both {SERVER_VARIABLE} and {DATA_VARIABLE} are set; give --server or --data "
            "to choose",
        )
    if server is None and data is None:
        raise BraidError(
            errors.INVALID_SETTING,
            f"say where the documents are: --data DIR or --server HOST:PORT (or set "
            f"{DATA_VARIABLE} or {SERVER_VARIABLE})",
        )
    args.server, args.data = server, data


def run_on_target(
    args: argparse.Namespace,
    action: Callable[[DataService], Awaitable[int]],
    *,
    create: bool,
    read_only: bool,
) -> int:
    """Run `action` on the node at `args.server` or the embedded store in `args.data` (see
    `target_options`; the environment's when neither is given). A read of a store a
    running node holds goes through that node (`_read_through_node`); node-only options
    given with --data are bad usage for a write."""
    resolve_target(args)
    if args.server is not None:
        return run_on_server(args.server, args.secret_file, args.cluster, action, args.tls_ca)
    if not read_only and (args.secret_file is not None or args.tls_ca is not None):
        # A read may use them: through the node holding the store, if one does.
        option = "--secret-file" if args.secret_file is not None else "--tls-ca"
        raise BraidError(errors.INVALID_SETTING, f"{option} goes with --server, not with --data")
    if not read_only:
        return run_on_store(args.data, action, create=create, read_only=False)
    try:
        return run_on_store(args.data, action, create=False, read_only=True)
    except BraidError as error:
        node = serving_node(Path(args.data)) if error.info is errors.STORE_LOCKED else None
        if node is None:
            raise
    return _read_through_node(args, node, action)


def _read_through_node(
    args: argparse.Namespace, node: ServingNode, action: Callable[[DataService], Awaitable[int]]
) -> int:
    """A read of a store that a node holds goes through the node (its address is in the
    store's LOCK), with the cluster secret of --secret-file or BRAID_SECRET; a note on
    stderr says so. Without a secret, or to a node speaking TLS (its CA is not known
    here), STORE_LOCKED says how to reach it instead."""
    from braid.cli.secret import load_secret

    where = f"{args.data} is held by the node at {node.address} (pid {node.pid})"
    if node.tls and args.tls_ca is None:
        raise BraidError(
            errors.STORE_LOCKED,
            f"{where}, which speaks TLS: read through it with --server {node.address} "
            "--tls-ca CA_FILE",
        )
    try:
        load_secret(args.secret_file)
    except BraidError as error:
        raise BraidError(
            errors.STORE_LOCKED,
            f"{where}; reading through it needs the cluster secret ({error.detail})",
        ) from None
    print(f"note: {where}: reading through it", file=sys.stderr)
    return run_on_server(node.address, args.secret_file, args.cluster, action, args.tls_ca)


def run_on_store(
    directory: str,
    action: Callable[[Store], Awaitable[int]],
    *,
    create: bool,
    read_only: bool = False,
) -> int:
    """Open the embedded store in `directory`, run `action` on it, close it. A read-only
    command opens it read-only: it writes nothing, not even a repair. (`braid.open` itself
    refuses to make a store of a directory holding other files.)"""
    path = Path(directory)

    async def opened() -> int:
        async with braid.open(path, create=create, read_only=read_only) as store:
            return await action(store)

    try:
        return asyncio.run(opened())
    except BraidError as error:
        if error.info is errors.STORE_LOCKED:
            raise BraidError(error.info, error.detail + lock_holder_hint(path)) from None
        raise


def lock_holder_hint(path: Path) -> str:
    """What the CLI adds to STORE_LOCKED: the holder's command line, from the pid its LOCK
    file names (Linux's /proc), and for a node the --server option that reaches it."""
    node = serving_node(path)
    if node is not None:
        return (
            f"; it is a node (`braid serve`, pid {node.pid}): reach the documents through it "
            f"with --server {node.address} instead of --data"
        )
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((path / "LOCK").read_text().split()[1])
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        argv = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
        if "serve" in argv:
            listen = "127.0.0.1:7400"  # serve's default
            if "--listen" in argv[:-1]:
                listen = argv[argv.index("--listen") + 1]
            if listen.endswith(":0"):  # it picked a port: its log says which
                listen = "HOST:PORT (the address its log names after 'serving on')"
            return (
                f"; it is a node (`braid serve`, pid {pid}): reach the documents through it "
                f"with --server {listen} instead of --data"
            )
        return f"; pid {pid} is `{' '.join(argv)[:200]}`"
    return ""


def run_on_server(
    address: str,
    secret_file: Path | None,
    cluster: str,
    action: Callable[[Client], Awaitable[int]],
    tls_ca: Path | None = None,
) -> int:
    """Connect to the node at `address`, run `action` through the client, disconnect.
    Every setting is checked before anything is sent."""
    from braid.cli.secret import load_secret

    parse_address(address)
    secret = load_secret(secret_file)
    tls = _client_tls(tls_ca)

    async def connected() -> int:
        async with braid.connect([address], secret=secret, cluster=cluster, tls=tls) as client:
            return await action(client)

    return asyncio.run(connected())


def _client_tls(tls_ca: Path | None) -> ssl.SSLContext | None:
    if tls_ca is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(tls_ca))
    except (OSError, ssl.SSLError) as error:
        raise BraidError(
            errors.INVALID_SETTING,
            f"cannot load --tls-ca {tls_ca}: {getattr(error, 'strerror', None) or error}",
        ) from None


def pretty_json(text: str) -> str:
    """A JSON text indented for people (keys in their stored order)."""
    return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
