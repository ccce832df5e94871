"""`braid secret`: make a cluster secret; and how every command finds the one it uses.

Nodes and clients prove to each other that they know the cluster secret (HMAC over fresh
nonces; the secret never crosses the wire), so a guessable secret is an open door.
`braid secret FILE` writes 32 random bytes (base64, 43 characters) to a new file only its
owner can read, never over an existing one; without FILE it prints the secret.

A command that needs the secret takes it from `--secret-file` or BRAID_SECRET. None at all is
bad usage (INVALID_SETTING, exit 2) saying how to make one, and so is a secret shorter than
`limits.secret_bytes_min` (see `braid.client.check_secret`).
"""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path
from typing import TYPE_CHECKING

from braid import errors, limits
from braid.cli.common import EXIT_OK
from braid.client import check_secret, secret_from_environment
from braid.errors import BraidError

if TYPE_CHECKING:
    from braid.cli.common import Subparsers

SECRET_RANDOM_BYTES = 32  # 256 bits, HMAC-SHA256's key strength
assert limits.secret_bytes_min <= SECRET_RANDOM_BYTES
HOW_TO_MAKE = "`braid secret FILE` writes a strong one"


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "secret",
        help="make a strong cluster secret",
        description="Write a new random cluster secret (32 bytes, base64) to FILE, readable "
        "by its owner only; FILE must not exist. Without FILE, print it. Give it to every "
        "node and client: `braid serve --secret-file FILE`, `--secret-file FILE` on "
        "commands with --server, or the BRAID_SECRET environment variable.",
    )
    parser.add_argument("file", nargs="?", type=Path, metavar="FILE", help="where to write it")
    parser.set_defaults(handler=handle)


def new_secret() -> str:
    return base64.urlsafe_b64encode(os.urandom(SECRET_RANDOM_BYTES)).decode().rstrip("=")


def handle(args: argparse.Namespace) -> int:
    secret = new_secret()
    if args.file is None:
        print(secret)
        return EXIT_OK
    path: Path = args.file
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BraidError(
            errors.INVALID_SETTING,
            f"{path} exists; braid secret never overwrites a secret (choose another FILE)",
        ) from None
    except OSError as error:
        raise BraidError(
            errors.INVALID_SETTING, f"cannot create {path}: {error.strerror}"
        ) from None
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    print(f"wrote a new cluster secret to {path} (readable by its owner only)")
    return EXIT_OK


def load_secret(path: Path | None) -> bytes:
    """The cluster secret from `path` (surrounding whitespace dropped) or BRAID_SECRET;
    INVALID_SETTING when there is none, the file cannot be read or the secret is too short."""
    if path is not None:
        try:
            secret = path.read_bytes().strip()
        except OSError as error:
            raise BraidError(
                errors.INVALID_SETTING,
                f"cannot read the secret file {path}: {error.strerror}; {HOW_TO_MAKE}",
            ) from None
        if not secret:
            raise BraidError(
                errors.INVALID_SETTING, f"the secret file {path} is empty; {HOW_TO_MAKE}"
            )
    else:
        secret = secret_from_environment() or b""
        if not secret:
            raise BraidError(
                errors.INVALID_SETTING,
                f"no cluster secret: pass --secret-file FILE or set BRAID_SECRET; {HOW_TO_MAKE}",
            )
    check_secret(secret, HOW_TO_MAKE)
    return secret
