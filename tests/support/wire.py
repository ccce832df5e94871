"""Protocol steps the suites build by hand, once: the handshake proof (computed from the
connection docstring's formula, not by calling braid's own `_proof`), frames of one message,
and a handshake run between two sans-I/O connections."""

from __future__ import annotations

import hashlib
import hmac

from braid.core.wire import schema
from braid.core.wire.connection import Connection, State
from braid.core.wire.frames import FrameType, encode_frame

CLIENT_LABEL = b"braid-client"
SERVER_LABEL = b"braid-server"


def handshake_proof(
    secret: bytes, label: bytes, first: bytes, second: bytes, cluster: str
) -> bytes:
    """HMAC-SHA256(secret, label | first nonce | second nonce | cluster), as the connection
    docstring documents it (the server proves with its label over nonce_c | nonce_s, the
    client with its own over nonce_s | nonce_c)."""
    return hmac.new(secret, label + first + second + cluster.encode(), hashlib.sha256).digest()


def handshake_frame(message: schema.HandshakeMessage, stream: int = 0) -> bytes:
    return encode_frame(FrameType.HANDSHAKE, stream, schema.encode(message))


def request_frame(stream: int, message: schema.Request) -> bytes:
    return encode_frame(FrameType.REQUEST, stream, schema.encode(message))


def complete_handshake(client: Connection, server: Connection) -> tuple[Connection, Connection]:
    """Runs the handshake between a fresh client and server (Hello, Welcome, Auth, Ready:
    two round trips) and checks both ended READY."""
    client.initiate()
    for _ in range(2):
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    assert client.state is State.READY
    assert server.state is State.READY
    return client, server
