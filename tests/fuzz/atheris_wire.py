"""Coverage-guided fuzzing of the wire protocol with atheris (libFuzzer for Python).

Not collected by pytest (the name does not start with `test_`); the hypothesis suite in
tests/property/test_wire_fuzz.py checks the same invariants on every `make test`. Run this
for a longer, coverage-guided search:

    .venv/bin/pip install -e '.[fuzz]'   # atheris: a wheel on Linux x86-64, else clang
    .venv/bin/python tests/fuzz/atheris_wire.py --write-seeds .fuzz-corpus
    .venv/bin/python tests/fuzz/atheris_wire.py .fuzz-corpus -max_total_time=300

`--write-seeds DIR` records a valid session (handshake, requests, push, grant, cancel,
ping, GoAway) as one seed per target, so the search starts past the handshake.

Any libFuzzer flag works (`-runs=N`, `-jobs=N`, `-max_len=N`); a crash is written to
`crash-<sha1>` in the working directory and replays with
`.venv/bin/python tests/fuzz/atheris_wire.py crash-<sha1>`.

Each input's first byte picks the target: a FrameDecoder, or a Connection that is a fresh
server, a client that sent its Hello, or either side after a completed handshake; the second
byte picks a chunk size. The invariants: the decoder raises nothing but FrameError, with the
same frames and error however the input is split; `receive_data` never raises, a
ConnectionFailed is the single last event, closes the connection and is explained to the
peer by a Refuse or GoAway with its code, and a closed connection ignores further input.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import atheris

# Run as a script, this directory heads sys.path: the repository root goes there too, so the
# shared test helpers import as they do under pytest.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.wire import complete_handshake

with atheris.instrument_imports():
    from braid import errors
    from braid.core.wire import schema
    from braid.core.wire.connection import (
        NONCE_BYTES,
        Connection,
        ConnectionConfig,
        ConnectionFailed,
        Event,
        RequestReceived,
        Role,
        State,
    )
    from braid.core.wire.frames import Frame, FrameDecoder, FrameError, FrameType
    from braid.model import Key, Update

FRAME_BYTES_MAX = 64 * 1024
EVENT_TYPES = typing.get_args(Event)


def new_connection(role: Role) -> Connection:
    config = ConnectionConfig(
        cluster="fuzz",
        name=role.value,
        secret=b"fuzzing secret",
        streams_max=4,
        frame_bytes_max=FRAME_BYTES_MAX,
        push_window_bytes=4096,
    )
    nonce = (b"C" if role is Role.CLIENT else b"S") * NONCE_BYTES
    return Connection(role, config, nonce)


def ready_pair() -> tuple[Connection, Connection]:
    return complete_handshake(new_connection(Role.CLIENT), new_connection(Role.SERVER))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


def decode_frames(pieces: list[bytes]) -> tuple[list[Frame], str | None]:
    decoder = FrameDecoder(FRAME_BYTES_MAX)
    frames: list[Frame] = []
    try:
        for piece in [*pieces, b""]:
            frames += decoder.feed(piece)
    except FrameError as error:
        return frames, error.info.name
    return frames, None


def check_decoder(data: bytes, size: int) -> None:
    whole = decode_frames([data])
    assert decode_frames(chunks(data, size)) == whole
    assert decode_frames(chunks(data, 1)) == whole


def explained(sent: bytes) -> list[object]:
    told: list[object] = []
    for frame in FrameDecoder(FRAME_BYTES_MAX).feed(sent):
        if frame.type is FrameType.HANDSHAKE:
            told.append(schema.handshake_decoder.decode(frame.payload))
        elif frame.type is FrameType.CONTROL:
            told.append(schema.control_decoder.decode(frame.payload))
    return told


def check_connection(connection: Connection, data: bytes, size: int) -> None:
    for piece in chunks(data, size):
        closed_before = connection.state is State.CLOSED
        events = connection.receive_data(piece)
        sent = connection.data_to_send()
        if closed_before:
            assert events == [] and sent == b""
            continue
        assert all(isinstance(event, EVENT_TYPES) for event in events)
        for event in events:
            if isinstance(event, RequestReceived):
                encoded = schema.encode(event.message)
                assert schema.request_decoder.decode(encoded) == event.message
        failed = [event for event in events if isinstance(event, ConnectionFailed)]
        if not failed:
            continue
        assert len(failed) == 1 and events[-1] is failed[0]
        assert connection.state is State.CLOSED
        if not failed[0].message.startswith("refused:"):
            told = explained(sent)
            assert isinstance(told[-1], schema.Refuse | schema.GoAway)
            assert told[-1].code == failed[0].code


def initiated_client() -> Connection:
    client = new_connection(Role.CLIENT)
    client.initiate()
    client.data_to_send()
    return client


TARGETS = (
    lambda: new_connection(Role.SERVER),
    initiated_client,
    lambda: ready_pair()[1],
    lambda: ready_pair()[0],
)


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    target, size, body = data[0] % (len(TARGETS) + 1), data[1] % 64 + 1, data[2:]
    if target == len(TARGETS):
        check_decoder(body, size)
    else:
        check_connection(TARGETS[target](), body, size)


def record_session() -> tuple[bytes, bytes, int, int]:
    """A valid session: (client → server bytes, server → client bytes, and where each side's
    handshake ends in them)."""
    client, server = new_connection(Role.CLIENT), new_connection(Role.SERVER)
    upstream, downstream = bytearray(), bytearray()

    def shuttle() -> None:
        while True:
            up, down = client.data_to_send(), server.data_to_send()
            if not up and not down:
                return
            upstream.extend(up)
            downstream.extend(down)
            server.receive_data(up)
            client.receive_data(down)

    client.initiate()
    shuttle()
    handshake_up, handshake_down = len(upstream), len(downstream)
    key = Key("space", "doc")
    first = client.send_request(schema.Get(key))
    second = client.send_request(schema.Patch(key, [Update(1, 1, redo='{"a":1}')]))
    client.send_request(schema.Locate(key))
    client.ping(1)
    shuttle()
    server.send_response(first, schema.Change('{"a":1}', 1, 1))
    push = server.open_push()
    server.send_push(push, b"p" * 3000)
    shuttle()
    client.grant(push, 2000)
    client.cancel(second)
    shuttle()
    server.send_push(push, b"q" * 2000, end=True)
    server.go_away(errors.SHUTTING_DOWN, "bye")
    shuttle()
    return bytes(upstream), bytes(downstream), handshake_up, handshake_down


def write_seeds(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    upstream, downstream, handshake_up, handshake_down = record_session()
    seeds = {
        "fresh-server": bytes([0, 63]) + upstream,
        "initiated-client": bytes([1, 63]) + downstream,
        "ready-server": bytes([2, 63]) + upstream[handshake_up:],
        "ready-client": bytes([3, 63]) + downstream[handshake_down:],
        "decoder": bytes([4, 7]) + upstream,
    }
    for name, seed in seeds.items():
        (directory / f"seed-{name}").write_bytes(seed)
    print(f"wrote {len(seeds)} seeds to {directory}")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        write_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
