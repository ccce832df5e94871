"""One braid connection as a pure state machine (sans-I/O, in the manner of h11).

    connection.receive_data(bytes) -> [events]     what the peer said
    connection.send_request(message) -> stream     what we say (client)
    connection.send_response(stream, message)      (server)
    connection.data_to_send() -> bytes             the bytes to write to the transport

No sockets, tasks or clocks: the runtime (braid.runtime) moves bytes and keeps time.

Handshake (stream 0), mutual proof of the cluster secret, nothing sent in clear but nonces::

    client → server   Hello(versions, cluster, name, nonce_c, push_window)
    server → client   Welcome(version, cluster, name, nonce_s, proof_s)
                      proof_s = HMAC-SHA256(secret, "braid-server" | nonce_c | nonce_s | cluster)
    client → server   Auth(proof_c)
                      proof_c = HMAC-SHA256(secret, "braid-client" | nonce_s | nonce_c | cluster)
    server → client   Ready(streams_max, frame_bytes_max)
    either side, on failure: Refuse(code, message), then close.

After Ready the client opens request streams (odd ids, increasing); each ends with one
response. The server bounds requests in flight per connection (`streams_max`) itself:
one past the bound is answered with OVERLOADED at once and never reaches the application.
The server may open push streams (even ids), flow-controlled by windows the client grants.

Whose fault: misuse of this API raises LocalProtocolError. Bytes from the peer that break
the protocol never raise: they yield ConnectionFailed, queue a Refuse or GoAway telling the
peer why, and close the connection. A request with invalid content (a bad key, say) is not a
protocol error: it is answered on its stream with that error's code.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

import msgspec

from braid import errors, limits
from braid.core.wire import schema
from braid.core.wire.frames import (
    FLAG_END,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    encode_frame,
)
from braid.errors import BraidError, ErrorInfo

NONCE_BYTES = 16
# A failed proof says the secrets differ, never which side is wrong: neither side can tell.
SECRETS_DIFFER_CLIENT_SIDE = (
    "the cluster secrets differ (the server's handshake proof does not match the client's secret)"
)
SECRETS_DIFFER_SERVER_SIDE = (
    "the cluster secrets differ (the client's handshake proof does not match the server's secret)"
)
_WINDOW = struct.Struct("<I")


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class State(Enum):
    HANDSHAKE = "handshake"
    READY = "ready"
    CLOSED = "closed"


class HandshakeStep(Enum):
    """Where the handshake stands: the message this side waits for next (a client at HELLO
    has not sent its Hello yet), then DONE."""

    HELLO = "hello"
    WELCOME = "welcome"
    AUTH = "auth"
    READY = "ready"
    DONE = "done"


# The handshake message each side accepts at each step (anything else is PROTOCOL_ERROR).
_HANDSHAKE_EXPECTED: dict[tuple[Role, HandshakeStep], type[schema.HandshakeMessage]] = {
    (Role.SERVER, HandshakeStep.HELLO): schema.Hello,
    (Role.CLIENT, HandshakeStep.WELCOME): schema.Welcome,
    (Role.SERVER, HandshakeStep.AUTH): schema.Auth,
    (Role.CLIENT, HandshakeStep.READY): schema.Ready,
}


class LocalProtocolError(RuntimeError):
    """This side misused the connection API (a bug in the caller, not the peer)."""


@dataclass(frozen=True)
class ConnectionConfig:
    cluster: str
    name: str
    secret: bytes
    streams_max: int = limits.connection_streams_max
    frame_bytes_max: int = limits.frame_bytes_max
    push_window_bytes: int = limits.push_window_bytes
    version_min: int = schema.PROTOCOL_VERSION
    version_max: int = schema.PROTOCOL_VERSION


# -- events -------------------------------------------------------------------------------------


class _Event(msgspec.Struct, frozen=True, gc=False):
    """Base of every event: a msgspec Struct rather than a frozen dataclass (one is built per
    message received, and a Struct's constructor is several times cheaper); `gc=False`:
    events hold messages, never a cycle. (Subclasses repeat `frozen=True` for type
    checkers, as the schema's messages do.)"""


class HandshakeComplete(_Event, frozen=True):
    peer_name: str
    version: int
    peer_streams_max: int


class RequestReceived(_Event, frozen=True):
    stream: int
    message: schema.Request
    payload: bytes  # the message as received (a store may log a patch's bytes as they are)


class ResponseReceived(_Event, frozen=True):
    stream: int
    message: schema.Response


class PushReceived(_Event, frozen=True):
    stream: int
    payload: bytes
    end: bool


class WindowUpdated(_Event, frozen=True):
    stream: int
    available: int


class StreamCancelled(_Event, frozen=True):
    stream: int


class GoAwayReceived(_Event, frozen=True):
    code: int
    message: str
    last_stream: int


class PongReceived(_Event, frozen=True):
    token: int


class ConnectionFailed(_Event, frozen=True):
    """The connection is closed, with the catalogued code saying why."""

    code: int
    message: str


Event = (
    HandshakeComplete
    | RequestReceived
    | ResponseReceived
    | PushReceived
    | WindowUpdated
    | StreamCancelled
    | GoAwayReceived
    | PongReceived
    | ConnectionFailed
)


class _Violation(Exception):
    """Internal: the peer broke the protocol."""

    def __init__(self, info: ErrorInfo, message: str) -> None:
        super().__init__(message)
        self.info = info


def _proof(secret: bytes, label: bytes, first: bytes, second: bytes, cluster: str) -> bytes:
    return hmac.new(secret, label + first + second + cluster.encode(), hashlib.sha256).digest()


class Connection:
    def __init__(self, role: Role, config: ConnectionConfig, nonce: bytes) -> None:
        if len(nonce) < NONCE_BYTES:
            raise LocalProtocolError(f"nonce must be at least {NONCE_BYTES} random bytes")
        self.role = role
        self.config = config
        self.state = State.HANDSHAKE
        self.peer_name = ""
        self.peer_streams_max = 0
        self.version = 0  # the negotiated protocol version, once the handshake is complete
        self._nonce = nonce
        self._peer_nonce = b""
        self._step = HandshakeStep.HELLO
        # Until the handshake is done, frames are held to a few KiB: an unauthenticated
        # peer must not make us buffer a maximal frame.
        self._decoder = FrameDecoder(limits.handshake_frame_bytes_max)
        self._outgoing = bytearray()
        self._open: set[int] = set()  # request streams in flight
        self._next_stream = 1 if role is Role.CLIENT else 2
        self._last_peer_stream = 0
        self._push_send_window: dict[int, int] = {}
        self._push_receive_window: dict[int, int] = {}
        self._peer_push_window = 0
        self._going_away = False
        self.frames_received = 0  # counts frames, so the runtime can tell a new partial frame

    # -- sending ------------------------------------------------------------------------

    def initiate(self) -> None:
        """Client: send Hello."""
        self._require(self.role is Role.CLIENT and self._step is HandshakeStep.HELLO, "initiate")
        hello = schema.Hello(
            self.config.version_min,
            self.config.version_max,
            self.config.cluster,
            self.config.name,
            self._nonce,
            self.config.push_window_bytes,
        )
        self._send_handshake(hello)
        self._step = HandshakeStep.WELCOME

    def send_request(self, message: schema.Request) -> int:
        """Client: open a stream with a request; returns its stream id."""
        self._require(self.role is Role.CLIENT and self.state is State.READY, "send_request")
        self._require(not self._going_away, "send_request after GoAway")
        self._require(len(self._open) < self.peer_streams_max, "send_request past streams_max")
        stream = self._next_stream
        self._next_stream += 2
        self._open.add(stream)
        self._outgoing += encode_frame(FrameType.REQUEST, stream, schema.encode(message))
        return stream

    def can_send_request(self) -> bool:
        return (
            self.state is State.READY
            and not self._going_away
            and len(self._open) < self.peer_streams_max
        )

    def send_response(self, stream: int, message: schema.Response) -> None:
        """Server: answer a request; a cancelled or closed stream drops the answer."""
        self._require(self.role is Role.SERVER, "send_response")
        if self.state is not State.READY or stream not in self._open:
            return
        payload = schema.encode(message)  # first: if it raises, the stream is still open
        self._open.discard(stream)
        self._outgoing += encode_frame(FrameType.RESPONSE, stream, payload, FLAG_END)

    def cancel(self, stream: int) -> None:
        """Abandon a stream (either side)."""
        if self.state is not State.READY:
            return
        pushes = (self._push_send_window, self._push_receive_window)
        if stream in self._open or any(stream in windows for windows in pushes):
            self._open.discard(stream)
            for windows in pushes:
                windows.pop(stream, None)
            self._outgoing += encode_frame(FrameType.CANCEL, stream, b"")

    def open_push(self) -> int:
        """Server: open a push stream (flow-controlled by the client's window)."""
        self._require(self.role is Role.SERVER and self.state is State.READY, "open_push")
        stream = self._next_stream
        self._next_stream += 2
        self._push_send_window[stream] = self._peer_push_window
        return stream

    def push_window(self, stream: int) -> int:
        return self._push_send_window.get(stream, 0)

    def send_push(self, stream: int, payload: bytes, end: bool = False) -> None:
        """Server: send on a push stream; the payload must fit the window (else wait for
        WindowUpdated)."""
        window = self._push_send_window.get(stream)
        self._require(window is not None, "send_push on a stream that is not open")
        assert window is not None
        self._require(len(payload) <= window, "send_push past the window")
        self._push_send_window[stream] = window - len(payload)
        self._outgoing += encode_frame(FrameType.PUSH, stream, payload, FLAG_END if end else 0)
        if end:
            del self._push_send_window[stream]

    def grant(self, stream: int, increment: int) -> None:
        """Client: the application consumed `increment` bytes of a push stream."""
        if self.state is not State.READY or stream not in self._push_receive_window:
            return
        window = self._push_receive_window[stream] + increment
        self._require(increment > 0 and window < 2**32, "grant increment")
        self._push_receive_window[stream] = window
        self._outgoing += encode_frame(FrameType.WINDOW, stream, _WINDOW.pack(increment))

    def go_away(self, info: ErrorInfo, message: str) -> None:
        """Accept no new streams; those in flight may finish."""
        if self.state is not State.READY or self._going_away:
            return
        self._going_away = True
        goaway = schema.GoAway(info.code, message, self._last_peer_stream)
        self._outgoing += encode_frame(FrameType.CONTROL, 0, schema.encode(goaway))

    def ping(self, token: int) -> None:
        self._require(self.state is State.READY, "ping")
        self._outgoing += encode_frame(FrameType.CONTROL, 0, schema.encode(schema.Ping(token)))

    def data_to_send(self) -> bytes:
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def abandon(self, info: ErrorInfo, message: str) -> ConnectionFailed | None:
        """This side gives up on the connection (a bound of the node, not the peer's fault
        as far as the protocol goes): tell the peer why (Refuse or GoAway) and close.
        Returns the event to report (None if already closed)."""
        if self.state is State.CLOSED:
            return None
        self._fail(info, message)
        return ConnectionFailed(info.code, message)

    @property
    def in_flight(self) -> int:
        return len(self._open)

    @property
    def buffered(self) -> int:
        """Bytes received and held for a frame that is not complete yet."""
        return self._decoder.buffered

    def pending_frame_bytes(self) -> int:
        """The announced size of the frame being received (see FrameDecoder)."""
        return self._decoder.pending_frame_bytes()

    def _closed(self) -> bool:
        # A method, not an inline comparison: receiving a frame can close the connection,
        # which a type checker cannot see through `self.state`.
        return self.state is State.CLOSED

    def _require(self, condition: bool, what: str) -> None:
        if not condition:
            raise LocalProtocolError(f"{what} not allowed ({self.role.value}, {self.state.value})")

    def _send_handshake(self, message: schema.HandshakeMessage) -> None:
        self._outgoing += encode_frame(FrameType.HANDSHAKE, 0, schema.encode(message))

    # -- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; returns what happened. Never raises for peer input."""
        if self.state is State.CLOSED:
            return []
        events: list[Event] = []
        try:
            frames = self._decoder.feed(data)
            while frames:
                self.frames_received += len(frames)
                for frame in frames:
                    self._receive_frame(frame, events)
                    if self._closed():
                        return events
                frames = self._decoder.feed(b"")  # raises for a bad frame held back behind these
        except FrameError as error:
            events.append(self._fail(error.info, str(error)))
        except _Violation as violation:
            events.append(self._fail(violation.info, str(violation)))
        except (msgspec.DecodeError, UnicodeDecodeError, BraidError) as error:
            # msgspec reports a msgpack str that is not UTF-8 as UnicodeDecodeError.
            events.append(self._fail(errors.PROTOCOL_ERROR, f"malformed message: {error}"))
        return events

    def connection_lost(self) -> ConnectionFailed | None:
        """The transport closed; returns the event to report (None if already closed)."""
        if self.state is State.CLOSED:
            return None
        self.state = State.CLOSED
        self._decoder.clear()
        return ConnectionFailed(errors.CONNECTION_LOST.code, "the connection closed")

    def _fail(self, info: ErrorInfo, message: str) -> ConnectionFailed:
        if self.state is State.HANDSHAKE:
            self._send_handshake(schema.Refuse(info.code, message))
        else:
            goaway = schema.GoAway(info.code, message, self._last_peer_stream)
            self._outgoing += encode_frame(FrameType.CONTROL, 0, schema.encode(goaway))
        self.state = State.CLOSED
        self._decoder.clear()  # nothing more is read: free what a partial frame held
        return ConnectionFailed(info.code, message)

    def _receive_frame(self, frame: Frame, events: list[Event]) -> None:
        if frame.type is FrameType.HANDSHAKE:
            if frame.stream != 0 or self.state is not State.HANDSHAKE:
                raise _Violation(errors.PROTOCOL_ERROR, "handshake frame out of place")
            self._receive_handshake(schema.handshake_decoder.decode(frame.payload), events)
            return
        if self.state is not State.READY:
            raise _Violation(errors.PROTOCOL_ERROR, f"{frame.type.name} frame before Ready")
        if frame.type is FrameType.CONTROL:
            self._receive_control(frame, events)
        elif frame.type is FrameType.REQUEST:
            self._receive_request(frame, events)
        elif frame.type is FrameType.RESPONSE:
            self._receive_response(frame, events)
        elif frame.type is FrameType.PUSH:
            self._receive_push(frame, events)
        elif frame.type is FrameType.WINDOW:
            self._receive_window(frame, events)
        elif frame.type is FrameType.CANCEL:
            self._receive_cancel(frame, events)

    # -- handshake ----------------------------------------------------------------------

    def _receive_handshake(self, message: schema.HandshakeMessage, events: list[Event]) -> None:
        if isinstance(message, schema.Refuse):
            info = errors.lookup(message.code) or errors.PROTOCOL_ERROR
            self.state = State.CLOSED
            events.append(ConnectionFailed(info.code, f"refused: {message.message}"))
            return
        expected = _HANDSHAKE_EXPECTED.get((self.role, self._step))
        if expected is None or not isinstance(message, expected):
            raise _Violation(errors.PROTOCOL_ERROR, f"unexpected {type(message).__name__}")
        if isinstance(message, schema.Hello):
            self._on_hello(message)
        elif isinstance(message, schema.Welcome):
            self._on_welcome(message)
        elif isinstance(message, schema.Auth):
            self._on_auth(message, events)
        elif isinstance(message, schema.Ready):
            self._on_ready(message, events)

    def _on_hello(self, hello: schema.Hello) -> None:
        config = self.config
        if hello.version_max < config.version_min or hello.version_min > config.version_max:
            raise _Violation(
                errors.VERSION_UNSUPPORTED,
                f"peer speaks {hello.version_min}..{hello.version_max}, we speak "
                f"{config.version_min}..{config.version_max}",
            )
        if hello.cluster != config.cluster:
            raise _Violation(errors.CLUSTER_MISMATCH, f"cluster {hello.cluster!r} is not ours")
        if len(hello.nonce) < NONCE_BYTES or not 0 < hello.push_window < 2**32:
            raise _Violation(errors.PROTOCOL_ERROR, "Hello nonce or push window out of range")
        self.peer_name = hello.name
        self._peer_nonce = hello.nonce
        self._peer_push_window = hello.push_window
        version = min(hello.version_max, config.version_max)
        self.version = version
        proof = _proof(config.secret, b"braid-server", hello.nonce, self._nonce, config.cluster)
        self._send_handshake(
            schema.Welcome(version, config.cluster, config.name, self._nonce, proof)
        )
        self._step = HandshakeStep.AUTH

    def _on_welcome(self, welcome: schema.Welcome) -> None:
        config = self.config
        if welcome.cluster != config.cluster:
            raise _Violation(errors.CLUSTER_MISMATCH, f"cluster {welcome.cluster!r} is not ours")
        if not config.version_min <= welcome.version <= config.version_max:
            raise _Violation(errors.VERSION_UNSUPPORTED, f"server chose {welcome.version}")
        expected = _proof(
            config.secret, b"braid-server", self._nonce, welcome.nonce, config.cluster
        )
        if len(welcome.nonce) < NONCE_BYTES or not hmac.compare_digest(expected, welcome.proof):
            raise _Violation(errors.AUTH_FAILED, SECRETS_DIFFER_CLIENT_SIDE)
        self.peer_name = welcome.name
        self.version = welcome.version
        proof = _proof(config.secret, b"braid-client", welcome.nonce, self._nonce, config.cluster)
        self._send_handshake(schema.Auth(proof))
        self._step = HandshakeStep.READY

    def _on_auth(self, auth: schema.Auth, events: list[Event]) -> None:
        config = self.config
        expected = _proof(
            config.secret, b"braid-client", self._nonce, self._peer_nonce, config.cluster
        )
        if not hmac.compare_digest(expected, auth.proof):
            raise _Violation(errors.AUTH_FAILED, SECRETS_DIFFER_SERVER_SIDE)
        self._send_handshake(schema.Ready(config.streams_max, config.frame_bytes_max))
        self.state = State.READY
        self._decoder.frame_bytes_max = config.frame_bytes_max
        self._step = HandshakeStep.DONE
        events.append(HandshakeComplete(self.peer_name, self.version, 0))

    def _on_ready(self, ready: schema.Ready, events: list[Event]) -> None:
        if ready.streams_max < 1:
            raise _Violation(errors.PROTOCOL_ERROR, "Ready with streams_max < 1")
        self.peer_streams_max = ready.streams_max
        self.state = State.READY
        self._decoder.frame_bytes_max = self.config.frame_bytes_max
        self._step = HandshakeStep.DONE
        events.append(HandshakeComplete(self.peer_name, self.version, ready.streams_max))

    # -- streams ------------------------------------------------------------------------

    def _receive_request(self, frame: Frame, events: list[Event]) -> None:
        stream = frame.stream
        if self.role is not Role.SERVER or stream % 2 != 1 or stream <= self._last_peer_stream:
            raise _Violation(errors.PROTOCOL_ERROR, f"request on stream {stream} out of order")
        self._last_peer_stream = stream
        self._open.add(stream)
        if self._going_away:
            self.send_response(stream, _failure(errors.SHUTTING_DOWN, "the node is going away"))
            return
        if len(self._open) > self.config.streams_max:
            detail = f"more than {self.config.streams_max} requests in flight on one connection"
            self.send_response(stream, _failure(errors.OVERLOADED, detail))
            return
        payload = frame.payload
        if len(payload) > 1 and payload[0] & 0xF0 == 0x90 and payload[1] in _REQUEST_TAGS:
            # A fixarray opened by a known request tag (a positive fixint): read the tag from
            # its byte. The typed decode below validates everything else, failing the same
            # way the full peek would; other shapes take the full peek.
            tag: int | None = payload[1]
        else:
            tag = schema.message_tag(payload)
        if tag is None:
            raise _Violation(errors.PROTOCOL_ERROR, "request payload is not a message")
        if tag not in _REQUEST_TAGS:
            self.send_response(
                stream, _failure(errors.UNSUPPORTED_MESSAGE, f"unknown request tag {tag}")
            )
            return
        try:
            message = schema.request_decoder.decode(frame.payload)
        except BraidError as error:  # valid protocol, invalid content: answer, keep going
            self.send_response(stream, schema.Failure(error.code, error.detail))
            return
        events.append(RequestReceived(stream, message, payload))

    def _receive_response(self, frame: Frame, events: list[Event]) -> None:
        stream = frame.stream
        if self.role is not Role.CLIENT or stream % 2 != 1 or stream >= self._next_stream:
            raise _Violation(errors.PROTOCOL_ERROR, f"response on stream {stream} never opened")
        message = schema.response_decoder.decode(frame.payload)
        if stream not in self._open:
            return  # we cancelled it; the answer crossed our CANCEL
        self._open.discard(stream)
        events.append(ResponseReceived(stream, message))

    def _receive_push(self, frame: Frame, events: list[Event]) -> None:
        stream = frame.stream
        if self.role is not Role.CLIENT or stream % 2 != 0 or stream == 0:
            raise _Violation(errors.PROTOCOL_ERROR, f"push on stream {stream}")
        window = self._push_receive_window.get(stream)
        if window is None:
            if stream <= self._last_peer_stream:
                return  # a push stream we cancelled or that ended
            self._last_peer_stream = stream
            window = self.config.push_window_bytes
        if len(frame.payload) > window:
            raise _Violation(errors.FLOW_CONTROL_ERROR, f"push stream {stream} overran its window")
        if frame.end:
            self._push_receive_window.pop(stream, None)
        else:
            self._push_receive_window[stream] = window - len(frame.payload)
        events.append(PushReceived(stream, frame.payload, frame.end))

    def _receive_window(self, frame: Frame, events: list[Event]) -> None:
        if self.role is not Role.SERVER or len(frame.payload) != _WINDOW.size:
            raise _Violation(errors.PROTOCOL_ERROR, "WINDOW frame malformed or misdirected")
        (increment,) = _WINDOW.unpack(frame.payload)
        window = self._push_send_window.get(frame.stream)
        if window is None:
            return  # the stream ended meanwhile
        if increment == 0 or window + increment >= 2**32:
            raise _Violation(errors.FLOW_CONTROL_ERROR, "window increment out of range")
        self._push_send_window[frame.stream] = window + increment
        events.append(WindowUpdated(frame.stream, window + increment))

    def _receive_cancel(self, frame: Frame, events: list[Event]) -> None:
        stream = frame.stream
        if stream in self._open:
            self._open.discard(stream)
            events.append(StreamCancelled(stream))
        elif self._push_send_window.pop(stream, None) is not None:
            events.append(StreamCancelled(stream))
        self._push_receive_window.pop(stream, None)

    def _receive_control(self, frame: Frame, events: list[Event]) -> None:
        if frame.stream != 0:
            raise _Violation(errors.PROTOCOL_ERROR, "control frame on a stream")
        message = schema.control_decoder.decode(frame.payload)
        if isinstance(message, schema.Ping):
            pong = schema.Pong(message.token)
            self._outgoing += encode_frame(FrameType.CONTROL, 0, schema.encode(pong))
        elif isinstance(message, schema.Pong):
            events.append(PongReceived(message.token))
        elif isinstance(message, schema.GoAway):
            self._going_away = True
            events.append(GoAwayReceived(message.code, message.message, message.last_stream))


_REQUEST_TAGS = frozenset(int(str(kind.__struct_config__.tag)) for kind in schema.REQUEST_TYPES)


def _failure(info: ErrorInfo, detail: str) -> schema.Failure:
    return schema.Failure(info.code, detail)
