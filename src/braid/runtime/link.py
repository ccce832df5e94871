"""The plumbing the client's channels and the node's connections share between an asyncio
transport and a sans-I/O `Connection` (core/wire/connection.py): building the connection
with a fresh handshake nonce, taking the transport asyncio hands over, and writing out what
the connection queued. What each side does with the connection's events stays its own.
"""

from __future__ import annotations

import asyncio
import os
from typing import cast

from braid import limits
from braid.core.wire.connection import NONCE_BYTES, Connection, ConnectionConfig, Role


def new_connection(
    role: Role,
    *,
    cluster: str,
    name: str,
    secret: bytes,
    frame_bytes_max: int,
    streams_max: int = limits.connection_streams_max,
) -> Connection:
    """A connection in its handshake, with a nonce from os.urandom (the handshake proofs
    are only as fresh as their nonces; this is the one place they are drawn)."""
    config = ConnectionConfig(
        cluster=cluster,
        name=name,
        secret=secret,
        streams_max=streams_max,
        frame_bytes_max=frame_bytes_max,
    )
    return Connection(role, config, os.urandom(NONCE_BYTES))


def as_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    """The transport `connection_made` receives, as the stream transport it is (uvloop's
    implement asyncio.Transport without subclassing it)."""
    return cast(asyncio.Transport, transport)


def flush(connection: Connection, transport: asyncio.Transport | None) -> None:
    """Write what the connection queued, in one write, if the transport is still open."""
    data = connection.data_to_send()
    if data and transport is not None and not transport.is_closing():
        transport.write(data)
