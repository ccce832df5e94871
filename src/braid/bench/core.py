"""`braid bench core`: committed entries/s and CPU per committed entry of the pure Raft core.

Three replicas of one group in one process, no simulated delays: the leader takes proposals
`batch` at a time, every message is encoded and decoded with the wire's codec (msgpack) on
its way, every write is reported durable at once, and the CPU is the process's, so it sums
the three replicas. The issue's target: at most 15 us of CPU per committed 256-byte entry
when proposals arrive 64 at a time. Also printed: messages per committed entry, and what an
idle group costs (messages per tick: the multi-Raft host will coalesce heartbeats per host
pair and quiesce idle groups; this is the figure it must bring down).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from braid.core.raft.messages import Message
from braid.core.raft.node import NodeId, RaftConfig, RaftNode, Role

BATCHES = (1, 16, 64)
ENTRY_BYTES = 256


class _Group:
    """Three replicas wired to each other through the codec."""

    def __init__(self) -> None:
        voters = [1, 2, 3]
        self.nodes = {n: RaftNode(n, voters, RaftConfig(), random.Random(n)) for n in voters}
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(Message)
        self.messages = 0
        for node in self.nodes.values():
            for _ in range(RaftConfig().election_ticks):
                node.tick()
        self.nodes[1].campaign()
        self.pump()
        assert self.nodes[1].role is Role.LEADER

    def pump(self) -> None:
        """Process every replica's Ready until nothing moves (writes durable at once)."""
        moved = True
        while moved:
            moved = False
            for source, node in self.nodes.items():
                ready = node.ready()
                if ready.entries:
                    last = ready.entries[-1]
                    node.persisted(last.index, last.term)
                    moved = True
                for target, message in ready.messages:
                    self._deliver(source, target, message)
                    moved = True

    def _deliver(self, source: NodeId, target: NodeId, message: Message) -> None:
        self.messages += 1
        decoded = self.decoder.decode(self.encoder.encode(message))
        self.nodes[target].step(source, decoded)


def measure(batch: int, entries: int) -> dict[str, float]:
    group = _Group()
    leader = group.nodes[1]
    data = bytes(ENTRY_BYTES)
    first = leader.log.committed
    group.messages = 0
    started, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(entries // batch):
        for _ in range(batch):
            leader.propose(data)
        group.pump()
    cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started
    committed = leader.log.committed - first
    assert committed == entries // batch * batch, (committed, entries)
    return {
        "batch": batch,
        "committed_entries_per_second": round(committed / wall),
        "cpu_us_per_committed_entry": round(cpu / committed * 1e6, 2),
        "messages_per_committed_entry": round(group.messages / committed, 3),
    }


def idle_messages_per_tick(ticks: int = 200) -> float:
    """Messages one idle group exchanges per tick (heartbeats and their replies)."""
    group = _Group()
    group.messages = 0
    for _ in range(ticks):
        for node in group.nodes.values():
            node.tick()
        group.pump()
    return group.messages / ticks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=64 * 1000, help="entries per batch size")
    parser.add_argument("--out", type=Path, default=Path("bench-core.json"), help="JSON file")


def main(args: argparse.Namespace) -> int:
    console = Console()
    rows = [measure(batch, args.entries) for batch in BATCHES]
    idle = idle_messages_per_tick()
    table = Table(title=f"braid bench core — 3 replicas, {ENTRY_BYTES}-byte entries")
    for column in ("batch", "committed/s", "CPU us/entry (3 replicas)", "messages/entry"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["batch"]),
            f"{row['committed_entries_per_second']:,.0f}",
            f"{row['cpu_us_per_committed_entry']:.2f}",
            f"{row['messages_per_committed_entry']:.3f}",
        )
    console.print(table)
    console.print(f"an idle group: {idle:.1f} messages per tick (heartbeats and replies)")
    report = {"benchmark": "core", "entry_bytes": ENTRY_BYTES, "results": rows}
    report["idle_messages_per_tick_per_group"] = idle
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0
