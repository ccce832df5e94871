"""`braid bench core`: committed entries/s and CPU per committed entry of the pure Raft core.

Three replicas of one group in one process, no simulated delays: the leader takes proposals
`batch` at a time, every message is encoded and decoded with the wire's codec (msgpack) on
its way, every write is reported durable at once, and the CPU is the process's, so it sums
the three replicas. The issue's target: at most 15 us of CPU per committed 256-byte entry
when proposals arrive 64 at a time. Also printed: messages per committed entry, and what an
idle group costs on its own (messages per tick).

Then the same through three multi-Raft hosts (`braid.core.multiraft.host`) holding 256
partitions each, leaders spread over them: proposals 64 at a time spread over the
partitions, every envelope encoded and decoded; and the idle cost of those hosts once every
partition is quiet — envelopes, group messages and CPU per simulated second (a tick of
`TICK_SECONDS`). The issue's target: no per-group messages while idle.
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

from braid import limits
from braid.core.multiraft.host import Host
from braid.core.multiraft.messages import Envelope
from braid.core.raft.messages import Message
from braid.core.raft.node import NodeId, NotLeader, RaftConfig, RaftNode, Role
from braid.sim.raft_cluster import TICK_SECONDS

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


PARTITIONS = 256


class _Hosts:
    """Three hosts, each with a replica of every partition, wired through the codec."""

    def __init__(self, partitions: int) -> None:
        config = RaftConfig(quiesce_ticks=limits.raft_quiesce_ticks)
        self.hosts = {h: Host(h, config, random.Random(h)) for h in (1, 2, 3)}
        for host in self.hosts.values():
            for group in range(partitions):
                host.add_group(group, [1, 2, 3])
        self.encoder = msgspec.msgpack.Encoder()
        self.decoder = msgspec.msgpack.Decoder(Envelope)
        for _ in range(config.election_ticks):
            self.tick()
        for group in range(partitions):  # leaders spread evenly
            node = self.hosts[group % 3 + 1].groups[group]
            if node.role is not Role.LEADER:
                self.hosts[group % 3 + 1].campaign(group)
        self.pump()
        self.leaders = {group: self.leader_of(group) for group in range(partitions)}

    def leader_of(self, group: int) -> Host:
        for host in self.hosts.values():
            if host.groups[group].role is Role.LEADER:
                return host
        raise AssertionError(f"partition {group} has no leader")

    def tick(self) -> None:
        for host in self.hosts.values():
            host.tick()
        self.pump()

    def pump(self) -> None:
        """Process every host's Ready until nothing moves (writes durable at once)."""
        moved = True
        while moved:
            moved = False
            for host in self.hosts.values():
                ready = host.ready()
                if ready.entries:
                    host.persisted(ready.number)
                    moved = True
                for target, envelope in ready.messages:
                    decoded = self.decoder.decode(self.encoder.encode(envelope))
                    self.hosts[target].step(decoded)
                    moved = True

    def sent(self) -> tuple[int, int]:
        """Envelopes and group messages the hosts have sent (their own counters)."""
        counters = [host.counters for host in self.hosts.values()]
        return (
            sum(c.envelopes_sent for c in counters),
            sum(c.group_messages_sent for c in counters),
        )

    def committed(self) -> int:
        return sum(host.groups[group].log.committed for group, host in self.leaders.items())


def measure_hosts(batch: int, entries: int, partitions: int = PARTITIONS) -> dict[str, float]:
    """Proposals `batch` at a time, round-robin over the partitions, through three hosts."""
    hosts = _Hosts(partitions)
    data = bytes(ENTRY_BYTES)
    first = hosts.committed()
    envelopes_before, _ = hosts.sent()
    group = 0
    started, started_cpu = time.perf_counter(), time.process_time()
    for _ in range(entries // batch):
        for _ in range(batch):
            try:
                hosts.leaders[group].propose(group, data)
            except NotLeader:  # not expected without faults; kept honest all the same
                hosts.leaders[group] = hosts.leader_of(group)
                hosts.leaders[group].propose(group, data)
            group = (group + 1) % partitions
        hosts.pump()
    cpu = time.process_time() - started_cpu
    wall = time.perf_counter() - started
    committed = hosts.committed() - first
    envelopes = hosts.sent()[0] - envelopes_before
    assert committed == entries // batch * batch, (committed, entries)
    return {
        "batch": batch,
        "partitions": partitions,
        "committed_entries_per_second": round(committed / wall),
        "cpu_us_per_committed_entry": round(cpu / committed * 1e6, 2),
        "envelopes_per_committed_entry": round(envelopes / committed, 3),
    }


def measure_idle(ticks: int = 500, partitions: int = PARTITIONS) -> dict[str, float]:
    """Three hosts with every partition quiet: what a simulated second costs them."""
    hosts = _Hosts(partitions)
    for _ in range(50):
        hosts.tick()
        if all(host.quiet_groups == partitions for host in hosts.hosts.values()):
            break
    quiet = sum(host.quiet_groups for host in hosts.hosts.values())
    envelopes_before, group_messages_before = hosts.sent()
    started_cpu = time.process_time()
    for _ in range(ticks):
        hosts.tick()
    cpu = time.process_time() - started_cpu
    envelopes, group_messages = hosts.sent()
    envelopes -= envelopes_before
    group_messages -= group_messages_before
    seconds = ticks * TICK_SECONDS
    return {
        "partitions": partitions,
        "quiet_replicas": quiet,
        "envelopes_per_second": round(envelopes / seconds, 1),
        "group_messages_per_second": round(group_messages / seconds, 1),
        "cpu_us_per_second": round(cpu / seconds * 1e6),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entries", type=int, default=64 * 1000, help="entries per batch size")
    parser.add_argument("--out", type=Path, default=Path("bench-core.json"), help="JSON file")


def _table(title: str, rows: list[dict[str, float]], summed: str, sent: str) -> Table:
    """Committed entries/s, CPU per entry (summed over `summed`) and `sent` per entry."""
    table = Table(title=title)
    for column in ("batch", "committed/s", f"CPU us/entry ({summed})", f"{sent}/entry"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["batch"]),
            f"{row['committed_entries_per_second']:,.0f}",
            f"{row['cpu_us_per_committed_entry']:.2f}",
            f"{row[f'{sent}_per_committed_entry']:.3f}",
        )
    return table


def main(args: argparse.Namespace) -> int:
    console = Console()
    rows = [measure(batch, args.entries) for batch in BATCHES]
    idle = idle_messages_per_tick()
    title = f"braid bench core — 3 replicas, {ENTRY_BYTES}-byte entries"
    console.print(_table(title, rows, "3 replicas", "messages"))
    console.print(f"an idle group: {idle:.1f} messages per tick (heartbeats and replies)")
    host_rows = [measure_hosts(batch, args.entries) for batch in BATCHES]
    title = f"3 hosts x {PARTITIONS} partitions, {ENTRY_BYTES}-byte entries"
    console.print(_table(title, host_rows, "3 hosts", "envelopes"))
    idle_hosts = measure_idle()
    console.print(
        f"3 idle hosts x {PARTITIONS} partitions ({idle_hosts['quiet_replicas']:,.0f} quiet "
        f"replicas), per simulated second: {idle_hosts['envelopes_per_second']:,.0f} "
        f"envelopes, {idle_hosts['group_messages_per_second']:,.0f} group messages, "
        f"{idle_hosts['cpu_us_per_second']:,.0f} us of CPU"
    )
    report: dict[str, object] = {"benchmark": "core", "entry_bytes": ENTRY_BYTES}
    report["results"] = rows
    report["idle_messages_per_tick_per_group"] = idle
    report["hosts"] = host_rows
    report["idle_hosts"] = idle_hosts
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"wrote {args.out}")
    return 0
