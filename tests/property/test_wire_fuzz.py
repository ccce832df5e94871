"""Fuzzing the connection with hypothesis: whatever bytes a peer sends, `receive_data` returns
events and never raises; a protocol error is reported once, as the last event, closes that
connection (later input is ignored) and queues a Refuse or GoAway telling the peer why.

Inputs: (a) arbitrary bytes and structured-but-wrong frames into a fresh server and a fresh
client (after `initiate`); (b) the same into both sides after a completed handshake; (c)
mutations (bit flips, truncations, insertions, deletions, overwrites) of a recorded valid
session, replayed into a fresh server and, with its own API calls interleaved, into a fresh
client. In (c) every request that reaches the application must be a valid schema Request.
Every case is also delivered in arbitrary chunks and one byte at a time: the events and the
bytes sent back must not depend on how the input was split.

Set BRAID_WIRE_FUZZ_EXAMPLES (default 150) for a longer run. The standalone coverage-guided
fuzzer for the same targets is tests/fuzz/atheris_wire.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braid import errors, limits
from braid.core.wire import schema
from braid.core.wire.connection import (
    NONCE_BYTES,
    Connection,
    ConnectionConfig,
    ConnectionFailed,
    Event,
    LocalProtocolError,
    RequestReceived,
    ResponseReceived,
    Role,
    State,
)
from braid.core.wire.frames import FRAME_HEADER, FrameDecoder, FrameType
from braid.model import ComputeMethod, Key, Update
from tests.support.wire import complete_handshake

SECRET = b"fuzzing secret"
CLUSTER = "fuzz"
CLIENT_NONCE = b"C" * NONCE_BYTES
SERVER_NONCE = b"S" * NONCE_BYTES
FRAME_BYTES_MAX = 64 * 1024
EVENT_TYPES = typing.get_args(Event)
FUZZ = settings(
    max_examples=int(os.environ.get("BRAID_WIRE_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def new_connection(role: Role, push_window_bytes: int = 4096) -> Connection:
    config = ConnectionConfig(
        cluster=CLUSTER,
        name=role.value,
        secret=SECRET,
        streams_max=4,
        frame_bytes_max=FRAME_BYTES_MAX,
        push_window_bytes=push_window_bytes,
    )
    return Connection(role, config, CLIENT_NONCE if role is Role.CLIENT else SERVER_NONCE)


def ready_pair() -> tuple[Connection, Connection]:
    return complete_handshake(new_connection(Role.CLIENT), new_connection(Role.SERVER))


# -- strategies ----------------------------------------------------------------------------------

KEY = Key("space", "doc")
VALID_MESSAGES: list[msgspec.Struct] = [
    schema.Hello(1, 1, CLUSTER, "peer", CLIENT_NONCE),
    schema.Welcome(1, CLUSTER, "peer", SERVER_NONCE, b"p" * 32),
    schema.Auth(b"p" * 32),
    schema.Ready(4, FRAME_BYTES_MAX),
    schema.Refuse(4005, "no"),
    schema.Get(KEY),
    schema.Patch(KEY, [Update(1, 1, redo='{"a":1}')]),
    schema.Compute(KEY, ComputeMethod.HEAD_PATCH, 0),
    schema.Inventory(),
    schema.Done(),
    schema.Change("{}", 1, 1),
    schema.Located(0, ["n"], "n"),
    schema.Failure(4007, "busy"),
    schema.GoAway(4008, "bye", 1),
    schema.Ping(1),
    schema.Pong(1),
]
TAGS = sorted({int(str(type(message).__struct_config__.tag)) for message in VALID_MESSAGES})

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=12,
)

payloads = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(VALID_MESSAGES).map(schema.encode),
    st.builds(
        lambda tag, values: msgspec.msgpack.encode([tag, *values]),
        st.sampled_from(TAGS) | st.integers(-5, 300),
        st.lists(msgpack_values, max_size=6),
    ),
    st.integers(0, 2**32 - 1).map(lambda increment: increment.to_bytes(4, "little")),
    st.integers(1, 3000).map(lambda depth: b"\x92\x16" + b"\x91" * depth + b"\x00"),
    st.just(b""),
)

raw_frames = st.builds(
    lambda length_delta, stream, kind, flags, reserved, payload: (
        FRAME_HEADER.pack(max(0, len(payload) + length_delta), stream, kind, flags, reserved)
        + payload
    ),
    st.sampled_from([0] * 8 + [-1, 1, FRAME_BYTES_MAX]),
    st.sampled_from([0, 1, 2, 3, 4, 5, 7]) | st.integers(0, 2**32 - 1),
    st.sampled_from([int(kind) for kind in FrameType]) | st.integers(0, 255),
    st.sampled_from([0, 1]) | st.integers(0, 255),
    st.sampled_from([0] * 8) | st.integers(0, 2**16 - 1),
    payloads,
)

byte_streams = st.one_of(
    st.binary(max_size=400),
    st.lists(raw_frames, max_size=6).map(b"".join),
    st.builds(
        lambda frames, tail: b"".join(frames) + tail,
        st.lists(raw_frames, max_size=4),
        st.binary(max_size=30),
    ),
)

cuts = st.lists(st.integers(0, 10_000), max_size=6)


def split(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted({point % (len(data) + 1) for point in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


# -- the invariant ---------------------------------------------------------------------------------


def decode_sent(data: bytes) -> list[object]:
    """What a connection queued must itself be valid frames and messages."""
    decoder = FrameDecoder(limits.frame_bytes_max)
    frames = decoder.feed(data)
    assert decoder.buffered == 0
    told: list[object] = []
    for frame in frames:
        if frame.type is FrameType.HANDSHAKE:
            told.append(schema.handshake_decoder.decode(frame.payload))
        elif frame.type is FrameType.CONTROL:
            told.append(schema.control_decoder.decode(frame.payload))
        elif frame.type is FrameType.RESPONSE:
            told.append(schema.response_decoder.decode(frame.payload))
        elif frame.type is FrameType.REQUEST:
            told.append(schema.request_decoder.decode(frame.payload))
        else:
            told.append(frame)
    return told


def check_events(connection: Connection, events: list[Event], sent: bytes) -> None:
    """The events are events; requests and responses are valid messages; a failure is the
    single last event, closes the connection, and was explained to the peer."""
    assert all(isinstance(event, EVENT_TYPES) for event in events)
    for event in events:
        if isinstance(event, RequestReceived):
            assert isinstance(event.message, schema.REQUEST_TYPES)
            encoded = schema.encode(event.message)
            assert schema.request_decoder.decode(encoded) == event.message
        if isinstance(event, ResponseReceived):
            assert isinstance(event.message, schema.RESPONSE_TYPES)
    told = decode_sent(sent)
    failed = [event for event in events if isinstance(event, ConnectionFailed)]
    if not failed:
        assert connection.state is not State.CLOSED
        return
    [failure] = failed
    assert events[-1] is failure
    assert connection.state is State.CLOSED
    if not failure.message.startswith("refused:"):  # else the peer refused us: nothing to say
        explanation = told[-1]
        assert isinstance(explanation, schema.Refuse | schema.GoAway)
        assert explanation.code == failure.code
    assert connection.receive_data(b"\x00" * 40) == []
    assert connection.data_to_send() == b""


def feed(make: Callable[[], Connection], chunks: list[bytes]) -> tuple[list[Event], bytes]:
    """Feed the chunks to a fresh connection, checking the invariant after each."""
    connection = make()
    events: list[Event] = []
    sent = b""
    for chunk in chunks:
        closed_before = connection.state is State.CLOSED
        new_events = connection.receive_data(chunk)
        new_sent = connection.data_to_send()
        if closed_before:
            assert (new_events, new_sent) == ([], b"")
        else:
            check_events(connection, new_events, new_sent)
        events += new_events
        sent += new_sent
    return events, sent


def check_any_split(make: Callable[[], Connection], data: bytes, points: list[int]) -> None:
    """The invariant holds and the outcome is the same for whole, split and bytewise input."""
    whole = feed(make, [data])
    assert feed(make, split(data, points)) == whole
    assert feed(make, [bytes([byte]) for byte in data]) == whole


def fresh_server() -> Connection:
    return new_connection(Role.SERVER)


def initiated_client() -> Connection:
    client = new_connection(Role.CLIENT)
    client.initiate()
    client.data_to_send()
    return client


def ready_server() -> Connection:
    return ready_pair()[1]


def ready_client() -> Connection:
    return ready_pair()[0]


# -- (a) and (b): arbitrary input at every stage ------------------------------------------------


@FUZZ
@given(byte_streams, cuts)
def test_fresh_server_survives_any_bytes(data: bytes, points: list[int]) -> None:
    """(a) A server that has seen nothing yet: any input yields events or a protocol error."""
    check_any_split(fresh_server, data, points)


@FUZZ
@given(byte_streams, cuts)
def test_initiated_client_survives_any_bytes(data: bytes, points: list[int]) -> None:
    """(a) A client that sent its Hello: any input yields events or a protocol error."""
    check_any_split(initiated_client, data, points)


@FUZZ
@given(byte_streams, cuts)
def test_ready_server_survives_any_bytes(data: bytes, points: list[int]) -> None:
    """(b) A server after a completed handshake (READY): the same invariant."""
    check_any_split(ready_server, data, points)


@FUZZ
@given(byte_streams, cuts)
def test_ready_client_survives_any_bytes(data: bytes, points: list[int]) -> None:
    """(b) A client after a completed handshake (READY): the same invariant."""
    check_any_split(ready_client, data, points)


# -- (c) mutations of a recorded session -------------------------------------------------------


ClientStep = tuple[Any, ...]  # (kind, arguments...)


@dataclass
class Recording:
    """A valid session: every byte the client sent, and the client's own history as steps
    (API calls and the chunks it received), for replay."""

    to_server: bytearray = field(default_factory=bytearray)
    client_steps: list[ClientStep] = field(default_factory=list)


def record_session() -> Recording:
    recording = Recording()
    client, server = new_connection(Role.CLIENT, push_window_bytes=2048), fresh_server()

    def act(*step: Any) -> Any:
        recording.client_steps.append(step)
        return client_step(client, step)

    def shuttle() -> None:
        while True:
            upstream, downstream = client.data_to_send(), server.data_to_send()
            if not upstream and not downstream:
                return
            recording.to_server += upstream
            server.receive_data(upstream)
            if downstream:
                recording.client_steps.append(("deliver", downstream))
                client.receive_data(downstream)

    act("initiate")
    shuttle()
    first = act("request", schema.Get(KEY))
    second = act("request", schema.Patch(KEY, [Update(1, 2, "me", "r1", '{"a":1}', "{}")]))
    third = act("request", schema.Snapshot(Key("other.space", "k"), 2, '{"a":1}', 1))
    act("ping", 7)
    shuttle()
    server.send_response(third, schema.Count(1))
    server.send_response(first, schema.Change('{"a":1}', 2, 2))
    push = server.open_push()
    server.send_push(push, b"p" * 2000)
    shuttle()
    act("grant", push, 1500)
    act("cancel", second)
    act("request", schema.Inventory())
    shuttle()
    server.send_push(push, b"q" * 1500, end=True)
    server.send_response(second + 4, schema.InventoryList([schema.InventoryItem(KEY, 2, 1, 7)]))
    server.ping(3)
    server.go_away(errors.SHUTTING_DOWN, "bye")
    shuttle()
    assert client.state is State.READY
    assert server.state is State.READY
    return recording


def client_step(client: Connection, step: ClientStep) -> Any:
    """Replay one client step; API calls the mutated session no longer allows are skipped
    (they raise LocalProtocolError, this side's misuse, which is not what is under test)."""
    kind = step[0]
    with contextlib.suppress(LocalProtocolError):
        if kind == "deliver":
            return client.receive_data(step[1])
        if kind == "initiate":
            client.initiate()
        elif kind == "request" and client.can_send_request():
            return client.send_request(step[1])
        elif kind == "cancel":
            client.cancel(step[1])
        elif kind == "grant":
            client.grant(step[1], step[2])
        elif kind == "ping" and client.state is State.READY:
            client.ping(step[1])
    return None


RECORDING = record_session()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 2**20)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 16)),
    st.tuples(st.just("overwrite"), st.integers(0, 2**20), st.binary(min_size=1, max_size=8)),
)


def mutate(data: bytes, mutations: list[tuple[Any, ...]]) -> bytes:
    result = bytearray(data)
    for operation, *arguments in mutations:
        at = arguments[0] % (len(result) + 1)
        if operation == "flip" and at < len(result):
            result[at] ^= 1 << arguments[1]
        elif operation == "truncate":
            del result[at:]
        elif operation == "insert":
            result[at:at] = arguments[1]
        elif operation == "delete":
            del result[at : at + arguments[1]]
        elif operation == "overwrite":
            result[at : at + len(arguments[1])] = arguments[1]
    return bytes(result)


def test_the_recording_replays_cleanly() -> None:
    """Unmutated, the recorded bytes replay into fresh connections without any failure and
    deliver every request, so the mutation tests start from a valid session."""
    events, _ = feed(fresh_server, [bytes(RECORDING.to_server)])
    assert not [event for event in events if isinstance(event, ConnectionFailed)]
    assert sum(isinstance(event, RequestReceived) for event in events) == 4
    client = new_connection(Role.CLIENT, push_window_bytes=2048)
    client_events: list[Event] = []
    for step in RECORDING.client_steps:
        result = client_step(client, step)
        if step[0] == "deliver":
            client_events += result
    assert not [event for event in client_events if isinstance(event, ConnectionFailed)]
    assert sum(isinstance(event, ResponseReceived) for event in client_events) == 3


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=3), cuts)
def test_mutated_session_into_a_server(mutations: list[tuple[Any, ...]], points: list[int]) -> None:
    """(c) The client's half of a valid session, mutated: the server never raises, every
    request it delivers is a valid schema Request, and the outcome does not depend on how the
    bytes are split."""
    data = mutate(bytes(RECORDING.to_server), mutations)
    check_any_split(fresh_server, data, points)


@FUZZ
@given(st.integers(0, 100), st.lists(mutation, min_size=1, max_size=3))
def test_mutated_session_into_a_client(which: int, mutations: list[tuple[Any, ...]]) -> None:
    """(c) The server's half of a valid session with one received chunk mutated, replayed
    into a client making the same API calls: no exception, only valid responses, and the
    failure invariant."""
    deliveries = [i for i, step in enumerate(RECORDING.client_steps) if step[0] == "deliver"]
    target = deliveries[which % len(deliveries)]
    client = new_connection(Role.CLIENT, push_window_bytes=2048)
    for index, step in enumerate(RECORDING.client_steps):
        if step[0] != "deliver":
            client_step(client, step)
            continue
        data = mutate(step[1], mutations) if index == target else step[1]
        decode_sent(client.data_to_send())
        closed_before = client.state is State.CLOSED
        events = client.receive_data(data)
        if closed_before:
            assert (events, client.data_to_send()) == ([], b"")
        else:
            check_events(client, events, client.data_to_send())
