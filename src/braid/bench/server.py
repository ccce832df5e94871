"""`braid bench server`: get and patch through the client against a real `braid serve`.

A `braid serve` process on 127.0.0.1 (port picked by the OS) and this process as the client,
so the two share the machine's cores as a real deployment's client and node would share a
host. For 1, 16 and 64 requests in flight (one document per in-flight slot, one writer each)
it measures acknowledged patches/s and gets/s with p50 and p99 latency, and the CPU each
costs: user+sys CPU time per op of the server process (all its threads: event loop, WAL
writer, checkpoints, and the kernel work they ask for; Linux: the process's CPU clock read
from outside, once the server is idle, so that work a run sets off, such as a checkpoint every
65,536 records, counts in that run) and, separately, of this client process.

Floors measured in the same run:
- echo: a raw asyncio echo server process answering frames of the same sizes as a patch
  request and its response (the cost of the loopback round trip and two event loops);
- fsync: pwrite + fdatasync into a preallocated file (what one durable patch must wait for),
  sampled before every run and summarized over all samples.

The single-request patch p50 is reported as a ratio to (echo p50 + fsync p50).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import braid
from braid.bench.common import percentile, run_and_report, run_loop
from braid.bench.engine import DELTAS_PER_DOCUMENT, fsync_samples, make_delta
from braid.core.wire import schema
from braid.core.wire.frames import FRAME_HEADER, FRAME_HEADER_SIZE, FrameType, encode_frame
from braid.model import Key, Update

IN_FLIGHT = (1, 16, 64)
SECRET = "bench-cluster-secret"


def _start(arguments: list[str], ready: Path) -> tuple[subprocess.Popen[bytes], str]:
    environment = dict(os.environ, BRAID_SECRET=SECRET)
    process = subprocess.Popen(
        [sys.executable, *arguments], env=environment, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text():
            return process, ready.read_text().strip()
        if process.poll() is not None:
            raise RuntimeError(f"{arguments} exited with {process.returncode}")
        time.sleep(0.02)
    process.kill()
    raise RuntimeError(f"{arguments} did not start within 15 s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- the echo floor ------------------------------------------------------------------------


class _EchoServer(asyncio.Protocol):
    """Answers every frame with a frame of `reply` payload bytes."""

    def __init__(self, reply: int) -> None:
        self._buffer = bytearray()
        self._reply = reply
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        out = bytearray()
        while len(self._buffer) >= FRAME_HEADER_SIZE:
            length, stream, _kind, _flags, _reserved = FRAME_HEADER.unpack_from(self._buffer)
            if len(self._buffer) < FRAME_HEADER_SIZE + length:
                break
            del self._buffer[: FRAME_HEADER_SIZE + length]
            out += encode_frame(FrameType.RESPONSE, stream, bytes(self._reply))
        if out and self._transport is not None:
            self._transport.write(bytes(out))


async def _echo_main(ready: Path, reply: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _EchoServer(reply), "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    ready.write_text(f"{host}:{port}")
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


class _EchoClient(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = bytearray()
        self.waiting: dict[int, asyncio.Future[None]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= FRAME_HEADER_SIZE:
            length, stream, _kind, _flags, _reserved = FRAME_HEADER.unpack_from(self._buffer)
            if len(self._buffer) < FRAME_HEADER_SIZE + length:
                break
            del self._buffer[: FRAME_HEADER_SIZE + length]
            self.waiting.pop(stream).set_result(None)


async def _echo_load(
    address: str, pid: int, request_bytes: int, in_flight: int, seconds: float
) -> dict[str, float]:
    host, port = address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_EchoClient, host, int(port))
    payload = bytes(request_bytes)
    next_stream = [1]

    async def one() -> None:
        stream = next_stream[0]
        next_stream[0] += 2
        future: asyncio.Future[None] = loop.create_future()
        client.waiting[stream] = future
        transport.write(encode_frame(FrameType.REQUEST, stream, payload))
        await future

    result = await _drive("echo", lambda _slot, _seq: one(), in_flight, seconds, pid)
    transport.close()
    return result


# -- the driver ------------------------------------------------------------------------------


def process_cpu_seconds(pid: int) -> float:
    """User+sys CPU seconds process `pid` has used, all its threads (Linux: the process's
    CPU clock, MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED); nanoseconds, not ticks)."""
    return time.clock_gettime(((~pid) << 3) | 2)


async def _quiet_cpu_seconds(pid: int, seconds_max: float = 10.0) -> float:
    """Process `pid`'s CPU seconds once it is idle (under 1% of a core over 100 ms; waiting at
    most `seconds_max`): the work a run set off, such as a checkpoint, counts in that run."""
    deadline = time.monotonic() + seconds_max
    used = process_cpu_seconds(pid)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        used, before = process_cpu_seconds(pid), used
        if used - before < 0.001:
            break
    return used


async def _drive(
    kind: str,
    call: Callable[[int, int], Awaitable[None]],
    in_flight: int,
    seconds: float,
    pid: int,
) -> dict[str, float]:
    """`in_flight` workers call `call(slot, seq)` back to back against the server process
    `pid`; the `kind`'s ops/s, p50 ms, p99 ms, and per op the server's and this client's
    CPU us."""
    latencies: list[float] = []
    clock = time.perf_counter
    server_cpu = await _quiet_cpu_seconds(pid)
    start, client_cpu = clock(), time.process_time()
    deadline = start + seconds

    async def worker(slot: int) -> None:
        seq = 2
        while clock() < deadline:
            begun = clock()
            await call(slot, seq)
            latencies.append(clock() - begun)
            seq += 1

    await asyncio.gather(*(worker(slot) for slot in range(in_flight)))
    elapsed, client_cpu = clock() - start, time.process_time() - client_cpu
    server_cpu = await _quiet_cpu_seconds(pid) - server_cpu
    return {
        f"{kind}_ops_per_second": round(len(latencies) / elapsed, 1),
        f"{kind}_p50_ms": round(percentile(latencies, 50) * 1000, 3),
        f"{kind}_p99_ms": round(percentile(latencies, 99) * 1000, 3),
        f"{kind}_server_cpu_us_per_op": round(server_cpu / len(latencies) * 1e6, 2),
        f"{kind}_client_cpu_us_per_op": round(client_cpu / len(latencies) * 1e6, 2),
    }


async def _braid_load(
    address: str, pid: int, in_flight: int, seconds: float, run: int
) -> dict[str, float]:
    async with braid.connect([address], secret=SECRET, timeout=30) as client:
        keys = [Key("bench", f"r{run}-n{in_flight}-s{slot}") for slot in range(in_flight)]
        for key in keys:
            await client.initialize(key, Update(1, 1, redo="{}", undo="{}"))

        async def patch(slot: int, seq: int) -> None:
            # A fresh document every DELTAS_PER_DOCUMENT deltas (see bench.engine): its
            # initialize is timed with that one patch, 1 call in 2,000.
            generation, offset = divmod(seq - 2, DELTAS_PER_DOCUMENT)
            key = Key("bench", f"{keys[slot].key}-{generation}") if generation else keys[slot]
            if generation and offset == 0:
                await client.initialize(key, Update(1, 1, redo="{}", undo="{}"))
            await client.patch(key, [make_delta(offset + 2)])

        async def get(slot: int, seq: int) -> None:
            await client.get(keys[slot])

        patched = await _drive("patch", patch, in_flight, seconds, pid)
        got = await _drive("get", get, in_flight, seconds, pid)
    return patched | got


def _sizes() -> tuple[int, int]:
    """Payload bytes of a 256-byte-delta patch request and of its response."""
    request = schema.encode(schema.Patch(Key("bench", "r0-n64-s63"), [make_delta(123456)]))
    return len(request), len(schema.encode(schema.Done()))


def run(in_flight_counts: list[int], seconds: float, runs: int, root: Path) -> dict[str, object]:
    # The fsync floor is sampled before every run, like the echo, and summarized over all
    # of them: one sample taken at the start would say more about that moment than about
    # the disk the runs saw.
    fsyncs = fsync_samples(root)
    print(f"fsync floor at the start: p50 {percentile(fsyncs, 50) * 1000:.3f} ms")
    request_bytes, response_bytes = _sizes()
    echo_ready = root / "echo.ready"
    echo, echo_address = _start(
        ["-m", "braid.bench.server", "--echo", str(echo_ready), str(response_bytes)], echo_ready
    )
    node_ready = root / "node.ready"
    node, address = _start(
        [
            "-m",
            "braid.cli.main",
            "serve",
            "--data",
            str(root / "store"),
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(node_ready),
        ],
        node_ready,
    )
    rows: list[dict[str, float]] = []
    raw: list[dict[str, float]] = []
    try:
        for count in in_flight_counts:
            samples = []
            for index in range(runs):
                echoed = run_loop(_echo_load(echo_address, echo.pid, request_bytes, count, seconds))
                fsyncs += fsync_samples(root)
                measured = run_loop(_braid_load(address, node.pid, count, seconds, index))
                measured.update(echoed)
                samples.append(measured)
                raw.append({"in_flight": count, "run": index + 1, **measured})
                _print_run(measured, count, index, runs)
            row = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
            row["in_flight"] = count
            rows.append(row)
    finally:
        _stop(node)
        _stop(echo)
    fsync_p50, fsync_p99 = percentile(fsyncs, 50) * 1000, percentile(fsyncs, 99) * 1000
    print(f"fsync floor over the whole run: p50 {fsync_p50:.3f} ms, p99 {fsync_p99:.3f} ms")
    single = next((row for row in rows if row["in_flight"] == 1), None)
    floor = single["echo_p50_ms"] + fsync_p50 if single else None
    return {
        "benchmark": "server",
        "seconds_per_run": seconds,
        "runs": runs,
        "request_payload_bytes": request_bytes,
        "response_payload_bytes": response_bytes,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "fsync_p50_ms": round(fsync_p50, 3),
        "fsync_p99_ms": round(fsync_p99, 3),
        "single_patch_p50_over_echo_plus_fsync": (
            round(single["patch_p50_ms"] / floor, 2) if single and floor else None
        ),
        "results": rows,
        "raw": raw,
    }


def _print_run(measured: dict[str, float], count: int, index: int, runs: int) -> None:
    parts = [
        f"{kind} {measured[f'{kind}_ops_per_second']:9.0f}/s "
        f"p50 {measured[f'{kind}_p50_ms']:.3f} ms "
        f"CPU {measured[f'{kind}_server_cpu_us_per_op']:.1f}+"
        f"{measured[f'{kind}_client_cpu_us_per_op']:.1f} us"
        for kind in ("patch", "get", "echo")
    ]
    print(f"  in flight {count:3d} run {index + 1}/{runs}: " + " | ".join(parts))


def print_table(report: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"braid bench server — medians of {report['runs']} runs")
    columns = (
        "in flight",
        "patch/s",
        "p50 ms",
        "p99 ms",
        "get/s",
        "p50 ms",
        "p99 ms",
        "echo/s",
        "echo p50 ms",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for row in report["results"]:  # type: ignore[attr-defined]
        table.add_row(
            str(int(row["in_flight"])),
            f"{row['patch_ops_per_second']:,.0f}",
            f"{row['patch_p50_ms']:.3f}",
            f"{row['patch_p99_ms']:.3f}",
            f"{row['get_ops_per_second']:,.0f}",
            f"{row['get_p50_ms']:.3f}",
            f"{row['get_p99_ms']:.3f}",
            f"{row['echo_ops_per_second']:,.0f}",
            f"{row['echo_p50_ms']:.3f}",
        )
    cpu = Table(title="CPU us per op (user+sys): the server process, this client process")
    for column in ("in flight", "patch server", "client", "get server", "client", "echo server"):
        cpu.add_column(column, justify="right")
    for row in report["results"]:  # type: ignore[attr-defined]
        cpu.add_row(
            str(int(row["in_flight"])),
            *(
                f"{row[f'{kind}_{side}_cpu_us_per_op']:.1f}"
                for kind, side in (
                    ("patch", "server"),
                    ("patch", "client"),
                    ("get", "server"),
                    ("get", "client"),
                    ("echo", "server"),
                )
            ),
        )
    console = Console()
    console.print(table)
    console.print(cpu)
    console.print(
        f"fsync p50 {report['fsync_p50_ms']} ms; single-request patch p50 is "
        f"{report['single_patch_p50_over_echo_plus_fsync']}x (echo p50 + fsync p50)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "CPU us per op: user+sys CPU time over the ops of a run, in microseconds, of the "
        "server process (all its threads: event loop, WAL writer, checkpoints, and the kernel "
        "work they ask for, until it is idle again; read from its process CPU clock, Linux) "
        "and, separately, of the client (this process)."
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--runs", type=int, default=3, help="runs per in-flight count")
    parser.add_argument(
        "--in-flight", type=int, nargs="+", default=list(IN_FLIGHT), help="in-flight counts"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to put the store")
    parser.add_argument("--out", type=Path, default=Path("bench-server.json"), help="JSON file")


def main(args: argparse.Namespace) -> int:
    if args.seconds <= 0 or args.runs < 1 or any(count < 1 for count in args.in_flight):
        raise SystemExit("--seconds must be > 0, --runs >= 1, in-flight counts >= 1")
    return run_and_report(
        "braid-bench-server-",
        args.dir,
        args.out,
        lambda root: run(args.in_flight, args.seconds, args.runs, root),
        print_table,
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--echo":
        import uvloop

        uvloop.run(_echo_main(Path(sys.argv[2]), int(sys.argv[3])))
        raise SystemExit(0)
    cli = argparse.ArgumentParser(description=__doc__)
    add_arguments(cli)
    raise SystemExit(main(cli.parse_args()))
