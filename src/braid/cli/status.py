"""`braid status --server HOST:PORT`: one node's health and progress.

Asks the node with braid's Status request (answered by the node itself, not its store's
request path) and prints what it says: its version, cluster id and name, uptime, documents,
the durable lsn against the applied lsn with the operations pending between them,
connections and requests in flight, and what recovery did when it opened its store. With
`--json`, one JSON object with the same fields (schema.NodeStatus's names) and the address.

A node that cannot be reached, or is not a braid node, or does not share the secret, fails
with its catalogued code (exit 1), as `doc get --server` does.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from braid.cli.common import SERVER_VARIABLE, add_json_flag, print_json, run_on_server
from braid.client import Client
from braid.core.wire import schema
from braid.errors import INVALID_SETTING, BraidError

if TYPE_CHECKING:
    from braid.cli.common import Subparsers


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show one node's health and progress",
        description="Ask the node at --server for its status: version, cluster, uptime, "
        "documents, durable lsn against applied lsn (operations pending a checkpoint), "
        "connections, requests in flight, and what recovery did when it started.",
    )
    parser.add_argument(
        "--server",
        metavar="HOST:PORT",
        help=f"a braid node, see braid serve (default: {SERVER_VARIABLE})",
    )
    parser.add_argument("--secret-file", type=Path, help="the cluster secret (or BRAID_SECRET)")
    parser.add_argument("--cluster", default="braid", help="the cluster id")
    parser.add_argument("--tls-ca", type=Path, help="connect with TLS, trusting this CA (PEM)")
    add_json_flag(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.server is None:
        args.server = os.environ.get(SERVER_VARIABLE) or None
    if args.server is None:
        raise BraidError(
            INVALID_SETTING, f"say which node: --server HOST:PORT (or set {SERVER_VARIABLE})"
        )

    async def ask(client: Client) -> int:
        status = await client.status()
        if args.json:
            print_json(as_dict(args.server, status))
        else:
            print(describe(args.server, status))
        return 0

    return run_on_server(args.server, args.secret_file, args.cluster, ask, args.tls_ca)


def as_dict(address: str, status: schema.NodeStatus) -> dict[str, Any]:
    fields = {name: getattr(status, name) for name in status.__struct_fields__}
    return {"address": address, **fields}


def describe(address: str, status: schema.NodeStatus) -> str:
    """The status as lines for people."""
    pending = status.pending_operations
    recovery = f"replayed {status.replayed_records} log records in {status.recovery_seconds:.3f} s"
    if status.recovery_repairs:
        recovery += f"; repaired: {status.recovery_repairs}"
    rows = [
        ("node", f"{status.name} at {address}, cluster {status.cluster!r}"),
        ("version", f"braid {status.version}"),
        ("uptime", _duration(status.uptime_seconds)),
        ("documents", str(status.documents)),
        ("durable lsn", str(status.durable_lsn)),
        ("applied lsn", f"{status.applied_lsn} ({pending} {_operations(pending)} pending)"),
        ("connections", str(status.connections)),
        ("in flight", f"{status.requests_in_flight} requests"),
        ("recovery", recovery),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _operations(count: int) -> str:
    return "operation" if count == 1 else "operations"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{seconds:.1f}s"
