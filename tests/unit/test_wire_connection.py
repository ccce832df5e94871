"""The sans-I/O connection, driven without sockets: a client and a server `Connection` talk
to each other in memory (the test moves `data_to_send()` across), or a hand-built peer feeds
raw frames to one of them. Covers the handshake and its refusals with their codes, streams
multiplexed out of order, the per-connection stream bound, unknown and invalid requests,
cancel, push flow control, GoAway, ping, and byte-at-a-time delivery of a whole session."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from braid import errors, limits
from braid.core.wire import schema
from braid.core.wire.connection import (
    NONCE_BYTES,
    Connection,
    ConnectionConfig,
    ConnectionFailed,
    Event,
    GoAwayReceived,
    HandshakeComplete,
    LocalProtocolError,
    PongReceived,
    PushReceived,
    RequestReceived,
    ResponseReceived,
    Role,
    State,
    StreamCancelled,
    WindowUpdated,
)
from braid.core.wire.frames import (
    FLAG_END,
    FRAME_HEADER,
    Frame,
    FrameDecoder,
    FrameType,
    encode_frame,
)
from braid.model import Key, Update
from tests.support.wire import handshake_frame, handshake_proof, request_frame

SECRET = b"the cluster secret"
CLUSTER = "test-cluster"
CLIENT_NONCE = bytes(range(100, 100 + NONCE_BYTES))
SERVER_NONCE = bytes(range(200, 200 + NONCE_BYTES))
KEY_A = Key("space", "a")
KEY_B = Key("space", "b")

Deliver = Callable[[Connection, bytes], list[Event]]


def whole(connection: Connection, data: bytes) -> list[Event]:
    return connection.receive_data(data)


def byte_at_a_time(connection: Connection, data: bytes) -> list[Event]:
    events: list[Event] = []
    for byte in data:
        events += connection.receive_data(bytes([byte]))
    return events


def make_config(name: str, **overrides: Any) -> ConnectionConfig:
    values: dict[str, Any] = {"cluster": CLUSTER, "name": name, "secret": SECRET, **overrides}
    return ConnectionConfig(**values)


def new_client(**overrides: Any) -> Connection:
    return Connection(Role.CLIENT, make_config("the-client", **overrides), CLIENT_NONCE)


def new_server(**overrides: Any) -> Connection:
    return Connection(Role.SERVER, make_config("the-server", **overrides), SERVER_NONCE)


@dataclass
class Pair:
    """A client and a server wired back to back; records events and the bytes each way."""

    client: Connection
    server: Connection
    deliver: Deliver = whole
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)
    to_server: bytearray = field(default_factory=bytearray)
    to_client: bytearray = field(default_factory=bytearray)

    def shuttle(self) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until both sides are quiet; the new (client, server) events."""
        client_events: list[Event] = []
        server_events: list[Event] = []
        while True:
            upstream = self.client.data_to_send()
            downstream = self.server.data_to_send()
            if not upstream and not downstream:
                break
            if upstream:
                self.to_server += upstream
                server_events += self.deliver(self.server, upstream)
            if downstream:
                self.to_client += downstream
                client_events += self.deliver(self.client, downstream)
        self.client_events += client_events
        self.server_events += server_events
        return client_events, server_events


def make_pair(
    client: Connection | None = None,
    server: Connection | None = None,
    deliver: Deliver = whole,
) -> Pair:
    return Pair(client or new_client(), server or new_server(), deliver)


def ready_pair(**server_overrides: Any) -> Pair:
    pair = make_pair(server=new_server(**server_overrides))
    pair.client.initiate()
    pair.shuttle()
    assert pair.client.state is State.READY
    assert pair.server.state is State.READY
    return pair


def decode_message(frame: Frame) -> object:
    decoders: dict[FrameType, msgspec.msgpack.Decoder[Any]] = {
        FrameType.HANDSHAKE: schema.handshake_decoder,
        FrameType.REQUEST: schema.request_decoder,
        FrameType.RESPONSE: schema.response_decoder,
        FrameType.CONTROL: schema.control_decoder,
    }
    decoder = decoders.get(frame.type)
    return frame.payload if decoder is None else decoder.decode(frame.payload)


def frames_in(data: bytes | bytearray) -> list[tuple[Frame, object]]:
    decoder = FrameDecoder(limits.frame_bytes_max)
    frames = decoder.feed(bytes(data))
    assert decoder.buffered == 0
    return [(frame, decode_message(frame)) for frame in frames]


def sent(connection: Connection) -> list[tuple[Frame, object]]:
    """Take and decode what the connection queued to send."""
    return frames_in(connection.data_to_send())


def messages(data: bytes | bytearray) -> list[object]:
    return [message for _, message in frames_in(data)]


def raw(kind: FrameType, stream: int, value: object, flags: int = 0) -> bytes:
    """A frame whose payload a hand-built peer encoded itself (any msgpack value)."""
    payload = value if isinstance(value, bytes) else msgspec.msgpack.encode(value)
    return encode_frame(kind, stream, payload, flags)


def received(stream: int, message: schema.Request) -> RequestReceived:
    """The event for `message` arriving on `stream`, encoded as our own encoder does."""
    return RequestReceived(stream, message, schema.encode(message))


def with_payload(data: bytes, payload: bytes) -> bytes:
    """The single frame in `data`, re-encoded with another payload (a tampering peer)."""
    [(frame, _)] = frames_in(data)
    return encode_frame(frame.type, frame.stream, payload, frame.flags)


def hello(**overrides: Any) -> schema.Hello:
    values: dict[str, Any] = {
        "version_min": 1,
        "version_max": 1,
        "cluster": CLUSTER,
        "name": "hand-built",
        "nonce": CLIENT_NONCE,
    }
    return schema.Hello(**{**values, **overrides})


def failures(events: list[Event]) -> list[int]:
    return [event.code for event in events if isinstance(event, ConnectionFailed)]


def assert_failed(connection: Connection, events: list[Event], code: int) -> None:
    """The last event is ConnectionFailed(code), the only one, and the connection is closed."""
    assert failures(events) == [code]
    assert isinstance(events[-1], ConnectionFailed)
    assert connection.state is State.CLOSED


# -- handshake -------------------------------------------------------------------------------------


def test_full_handshake() -> None:
    """Hello, Welcome, Auth, Ready in that order; both sides report HandshakeComplete with
    the peer's name, and the client learns the server's streams_max. The proofs on the wire
    are the documented HMACs, and the secret itself never crosses the wire."""
    pair = make_pair(server=new_server(streams_max=7))
    pair.client.initiate()
    client_events, server_events = pair.shuttle()
    assert client_events == [HandshakeComplete("the-server", 1, 7)]
    assert server_events == [HandshakeComplete("the-client", 1, 0)]
    hello_message, auth = messages(pair.to_server)
    welcome, ready = messages(pair.to_client)
    assert hello_message == schema.Hello(
        1, 1, CLUSTER, "the-client", CLIENT_NONCE, limits.push_window_bytes
    )
    assert isinstance(welcome, schema.Welcome)
    assert welcome.proof == handshake_proof(
        SECRET, b"braid-server", CLIENT_NONCE, SERVER_NONCE, CLUSTER
    )
    assert auth == schema.Auth(
        handshake_proof(SECRET, b"braid-client", SERVER_NONCE, CLIENT_NONCE, CLUSTER)
    )
    assert ready == schema.Ready(7, limits.frame_bytes_max)
    assert SECRET not in pair.to_server + pair.to_client
    assert pair.client.peer_streams_max == 7


def test_version_negotiation_picks_the_highest_common_version() -> None:
    """Client 1..3 and server 2..5 agree on 3: the Welcome carries it and both sides'
    HandshakeComplete report the negotiated version (not a constant)."""
    pair = make_pair(new_client(version_max=3), new_server(version_min=2, version_max=5))
    pair.client.initiate()
    client_events, server_events = pair.shuttle()
    welcome = messages(pair.to_client)[0]
    assert isinstance(welcome, schema.Welcome)
    assert welcome.version == 3
    assert [event.version for event in client_events if isinstance(event, HandshakeComplete)] == [3]
    assert [event.version for event in server_events if isinstance(event, HandshakeComplete)] == [3]


def test_wrong_secret_detected_by_the_client() -> None:
    """The server's proof does not verify with the client's secret: the client sends
    Refuse(AUTH_FAILED) instead of Auth, and both sides end with ConnectionFailed(4005), each
    saying the cluster secrets differ."""
    pair = make_pair(server=new_server(secret=b"another secret"))
    pair.client.initiate()
    client_events, server_events = pair.shuttle()
    assert_failed(pair.client, client_events, errors.AUTH_FAILED.code)
    assert_failed(pair.server, server_events, errors.AUTH_FAILED.code)
    assert [type(message) for message in messages(pair.to_server)] == [
        schema.Hello,
        schema.Refuse,
    ]
    refuse = messages(pair.to_server)[-1]
    assert isinstance(refuse, schema.Refuse)
    assert refuse.code == errors.AUTH_FAILED.code
    for said in (refuse.message, str(client_events[-1]), str(server_events[-1])):
        assert "the cluster secrets differ" in said  # never that one side lacks it
        assert "does not know" not in said


def test_wrong_secret_detected_by_the_server() -> None:
    """A man in the middle re-signs the Welcome with the client's secret, so the client
    sends Auth; the server (another secret) rejects it with Refuse(AUTH_FAILED) and never
    sends Ready; both sides end with ConnectionFailed(4005), each saying the secrets differ."""
    client_secret = b"the client's wrong secret"
    pair = make_pair(new_client(secret=client_secret), new_server())
    pair.client.initiate()
    assert pair.server.receive_data(pair.client.data_to_send()) == []
    [(_, welcome)] = sent(pair.server)
    assert isinstance(welcome, schema.Welcome)
    forged_proof = handshake_proof(
        client_secret, b"braid-server", CLIENT_NONCE, welcome.nonce, CLUSTER
    )
    forged = schema.Welcome(
        welcome.version, welcome.cluster, welcome.name, welcome.nonce, forged_proof
    )
    assert pair.client.receive_data(handshake_frame(forged)) == []
    server_events = pair.server.receive_data(pair.client.data_to_send())
    assert_failed(pair.server, server_events, errors.AUTH_FAILED.code)
    server_output = pair.server.data_to_send()
    [refuse] = messages(server_output)
    assert isinstance(refuse, schema.Refuse)
    assert refuse.code == errors.AUTH_FAILED.code
    client_events = pair.client.receive_data(server_output)
    assert_failed(pair.client, client_events, errors.AUTH_FAILED.code)
    for said in (refuse.message, str(client_events[-1]), str(server_events[-1])):
        assert "the cluster secrets differ" in said
        assert "does not know" not in said


def test_wrong_cluster_refused_by_the_server() -> None:
    """A client of another cluster is refused at Hello with CLUSTER_MISMATCH (4004)."""
    pair = make_pair(client=new_client(cluster="other-cluster"))
    pair.client.initiate()
    client_events, server_events = pair.shuttle()
    assert_failed(pair.server, server_events, errors.CLUSTER_MISMATCH.code)
    assert_failed(pair.client, client_events, errors.CLUSTER_MISMATCH.code)
    assert [type(message) for message in messages(pair.to_client)] == [schema.Refuse]


def test_wrong_cluster_refused_by_the_client() -> None:
    """A Welcome naming another cluster is refused by the client with 4004."""
    client = new_client()
    client.initiate()
    client.data_to_send()
    welcome = schema.Welcome(1, "other-cluster", "server", SERVER_NONCE, b"x" * 32)
    events = client.receive_data(handshake_frame(welcome))
    assert_failed(client, events, errors.CLUSTER_MISMATCH.code)
    [(_, refuse)] = sent(client)
    assert isinstance(refuse, schema.Refuse)
    assert refuse.code == errors.CLUSTER_MISMATCH.code


@pytest.mark.parametrize(
    ("client_versions", "server_versions"),
    [((2, 3), (1, 1)), ((1, 1), (2, 4)), ((5, 9), (1, 4))],
)
def test_no_common_version(
    client_versions: tuple[int, int], server_versions: tuple[int, int]
) -> None:
    """Disjoint version ranges: the server refuses the Hello with VERSION_UNSUPPORTED (4003)
    and both sides end with that code."""
    client = new_client(version_min=client_versions[0], version_max=client_versions[1])
    server = new_server(version_min=server_versions[0], version_max=server_versions[1])
    pair = make_pair(client, server)
    pair.client.initiate()
    client_events, server_events = pair.shuttle()
    assert_failed(pair.server, server_events, errors.VERSION_UNSUPPORTED.code)
    assert_failed(pair.client, client_events, errors.VERSION_UNSUPPORTED.code)


def test_welcome_with_a_version_the_client_does_not_speak() -> None:
    """A server that picks a version outside the client's range is refused with 4003."""
    client = new_client()
    client.initiate()
    client.data_to_send()
    welcome_proof = handshake_proof(SECRET, b"braid-server", CLIENT_NONCE, SERVER_NONCE, CLUSTER)
    welcome = schema.Welcome(2, CLUSTER, "server", SERVER_NONCE, welcome_proof)
    assert_failed(client, client.receive_data(handshake_frame(welcome)), 4003)


def _fresh_server() -> Connection:
    return new_server()


def _server_after_hello() -> Connection:
    server = new_server()
    assert server.receive_data(handshake_frame(hello())) == []
    server.data_to_send()
    return server


def _initiated_client() -> Connection:
    client = new_client()
    client.initiate()
    client.data_to_send()
    return client


def _ready_server() -> Connection:
    pair = ready_pair()
    return pair.server


def _ready_client() -> Connection:
    return ready_pair().client


AUTH = schema.Auth(b"p" * 32)
WELCOME = schema.Welcome(1, CLUSTER, "server", SERVER_NONCE, b"p" * 32)
READY = schema.Ready(8, limits.frame_bytes_max)
GET_A = schema.Get(KEY_A)

OUT_OF_ORDER: dict[str, tuple[Callable[[], Connection], bytes]] = {
    "server: Auth before Hello": (_fresh_server, handshake_frame(AUTH)),
    "server: Welcome": (_fresh_server, handshake_frame(WELCOME)),
    "server: Ready": (_fresh_server, handshake_frame(READY)),
    "server: Hello twice": (_server_after_hello, handshake_frame(hello())),
    "server: request before Hello": (_fresh_server, request_frame(1, GET_A)),
    "server: request before Ready": (_server_after_hello, request_frame(1, GET_A)),
    "server: ping before Ready": (
        _fresh_server,
        encode_frame(FrameType.CONTROL, 0, schema.encode(schema.Ping(1))),
    ),
    "server: WINDOW before Ready": (_server_after_hello, raw(FrameType.WINDOW, 2, b"\1\0\0\0")),
    "server: Hello on stream 3": (_fresh_server, handshake_frame(hello(), stream=3)),
    "server: Hello not msgpack": (_fresh_server, raw(FrameType.HANDSHAKE, 0, b"\xc1")),
    "server: Hello missing fields": (_fresh_server, raw(FrameType.HANDSHAKE, 0, [1, 1])),
    "server: Hello with invalid UTF-8": (
        _fresh_server,
        raw(FrameType.HANDSHAKE, 0, b"\x96\x01\x01\x01\xa2\xff\xfe\xa1n\xc4\x10" + CLIENT_NONCE),
    ),
    "server: short nonce": (_fresh_server, handshake_frame(hello(nonce=b"n"))),
    "server: push window 0": (_fresh_server, handshake_frame(hello(push_window=0))),
    "client: Ready before Welcome": (_initiated_client, handshake_frame(READY)),
    "client: Hello": (_initiated_client, handshake_frame(hello())),
    "client: response before Ready": (
        _initiated_client,
        encode_frame(FrameType.RESPONSE, 1, schema.encode(schema.Done()), FLAG_END),
    ),
    "client: Welcome before initiate": (new_client, handshake_frame(WELCOME)),
    "server: Hello after Ready": (_ready_server, handshake_frame(hello())),
    "client: Welcome after Ready": (_ready_client, handshake_frame(WELCOME)),
}


@pytest.mark.parametrize("case", OUT_OF_ORDER, ids=list(OUT_OF_ORDER))
def test_handshake_out_of_order_is_a_protocol_error(case: str) -> None:
    """A handshake message out of order or malformed, or any other frame before Ready, closes
    the connection with PROTOCOL_ERROR (4001) and tells the peer why: a Refuse during the
    handshake, a GoAway after it."""
    build, data = OUT_OF_ORDER[case]
    connection = build()
    was_ready = connection.state is State.READY
    events = connection.receive_data(data)
    assert_failed(connection, events, errors.PROTOCOL_ERROR.code)
    [(_, told)] = sent(connection)
    expected_type = schema.GoAway if was_ready else schema.Refuse
    assert isinstance(told, expected_type)
    assert told.code == errors.PROTOCOL_ERROR.code


def test_peer_refusal_carries_its_code() -> None:
    """A Refuse from the server with a catalogued code surfaces as ConnectionFailed with that
    code; an uncatalogued code becomes PROTOCOL_ERROR."""
    client = _initiated_client()
    events = client.receive_data(handshake_frame(schema.Refuse(4007, "busy")))
    assert_failed(client, events, errors.OVERLOADED.code)
    client = _initiated_client()
    events = client.receive_data(handshake_frame(schema.Refuse(1234567, "??")))
    assert_failed(client, events, errors.PROTOCOL_ERROR.code)


# -- requests and responses ------------------------------------------------------------------------


def test_requests_multiplexed_and_answered_out_of_order() -> None:
    """Three requests on streams 1, 3, 5 are all in flight at once; the server answers them
    5, 1, 3 and each response reaches the client on its own stream."""
    pair = ready_pair()
    requests: list[schema.Request] = [schema.Get(KEY_A), schema.Get(KEY_B), schema.Inventory()]
    streams = [pair.client.send_request(message) for message in requests]
    assert streams == [1, 3, 5]
    assert pair.client.in_flight == 3
    _, server_events = pair.shuttle()
    assert server_events == [
        received(stream, message) for stream, message in zip(streams, requests, strict=True)
    ]
    answers: dict[int, schema.Response] = {
        5: schema.InventoryList([schema.InventoryItem(KEY_A, 2, 2, 10)]),
        1: schema.Change('{"a":1}', 4, 4),
        3: schema.Failure(errors.DOCUMENT_NOT_FOUND.code, "no b"),
    }
    for stream, response in answers.items():
        pair.server.send_response(stream, response)
    client_events, _ = pair.shuttle()
    assert client_events == [ResponseReceived(stream, answers[stream]) for stream in (5, 1, 3)]
    assert pair.client.in_flight == 0
    assert pair.server.in_flight == 0


def test_requests_past_streams_max_are_answered_overloaded() -> None:
    """A hand-built client that ignores streams_max=2 sends four requests: the first two reach
    the application, the others are answered OVERLOADED (4007) at once; after one answer a
    new request is accepted again, so the connection stays usable."""
    pair = ready_pair(streams_max=2)
    server = pair.server
    events: list[Event] = []
    for stream in (1, 3, 5, 7):
        events += server.receive_data(request_frame(stream, schema.Get(KEY_A)))
    assert events == [received(1, schema.Get(KEY_A)), received(3, schema.Get(KEY_A))]
    answers = [(frame.stream, message) for frame, message in sent(server)]
    assert [stream for stream, _ in answers] == [5, 7]
    for _, message in answers:
        assert isinstance(message, schema.Failure)
        assert message.code == errors.OVERLOADED.code
    assert server.state is State.READY
    server.send_response(1, schema.Done())
    sent(server)
    assert server.receive_data(request_frame(9, schema.Get(KEY_B))) == [
        received(9, schema.Get(KEY_B))
    ]
    assert server.in_flight == 2


def test_client_refuses_to_exceed_streams_max() -> None:
    """The client itself never opens more streams than the server's streams_max."""
    pair = ready_pair(streams_max=2)
    pair.client.send_request(GET_A)
    assert pair.client.can_send_request()
    pair.client.send_request(GET_A)
    assert not pair.client.can_send_request()
    with pytest.raises(LocalProtocolError):
        pair.client.send_request(GET_A)


def _client_sends_tampered(pair: Pair, payload: bytes) -> int:
    """The client sends a Get, which reaches the server with `payload` instead."""
    stream = pair.client.send_request(GET_A)
    tampered = with_payload(pair.client.data_to_send(), payload)
    assert pair.server.receive_data(tampered) == []
    return stream


def test_unknown_request_tag_is_answered_unsupported() -> None:
    """A request with tag 59 (a newer peer's message) is answered UNSUPPORTED_MESSAGE (4006)
    on its stream; the connection stays up and the next request is served."""
    pair = ready_pair()
    stream = _client_sends_tampered(pair, msgspec.msgpack.encode([59, "from the future", 1]))
    client_events, server_events = pair.shuttle()
    assert server_events == []
    [response] = client_events
    assert isinstance(response, ResponseReceived)
    assert response.stream == stream
    assert isinstance(response.message, schema.Failure)
    assert response.message.code == errors.UNSUPPORTED_MESSAGE.code
    next_stream = pair.client.send_request(GET_A)
    assert pair.shuttle()[1] == [received(next_stream, GET_A)]


@pytest.mark.parametrize(
    ("key", "code"),
    [(["BAD", "x"], errors.INVALID_SPACE.code), (["space", ""], errors.INVALID_KEY.code)],
)
def test_request_with_an_invalid_key_is_answered_with_its_code(key: list[str], code: int) -> None:
    """A well-formed Get whose key fails validation is answered on its stream with the key's
    error code (1001 for a bad space) and never reaches the application; the connection
    continues."""
    pair = ready_pair()
    stream = _client_sends_tampered(pair, msgspec.msgpack.encode([22, key]))
    client_events, server_events = pair.shuttle()
    assert server_events == []
    [response] = client_events
    assert isinstance(response, ResponseReceived)
    assert response.stream == stream
    assert isinstance(response.message, schema.Failure)
    assert response.message.code == code
    next_stream = pair.client.send_request(GET_A)
    assert pair.shuttle()[1] == [received(next_stream, GET_A)]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\x91" * 5000 + b"\x00", id="nested arrays"),
        pytest.param(b"\x92\x3b" + b"\x91" * 5000 + b"\x00", id="tag then nested arrays"),
        pytest.param(msgspec.msgpack.encode([20]), id="missing fields"),
        pytest.param(msgspec.msgpack.encode({"a": 1}), id="a map"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x92\x16\x92\xa2\xff\xfe\xa1k", id="invalid UTF-8"),
        pytest.param(msgspec.msgpack.encode([22, ["space", "a"]]) + b"\x00", id="trailing byte"),
    ],
)
def test_malformed_request_payload_closes_with_protocol_error(payload: bytes) -> None:
    """A REQUEST whose payload is not a decodable message (including arrays nested deeper
    than the decoder's recursion limit) closes the connection with PROTOCOL_ERROR and a
    GoAway; it never raises."""
    server = ready_pair().server
    events = server.receive_data(encode_frame(FrameType.REQUEST, 1, payload))
    assert_failed(server, events, errors.PROTOCOL_ERROR.code)
    [(_, goaway)] = sent(server)
    assert isinstance(goaway, schema.GoAway)
    assert goaway.code == errors.PROTOCOL_ERROR.code


@pytest.mark.parametrize(
    ("role", "data"),
    [
        ("server", request_frame(2, GET_A)),
        ("server", request_frame(1, GET_A) + request_frame(1, GET_A)),
        ("server", request_frame(5, GET_A) + request_frame(3, GET_A)),
        ("server", request_frame(0, GET_A)),
        ("server", encode_frame(FrameType.RESPONSE, 1, schema.encode(schema.Done()))),
        ("server", encode_frame(FrameType.PUSH, 2, b"data")),
        ("server", encode_frame(FrameType.CONTROL, 1, schema.encode(schema.Ping(1)))),
        ("server", raw(FrameType.WINDOW, 2, b"\1\0\0")),
        ("client", encode_frame(FrameType.RESPONSE, 1, schema.encode(schema.Done()))),
        ("client", encode_frame(FrameType.RESPONSE, 2, schema.encode(schema.Done()))),
        ("client", request_frame(1, GET_A)),
        ("client", encode_frame(FrameType.PUSH, 3, b"data")),
        ("client", encode_frame(FrameType.PUSH, 0, b"data")),
        ("client", raw(FrameType.WINDOW, 2, b"\1\0\0\0")),
        ("client", raw(FrameType.CONTROL, 0, [59, 1])),
    ],
)
def test_stream_misuse_by_the_peer_is_a_protocol_error(role: str, data: bytes) -> None:
    """Requests on even, zero or non-increasing streams, responses on streams never opened,
    frames sent in the wrong direction, a malformed WINDOW or an unknown control message
    close the connection with PROTOCOL_ERROR."""
    pair = ready_pair()
    connection = pair.server if role == "server" else pair.client
    events = connection.receive_data(data)
    assert failures(events) == [errors.PROTOCOL_ERROR.code]
    assert connection.state is State.CLOSED


def test_cancel_before_the_response_arrives() -> None:
    """The client cancels a request the server is working on. If the server answers before
    it sees the CANCEL, the answer crosses it and the client drops it; if the CANCEL arrives
    first, the server reports StreamCancelled and its late answer is not sent. Either way
    the client never sees a response for that stream."""
    # The answer crosses the CANCEL.
    pair = ready_pair()
    stream = pair.client.send_request(GET_A)
    pair.shuttle()
    pair.client.cancel(stream)
    cancel = pair.client.data_to_send()
    pair.server.send_response(stream, schema.Change("{}", 1, 1))
    assert pair.client.receive_data(pair.server.data_to_send()) == []
    assert pair.server.receive_data(cancel) == []
    assert pair.client.in_flight == pair.server.in_flight == 0

    # The CANCEL arrives first.
    pair = ready_pair()
    stream = pair.client.send_request(GET_A)
    pair.shuttle()
    pair.client.cancel(stream)
    client_events, server_events = pair.shuttle()
    assert server_events == [StreamCancelled(stream)]
    pair.server.send_response(stream, schema.Change("{}", 1, 1))
    assert pair.server.data_to_send() == b""
    assert client_events == []
    assert pair.client.in_flight == pair.server.in_flight == 0


# -- push streams ----------------------------------------------------------------------------------


def test_push_window_limits_the_server_and_grants_extend_it() -> None:
    """The server may push at most the client's window (its Hello's push_window); one byte
    more is a LocalProtocolError. A grant from the client reaches the server as
    WindowUpdated with the new window, after which it may push that much more; END closes
    the stream on both sides."""
    pair = make_pair(client=new_client(push_window_bytes=1024))
    pair.client.initiate()
    pair.shuttle()
    server = pair.server
    stream = server.open_push()
    assert stream % 2 == 0
    assert server.push_window(stream) == 1024
    server.send_push(stream, b"a" * 1000)
    with pytest.raises(LocalProtocolError):
        server.send_push(stream, b"b" * 25)
    server.send_push(stream, b"b" * 24)
    assert server.push_window(stream) == 0
    client_events, _ = pair.shuttle()
    assert client_events == [
        PushReceived(stream, b"a" * 1000, False),
        PushReceived(stream, b"b" * 24, False),
    ]
    pair.client.grant(stream, 500)
    _, server_events = pair.shuttle()
    assert server_events == [WindowUpdated(stream, 500)]
    with pytest.raises(LocalProtocolError):
        server.send_push(stream, b"c" * 501)
    server.send_push(stream, b"c" * 500, end=True)
    client_events, _ = pair.shuttle()
    assert client_events == [PushReceived(stream, b"c" * 500, True)]
    with pytest.raises(LocalProtocolError):
        server.send_push(stream, b"")


@pytest.mark.parametrize("sizes", [[1025], [600, 425], [1024, 1]])
def test_push_beyond_the_client_window_is_a_flow_control_error(sizes: list[int]) -> None:
    """A hand-crafted server pushes more than the client's window allows: the client closes
    with FLOW_CONTROL_ERROR (4011) and sends a GoAway saying so."""
    pair = make_pair(client=new_client(push_window_bytes=1024))
    pair.client.initiate()
    pair.shuttle()
    events: list[Event] = []
    for size in sizes:
        events += pair.client.receive_data(encode_frame(FrameType.PUSH, 2, b"x" * size))
    assert_failed(pair.client, events, errors.FLOW_CONTROL_ERROR.code)
    [(_, goaway)] = sent(pair.client)
    assert isinstance(goaway, schema.GoAway)
    assert goaway.code == errors.FLOW_CONTROL_ERROR.code


def test_window_increment_out_of_range_is_a_flow_control_error() -> None:
    """A WINDOW frame with a zero increment, or one that would overflow the u32 window,
    closes the server's side with FLOW_CONTROL_ERROR."""
    for increment in (0, 2**32 - 1):
        pair = ready_pair()
        stream = pair.server.open_push()
        events = pair.server.receive_data(
            encode_frame(FrameType.WINDOW, stream, increment.to_bytes(4, "little"))
        )
        assert_failed(pair.server, events, errors.FLOW_CONTROL_ERROR.code)


def test_grant_that_would_overflow_the_window_is_refused_locally() -> None:
    """The client may not grant a window past 2**32 - 1: that is its own misuse
    (LocalProtocolError), caught before the server would close the connection for it."""
    pair = make_pair(client=new_client(push_window_bytes=1024))
    pair.client.initiate()
    pair.shuttle()
    stream = pair.server.open_push()
    pair.server.send_push(stream, b"x")
    pair.shuttle()
    with pytest.raises(LocalProtocolError):
        pair.client.grant(stream, 2**32 - 1023)
    pair.client.grant(stream, 2**32 - 1024)
    _, server_events = pair.shuttle()
    assert server_events == [WindowUpdated(stream, 2**32 - 1)]
    assert pair.server.state is State.READY


def test_client_cancels_a_push_stream() -> None:
    """The client abandons a push stream: the server reports StreamCancelled and may not push
    on it any more, and a push that crossed the CANCEL is dropped by the client."""
    pair = ready_pair()
    stream = pair.server.open_push()
    pair.server.send_push(stream, b"first")
    pair.shuttle()
    pair.client.cancel(stream)
    cancel = pair.client.data_to_send()
    assert [frame.type for frame, _ in frames_in(cancel)] == [FrameType.CANCEL]
    pair.server.send_push(stream, b"crossing")
    assert pair.client.receive_data(pair.server.data_to_send()) == []
    assert pair.server.receive_data(cancel) == [StreamCancelled(stream)]
    with pytest.raises(LocalProtocolError):
        pair.server.send_push(stream, b"late")
    assert pair.client.state is State.READY


# -- GoAway, ping, lifecycle -----------------------------------------------------------------------


def test_go_away() -> None:
    """After the server's GoAway the client reports GoAwayReceived (with the last stream the
    server accepted) and refuses to open streams; the request in flight still completes; a
    request that crosses the GoAway is answered SHUTTING_DOWN (4008) without reaching the
    application."""
    pair = ready_pair()
    stream = pair.client.send_request(GET_A)
    pair.shuttle()
    pair.server.go_away(errors.SHUTTING_DOWN, "stopping")
    client_events, _ = pair.shuttle()
    assert client_events == [GoAwayReceived(errors.SHUTTING_DOWN.code, "stopping", stream)]
    assert not pair.client.can_send_request()
    with pytest.raises(LocalProtocolError):
        pair.client.send_request(GET_A)
    pair.server.send_response(stream, schema.Done())
    client_events, _ = pair.shuttle()
    assert client_events == [ResponseReceived(stream, schema.Done())]
    assert pair.server.receive_data(request_frame(stream + 2, GET_A)) == []
    [(frame, answer)] = sent(pair.server)
    assert frame.stream == stream + 2
    assert isinstance(answer, schema.Failure)
    assert answer.code == errors.SHUTTING_DOWN.code


def test_ping_pong() -> None:
    """Either side's ping is answered with a pong carrying its token; the pinged side reports
    nothing."""
    pair = ready_pair()
    pair.client.ping(7)
    assert pair.shuttle() == ([PongReceived(7)], [])
    pair.server.ping(2**63)
    assert pair.shuttle() == ([], [PongReceived(2**63)])


def test_frames_before_a_bad_frame_are_processed() -> None:
    """A Ping and a frame with reserved bits set, in one chunk: the Ping is answered, then the
    connection fails, the same as when the bytes arrive one at a time."""
    chunk = encode_frame(FrameType.CONTROL, 0, schema.encode(schema.Ping(5)))
    chunk += FRAME_HEADER.pack(0, 0, int(FrameType.CONTROL), 0x80, 0)
    for deliver in (whole, byte_at_a_time):
        server = ready_pair().server
        events = deliver(server, chunk)
        assert_failed(server, events, errors.PROTOCOL_ERROR.code)
        told = [message for _, message in sent(server)]
        assert told[0] == schema.Pong(5)
        assert isinstance(told[1], schema.GoAway)


def test_oversize_frame_closes_with_frame_too_large() -> None:
    """A frame header announcing more than frame_bytes_max closes the connection with
    FRAME_TOO_LARGE (4002) from the header alone, in the handshake (Refuse) or after (GoAway)."""
    header = FRAME_HEADER.pack(limits.frame_bytes_max + 1, 1, int(FrameType.REQUEST), 0, 0)
    server = new_server()
    assert_failed(server, server.receive_data(header), errors.FRAME_TOO_LARGE.code)
    assert isinstance(sent(server)[0][1], schema.Refuse)
    server = ready_pair().server
    assert_failed(server, server.receive_data(header), errors.FRAME_TOO_LARGE.code)
    assert isinstance(sent(server)[0][1], schema.GoAway)


def test_a_closed_connection_ignores_input() -> None:
    """After ConnectionFailed, input yields no events and queues nothing; connection_lost
    reports CONNECTION_LOST only for a connection that was still open."""
    server = new_server()
    server.receive_data(handshake_frame(AUTH))
    sent(server)
    assert server.receive_data(handshake_frame(hello())) == []
    assert server.data_to_send() == b""
    assert server.connection_lost() is None

    pair = ready_pair()
    lost = pair.client.connection_lost()
    assert isinstance(lost, ConnectionFailed)
    assert lost.code == errors.CONNECTION_LOST.code
    assert pair.client.state is State.CLOSED
    assert pair.client.connection_lost() is None


def test_local_misuse_raises_local_protocol_error() -> None:
    """Calls not allowed for the role or state raise LocalProtocolError (this side's bug)."""
    with pytest.raises(LocalProtocolError):
        Connection(Role.CLIENT, make_config("c"), b"short")
    client = new_client()
    with pytest.raises(LocalProtocolError):
        client.send_request(GET_A)
    with pytest.raises(LocalProtocolError):
        client.ping(1)
    client.initiate()
    with pytest.raises(LocalProtocolError):
        client.initiate()
    server = new_server()
    with pytest.raises(LocalProtocolError):
        server.initiate()
    pair = ready_pair()
    with pytest.raises(LocalProtocolError):
        pair.server.send_request(GET_A)
    with pytest.raises(LocalProtocolError):
        pair.client.open_push()
    with pytest.raises(LocalProtocolError):
        pair.client.send_response(1, schema.Done())
    with pytest.raises(LocalProtocolError):
        pair.server.send_push(2, b"never opened")


# -- a whole session, delivered two ways -----------------------------------------------------------


def run_session(deliver: Deliver) -> Pair:
    """A scripted session touching every feature: handshake, multiplexed requests answered out
    of order, a ping, a push stream with a grant, a cancel, a GoAway."""
    pair = make_pair(client=new_client(push_window_bytes=2048), deliver=deliver)
    pair.client.initiate()
    pair.shuttle()
    update = schema.Patch(KEY_A, [Update(1, 1, redo='{"a":1}')])
    first = pair.client.send_request(GET_A)
    second = pair.client.send_request(update)
    third = pair.client.send_request(schema.Locate(KEY_B))
    pair.client.ping(42)
    pair.shuttle()
    pair.server.send_response(third, schema.Located(0, ["n1"], "n1"))
    pair.server.send_response(first, schema.Change('{"a":1}', 1, 1))
    push = pair.server.open_push()
    pair.server.send_push(push, b"p" * 2000)
    pair.shuttle()
    pair.client.grant(push, 1000)
    pair.client.cancel(second)
    pair.shuttle()
    pair.server.send_push(push, b"q" * 1048, end=True)
    pair.server.go_away(errors.SHUTTING_DOWN, "bye")
    pair.server.ping(9)
    pair.shuttle()
    return pair


def test_byte_at_a_time_session_gives_the_same_events() -> None:
    """The scripted session yields the same events on both sides, and the same bytes on the
    wire, whether every chunk is delivered whole or one byte at a time."""
    at_once = run_session(whole)
    bytewise = run_session(byte_at_a_time)
    assert bytewise.client_events == at_once.client_events
    assert bytewise.server_events == at_once.server_events
    assert bytewise.to_server == at_once.to_server
    assert bytewise.to_client == at_once.to_client
    kinds = {type(event) for event in at_once.client_events + at_once.server_events}
    assert kinds == {
        HandshakeComplete,
        RequestReceived,
        ResponseReceived,
        PongReceived,
        PushReceived,
        WindowUpdated,
        StreamCancelled,
        GoAwayReceived,
    }
    assert not failures(at_once.client_events + at_once.server_events)


def test_frames_before_the_handshake_are_held_to_a_few_kib() -> None:
    """An unauthenticated peer cannot make the server buffer a large frame: a header
    announcing more than `limits.handshake_frame_bytes_max` before Ready fails the
    connection with FRAME_TOO_LARGE at once, from the header alone."""
    server = new_server()
    header = FRAME_HEADER.pack(limits.handshake_frame_bytes_max + 1, 0, FrameType.HANDSHAKE, 0, 0)
    events = server.receive_data(header)
    assert [type(event) for event in events] == [ConnectionFailed]
    failed = events[0]
    assert isinstance(failed, ConnectionFailed)
    assert failed.code == errors.FRAME_TOO_LARGE.code
    assert server.state is State.CLOSED


def test_after_the_handshake_frames_may_reach_the_configured_limit() -> None:
    """Once Ready, the full frame limit applies: a request larger than the handshake limit
    is accepted and answered."""
    pair = ready_pair()
    big = "x" * (limits.handshake_frame_bytes_max * 4)
    key = Key("space-one", "doc")
    update = schema.Initialize(key, Update(1, 1, redo=f'{{"t":"{big}"}}'))
    stream = pair.client.send_request(update)
    _, server_events = pair.shuttle()
    received = [event for event in server_events if isinstance(event, RequestReceived)]
    assert [event.stream for event in received] == [stream]


# -- what the runtime needs to bound buffering and answer every request (issue 7, rows 11-12)


def test_buffered_bytes_and_the_announced_size_of_a_partial_frame() -> None:
    """Fed a request frame a piece at a time, the server reports the bytes it holds for the
    incomplete frame and the frame's announced size, counts the frame once it completes,
    and then holds nothing."""
    pair = ready_pair()
    frame = request_frame(1, schema.Get(KEY_A))
    before = pair.server.frames_received
    assert pair.server.buffered == 0 and pair.server.pending_frame_bytes() == 0
    assert pair.server.receive_data(frame[:5]) == []
    assert pair.server.buffered == 5 and pair.server.pending_frame_bytes() == 5
    assert pair.server.receive_data(frame[5:-1]) == []
    assert pair.server.buffered == len(frame) - 1
    assert pair.server.pending_frame_bytes() == len(frame)
    assert pair.server.frames_received == before
    assert pair.server.receive_data(frame[-1:]) == [received(1, schema.Get(KEY_A))]
    assert pair.server.buffered == 0
    assert pair.server.frames_received == before + 1


def test_abandon_tells_the_peer_why_closes_and_frees_the_buffer() -> None:
    """The server gives up on a connection holding part of a frame: the peer gets a GoAway
    with the code and message, the connection is closed (later input is ignored), nothing
    stays buffered, and a second abandon reports nothing."""
    pair = ready_pair()
    frame = request_frame(1, schema.Get(KEY_A))
    pair.server.receive_data(frame[:-1])
    event = pair.server.abandon(errors.FRAME_TIMEOUT, "too slow")
    assert event == ConnectionFailed(errors.FRAME_TIMEOUT.code, "too slow")
    assert pair.server.state is State.CLOSED
    assert pair.server.buffered == 0
    assert messages(pair.server.data_to_send()) == [
        schema.GoAway(errors.FRAME_TIMEOUT.code, "too slow", 0)
    ]
    assert pair.server.receive_data(frame[-1:]) == []
    assert pair.server.abandon(errors.OVERLOADED, "again") is None


def test_abandon_during_the_handshake_refuses() -> None:
    """Before Ready the peer is told with Refuse, the handshake's own failure message."""
    server = new_server()
    event = server.abandon(errors.OVERLOADED, "full")
    assert event is not None and event.code == errors.OVERLOADED.code
    assert messages(server.data_to_send()) == [schema.Refuse(errors.OVERLOADED.code, "full")]


def test_an_answer_that_does_not_encode_leaves_its_stream_open() -> None:
    """send_response raises for a message msgspec cannot encode (a lone surrogate) and keeps
    the stream open, so the caller can still answer it, once, with a Failure."""
    pair = ready_pair()
    stream = pair.client.send_request(schema.Get(KEY_A))
    pair.shuttle()
    with pytest.raises(UnicodeEncodeError):
        pair.server.send_response(stream, schema.Change("\ud800", 1, 1))
    assert pair.server.in_flight == 1
    failure = schema.Failure(errors.INTERNAL.code, "UnicodeEncodeError")
    pair.server.send_response(stream, failure)
    assert pair.server.in_flight == 0
    client_events, _ = pair.shuttle()
    assert client_events == [ResponseReceived(stream, failure)]
