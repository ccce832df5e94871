"""Drives `braid.core.multiraft.host.Host`s from scenario files: hosts holding replicas of
many groups, what their envelopes carry, and which groups are quiet.

Each host has a driver as the real node will: it makes each HostReady's hard states and
entries durable at once (one batch for every group), reports `persisted(number)`, then
sends the Ready's envelopes. Commands:

- ``add-hosts N groups=G [seed=S] [election=T] [lease=T] [quiesce=T]``: N hosts, each
  with a replica of groups 1..G (every group's voters are all the hosts).
- ``campaign H group=G``; ``propose H group=G data=TEXT``; ``tick (H... | all) [n=K]``.
- ``stabilize``: process and deliver until nothing moves; prints every envelope.
- ``advance [n=K] [only=(H, ...)]``: K times, a tick of every running host (or those named)
  and a stabilize; prints what changed, and the envelopes and group messages sent.
- ``cut A B``, ``isolate H``, ``heal``; ``crash H`` (loses nothing: its disk is fast);
  ``restart H`` (a new incarnation, from its durable state).
- ``status``: one line per host and group; ``lease H group=G``.

Changes of role and term are printed as they happen (``> h2 g1 is leader in term 2``), and
groups going quiet or waking (``> h1 g3 quiet``).
"""

from __future__ import annotations

import random

from braid.core.multiraft.host import Host
from braid.core.multiraft.messages import Envelope, GroupId, HostId
from braid.core.raft.messages import Entry
from braid.core.raft.node import HardState, NotLeader, RaftConfig, Role

from ..datadriven import Handler, TestCase
from ..raft.interpreter import describe

ROUNDS_MAX = 1000


class Driver:
    """One host and its durable state (every write is durable at once)."""

    def __init__(
        self, host_id: HostId, voters: list[HostId], config: RaftConfig, groups: int, seed: int
    ) -> None:
        self.id = host_id
        self.voters = voters
        self.config = config
        self.group_ids = list(range(1, groups + 1))
        self.rng = random.Random(seed * 1000 + host_id)
        self.incarnation = 0
        self.hard: dict[GroupId, HardState] = {}
        self.logs: dict[GroupId, list[Entry]] = {group: [] for group in self.group_ids}
        self.applied: dict[GroupId, int] = {group: 0 for group in self.group_ids}
        self.alive = True
        self.host = self._new_host()

    def _new_host(self) -> Host:
        host = Host(self.id, self.config, self.rng, incarnation=self.incarnation)
        for group in self.group_ids:
            host.add_group(
                group,
                voters=self.voters,
                hard_state=self.hard.get(group, HardState()),
                entries=self.logs[group],
                applied=self.applied[group],
            )
        return host

    def restart(self) -> None:
        self.incarnation += 1
        self.alive = True
        self.host = self._new_host()

    def process(self, outbox: list[tuple[HostId, HostId, Envelope]]) -> bool:
        ready = self.host.ready()
        if not ready:
            return False
        for group, state in ready.hard_states:
            self.hard[group] = state
        for group, entry in ready.entries:
            log = self.logs[group]
            del log[entry.index - 1 :]
            log.append(entry)
        self.host.persisted(ready.number)
        outbox.extend((self.id, target, envelope) for target, envelope in ready.messages)
        for group, entry in ready.committed:
            self.applied[group] = entry.index
        return True


def describe_envelope(source: HostId, target: HostId, envelope: Envelope) -> str:
    items = " | ".join(f"g{group} {describe(message)}" for group, message in envelope.items)
    return f"{source}->{target} {items or 'beat'}"


class Cluster:
    def __init__(self) -> None:
        self.drivers: dict[HostId, Driver] = {}
        self.queue: list[tuple[HostId, HostId, Envelope]] = []
        self.cut: set[frozenset[HostId]] = set()
        self._seen: dict[tuple[HostId, GroupId], tuple[Role, int, bool]] = {}

    def handle(self, case: TestCase) -> str:
        commands = {
            "add-hosts": self.add_hosts,
            "campaign": self.campaign,
            "propose": self.propose,
            "tick": self.tick,
            "stabilize": self.stabilize,
            "advance": self.advance,
            "cut": self.cut_link,
            "isolate": self.isolate,
            "heal": self.heal,
            "crash": self.crash,
            "restart": self.restart,
            "status": self.status,
            "lease": self.lease,
        }
        command = commands.get(case.command)
        if command is None:
            raise case.error(f"unknown command {case.command!r}")
        lines = command(case) + self._changes()
        return "\n".join(lines) if lines else "ok"

    # -- helpers --------------------------------------------------------------------------

    def _driver(self, case: TestCase, word: str) -> Driver:
        if not word.isdigit() or int(word) not in self.drivers:
            raise case.error(f"no host {word!r}")
        return self.drivers[int(word)]

    def _target(self, case: TestCase) -> Driver:
        words = case.bare()
        if not words:
            raise case.error("which host?")
        return self._driver(case, words[0])

    def _process_all(self) -> bool:
        moved = False
        for driver in self.drivers.values():
            if driver.alive:
                moved |= driver.process(self.queue)
        return moved

    def _changes(self) -> list[str]:
        lines = []
        for host_id, driver in self.drivers.items():
            if not driver.alive:
                continue
            host = driver.host
            for group, node in host.groups.items():
                seen = (node.role, node.term, host.is_quiet(group))
                before = self._seen.get((host_id, group))
                if before is not None and before[:2] != seen[:2]:
                    lines.append(f"> h{host_id} g{group} is {node.role.value} in term {node.term}")
                if before is not None and before[2] != seen[2]:
                    lines.append(f"> h{host_id} g{group} {'quiet' if seen[2] else 'wakes'}")
                self._seen[(host_id, group)] = seen
        return lines

    def _deliver(self, queued: list[tuple[HostId, HostId, Envelope]]) -> list[str]:
        lines = []
        for source, target, envelope in queued:
            driver = self.drivers[target]
            blocked = frozenset((source, target)) in self.cut or not driver.alive
            mark = " (dropped)" if blocked else ""
            lines.append(describe_envelope(source, target, envelope) + mark)
            if not blocked:
                driver.host.step(envelope)
        return lines

    # -- commands -------------------------------------------------------------------------

    def add_hosts(self, case: TestCase) -> list[str]:
        words = case.bare()
        count = int(words[0]) if words and words[0].isdigit() else 0
        if count < 1:
            raise case.error("add-hosts N groups=G")
        config = RaftConfig(
            election_ticks=case.int("election", 10),
            lease_ticks=case.int("lease", 8),
            quiesce_ticks=case.int("quiesce", 3),
        )
        groups = case.int("groups")
        voters = list(range(1, count + 1))
        seed = case.int("seed", 1)
        self.drivers = {h: Driver(h, voters, config, groups, seed) for h in voters}
        self._changes()
        return [
            f"{count} hosts, {groups} groups each, election {config.election_ticks} ticks, "
            f"lease {config.lease_ticks}, quiet after {config.quiesce_ticks} idle ticks"
        ]

    def campaign(self, case: TestCase) -> list[str]:
        self._target(case).host.campaign(case.int("group"))
        return []

    def propose(self, case: TestCase) -> list[str]:
        driver = self._target(case)
        try:
            index = driver.host.propose(case.int("group"), case.get("data").encode())
        except NotLeader as refused:
            return [f"refused: {refused}"]
        return [f"index {index}"]

    def tick(self, case: TestCase) -> list[str]:
        words = case.bare()
        targets = (
            list(self.drivers.values())
            if words == ["all"]
            else [self._driver(case, word) for word in words]
        )
        for _ in range(case.int("n", 1)):
            for driver in targets:
                if driver.alive:
                    driver.host.tick()
        return []

    def stabilize(self, case: TestCase) -> list[str]:
        lines: list[str] = []
        for _ in range(ROUNDS_MAX):
            moved = self._process_all()
            queued, self.queue = self.queue, []
            if not moved and not queued:
                return lines
            lines += self._deliver(queued)
            lines += self._changes()
        lines.append(f"not stable after {ROUNDS_MAX} rounds")
        return lines

    def advance(self, case: TestCase) -> list[str]:
        names = [int(value) for value in case.values("only", ())]
        targets = [self.drivers[n] for n in names] if names else list(self.drivers.values())
        lines: list[str] = []
        envelopes = group_messages = 0
        for tick in range(1, case.int("n", 1) + 1):
            for driver in targets:
                if driver.alive:
                    driver.host.tick()
            for _ in range(ROUNDS_MAX):
                moved = self._process_all()
                queued, self.queue = self.queue, []
                if not moved and not queued:
                    break
                for source, target, envelope in queued:
                    envelopes += 1
                    group_messages += len(envelope.items)
                    if frozenset((source, target)) not in self.cut and self.drivers[target].alive:
                        self.drivers[target].host.step(envelope)
                lines += [f"{line} (tick {tick})" for line in self._changes()]
        return [*lines, f"{envelopes} envelopes, {group_messages} group messages"]

    def cut_link(self, case: TestCase) -> list[str]:
        first, second = (self._driver(case, word).id for word in case.bare())
        self.cut.add(frozenset((first, second)))
        return []

    def isolate(self, case: TestCase) -> list[str]:
        isolated = self._target(case).id
        self.cut |= {frozenset((isolated, other)) for other in self.drivers if other != isolated}
        return []

    def heal(self, case: TestCase) -> list[str]:
        self.queue = [item for item in self.queue if frozenset(item[:2]) not in self.cut]
        self.cut = set()
        return []

    def crash(self, case: TestCase) -> list[str]:
        driver = self._target(case)
        driver.alive = False
        self.queue = [item for item in self.queue if driver.id not in item[:2]]
        return [f"h{driver.id} stops"]

    def restart(self, case: TestCase) -> list[str]:
        driver = self._target(case)
        driver.restart()
        for group in driver.group_ids:
            self._seen.pop((driver.id, group), None)
        self._changes()
        return [f"h{driver.id} restarts (incarnation {driver.incarnation})"]

    def status(self, case: TestCase) -> list[str]:
        lines = []
        for host_id, driver in self.drivers.items():
            if not driver.alive:
                lines.append(f"h{host_id}: stopped")
                continue
            host = driver.host
            for group, node in host.groups.items():
                flags = " quiet" if host.is_quiet(group) else ""
                flags += " lease" if host.lease_valid(group) else ""
                lines.append(
                    f"h{host_id} g{group}: {node.role.value} term={node.term} "
                    f"leader={node.leader} commit={node.log.committed}{flags}"
                )
        return lines

    def lease(self, case: TestCase) -> list[str]:
        driver = self._target(case)
        valid = driver.host.lease_valid(case.int("group"))
        return [f"h{driver.id} g{case.int('group')}: {'lease valid' if valid else 'no lease'}"]


def make() -> Handler:
    return Cluster().handle
