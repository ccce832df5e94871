"""Placement, pure: which partition a key belongs to, and which hosts hold each partition.

**Keys → partitions.** A key's hash is the first 64 bits of blake2b over `space/key` (UTF-8,
personalised with `HASH_PERSON`), read big-endian. Partition `p` of `P` owns the hash range
`[ceil(p·2^64/P), ceil((p+1)·2^64/P))`, so `partition = (hash · P) >> 64`. Ranges, not
`hash mod P`: doubling P splits partition p exactly into 2p and 2p+1, so a partition can
later split (and two neighbours join) without moving any other key. The hash is pinned by a
table of values in the tests; changing it would move every document.

**Partitions → replicas: the rainbow stripe.** `place(hosts, partitions, replicas)` gives
each partition R distinct hosts, its preferred leader first. It is deterministic: hosts are
taken in id order and ties are broken by a blake2b rank of the id, never by chance. It
guarantees, in this order of precedence:

1. *Zones* (safety): a partition holds at most `zone_cap` replicas in one zone, the smallest
   cap the zones allow (1 when there are at least R zones: losing a zone loses one replica).
2. *Balance* (load): each zone carries its fair share of the R·P replicas (water-filled: an
   even spread over the hosts, except that a zone cannot hold more than its cap per
   partition), and each host within a zone the floor or ceiling of the zone's share. When
   zones are unequal and R ≥ zones, the zone rule decides the load: with 5 hosts in zones of
   2, 2 and 1, the lone host holds a replica of every partition. Preferred leaders are spread
   the same way: each host leads the floor or ceiling of its fair share of P (P/N when every
   host holds at least that many replicas).
3. *Stripes* (spread): a host's partitions have their other replicas on as many distinct
   hosts as the zone rule allows, so a dead host's load spreads over the fleet. The fill
   picks, for each slot, the host of the slot's zone that shares fewest partitions with the
   slot's partition so far; then pairs of hosts sharing two partitions while one of them
   has a peer it shares none with are undone by swapping replicas between partitions
   (counts unchanged). The measure is `peers(h) ≥ min(eligible(h), (R−1)·partitions(h))`,
   where eligible hosts are those the zone rule lets share a partition with h.

**Changing the host set** (`place(..., previous=...)`) starts from the previous placement
and moves only what balance requires: replicas on hosts that left become holes; targets
give the ceiling to the hosts that already hold more; holes are filled by hosts below their
target; then each host below target takes, one at a time, the replica of a host above
target whose move costs least in shared pairs. Each move raises one host's count by one,
so the fewest moves any balanced placement needs is the sum of the hosts' shortfalls
against the best-chosen targets (`minimum_moves`); this procedure moves exactly that many
unless a hole can only be filled through a swap (two moves). Leaders stay where they were
unless balance moves them. A change of P or R places from scratch.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

HASH_BITS = 64
HASH_SPACE = 1 << HASH_BITS
HASH_PERSON = b"braid.partition"  # blake2b personalisation: this hash is for partitions only
RANK_PERSON = b"braid.host-rank"  # ties between hosts are broken by this rank of their ids
REPLICAS_DEFAULT = 3
PARTITIONS_MAX = 1 << 16
REPLICAS_MAX = 9
SWAP_ROUNDS_MAX = 8  # passes of the spread repair over the hosts still short of peers
# Swaps the spread repair may weigh in one placement: bounds its time (~0.3 s) where zones
# leave hosts short of peers no swap can give them. The three-zone layouts the tests pin
# need a few thousand.
SWAPS_WEIGHED_MAX = 50_000


def key_hash(space: str, key: str) -> int:
    """The stable 64-bit hash of a document key (see the module text)."""
    digest = hashlib.blake2b(
        f"{space}/{key}".encode(), digest_size=HASH_BITS // 8, person=HASH_PERSON
    ).digest()
    return int.from_bytes(digest, "big")


def partition_of_hash(hash_value: int, partitions: int) -> int:
    """The partition whose hash range holds `hash_value`: (hash · P) >> 64."""
    assert 0 <= hash_value < HASH_SPACE, hash_value
    assert 1 <= partitions <= PARTITIONS_MAX, partitions
    return (hash_value * partitions) >> HASH_BITS


def partition_of(space: str, key: str, partitions: int) -> int:
    return partition_of_hash(key_hash(space, key), partitions)


def partition_range(partition: int, partitions: int) -> tuple[int, int]:
    """The hashes partition `partition` of `partitions` owns: [first, end)."""
    assert 0 <= partition < partitions <= PARTITIONS_MAX
    return -(-(partition << HASH_BITS) // partitions), -(
        -((partition + 1) << HASH_BITS) // partitions
    )


def host_rank(host_id: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(host_id.encode(), digest_size=8, person=RANK_PERSON).digest(), "big"
    )


@dataclass(frozen=True, slots=True)
class Host:
    id: str
    zone: str


@dataclass(frozen=True, slots=True)
class Placement:
    """Every partition's replicas (host ids, the preferred leader first)."""

    hosts: tuple[Host, ...]  # sorted by id
    replicas: int
    assignment: tuple[tuple[str, ...], ...]  # per partition

    @property
    def partitions(self) -> int:
        return len(self.assignment)

    def leader(self, partition: int) -> str:
        return self.assignment[partition][0]


@dataclass(frozen=True, slots=True)
class Shares:
    """What balance means for one host set: zone caps, fair shares and integer bounds."""

    zone_cap: dict[str, int]  # most replicas of one partition in the zone
    zone_load: dict[str, int]  # replicas the zone carries
    replicas_fair: dict[str, Fraction]  # host → its fair number of replicas
    leaders_fair: dict[str, Fraction]
    eligible_peers: dict[str, int]  # hosts the zone rule lets share a partition with it

    def replica_bounds(self, zone: str, zone_size: int) -> tuple[int, int]:
        low = self.zone_load[zone] // zone_size
        return low, low + (1 if self.zone_load[zone] % zone_size else 0)


def _zones(hosts: Sequence[Host]) -> dict[str, list[Host]]:
    zones: dict[str, list[Host]] = {}
    for host in hosts:
        zones.setdefault(host.zone, []).append(host)
    return zones


def _water_fill(ceilings: dict[str, tuple[int, Fraction]], total: int) -> dict[str, Fraction]:
    """Spread `total` evenly over groups of (size, per-member ceiling): members' shares."""
    shares: dict[str, Fraction] = {}
    remaining, members = Fraction(total), sum(size for size, _ in ceilings.values())
    for name in sorted(ceilings, key=lambda name: (ceilings[name][1], name)):
        size, ceiling = ceilings[name]
        level = remaining / members
        shares[name] = min(ceiling, level)
        remaining -= shares[name] * size
        members -= size
    assert remaining == 0, remaining
    return shares


def shares(hosts: Sequence[Host], partitions: int, replicas: int) -> Shares:
    zones = _zones(hosts)
    assert len(hosts) >= replicas >= 1
    cap = 1
    while sum(min(len(members), cap) for members in zones.values()) < replicas:
        cap += 1
    zone_cap = {zone: min(len(members), cap) for zone, members in zones.items()}
    per_host = _water_fill(
        {z: (len(m), Fraction(zone_cap[z] * partitions, len(m))) for z, m in zones.items()},
        replicas * partitions,
    )
    exact = {zone: per_host[zone] * len(members) for zone, members in zones.items()}
    zone_load = {zone: int(load) for zone, load in exact.items()}  # floors, then the rest
    short = replicas * partitions - sum(zone_load.values())
    for zone in sorted(exact, key=lambda zone: (zone_load[zone] - exact[zone], zone))[:short]:
        zone_load[zone] += 1
    replicas_fair = {host.id: per_host[host.zone] for host in hosts}
    leaders_fair = _water_fill({h: (1, share) for h, share in replicas_fair.items()}, partitions)
    eligible = {}
    for host in hosts:
        same_zone = len(zones[host.zone]) - 1  # may share a partition only if the cap allows
        eligible[host.id] = len(hosts) - 1 - (0 if zone_cap[host.zone] > 1 else same_zone)
    return Shares(zone_cap, zone_load, replicas_fair, leaders_fair, eligible)


def _pair(first: str, second: str) -> tuple[str, str]:
    return (first, second) if first < second else (second, first)


class _Builder:
    """The mutable map while a placement is built: members per partition slot, replica
    counts, and how many partitions each pair of hosts shares."""

    def __init__(self, hosts: Sequence[Host], partitions: int, replicas: int) -> None:
        self.zone_of = {host.id: host.zone for host in hosts}
        self.rank = {host.id: (host_rank(host.id), host.id) for host in hosts}
        self.share = shares(hosts, partitions, replicas)
        self.zones = {zone: [h.id for h in members] for zone, members in _zones(hosts).items()}
        self.members: list[list[str | None]] = [[None] * replicas for _ in range(partitions)]
        self.count = dict.fromkeys(self.zone_of, 0)
        self.target = dict.fromkeys(self.zone_of, 0)
        self.pairs: dict[tuple[str, str], int] = {}
        self.peers = dict.fromkeys(self.zone_of, 0)
        self.partitions_of: dict[str, set[int]] = {host: set() for host in self.zone_of}
        self.swaps_weighed = 0

    # -- the map ---------------------------------------------------------------------------

    def _count_pair(self, first: str, second: str, change: int) -> None:
        key = _pair(first, second)
        before = self.pairs.get(key, 0)
        after = before + change
        assert after >= 0
        self.pairs[key] = after
        if (before == 0) != (after == 0):
            self.peers[first] += change
            self.peers[second] += change

    def put(self, partition: int, slot: int, host: str) -> None:
        assert self.members[partition][slot] is None
        assert self.fits(host, partition), (host, partition)
        for member in self.members[partition]:
            if member is not None:
                self._count_pair(host, member, 1)
        self.members[partition][slot] = host
        self.count[host] += 1
        self.partitions_of[host].add(partition)

    def take(self, partition: int, slot: int) -> str:
        host = self.members[partition][slot]
        assert host is not None
        self.members[partition][slot] = None
        for member in self.members[partition]:
            if member is not None:
                self._count_pair(host, member, -1)
        self.count[host] -= 1
        self.partitions_of[host].discard(partition)
        return host

    def fits(self, host: str, partition: int, without: int | None = None) -> bool:
        """Whether `host` may join `partition` (in place of slot `without`, if given)."""
        others = [m for s, m in enumerate(self.members[partition]) if s != without and m]
        if host in others:
            return False
        zone = self.zone_of[host]
        in_zone = sum(1 for member in others if self.zone_of[member] == zone)
        return in_zone < self.share.zone_cap[zone]

    def cost(self, host: str, partition: int, without: int | None = None) -> int:
        """How much the sum of squared pair counts grows if `host` joins `partition`."""
        return sum(
            2 * self.pairs.get(_pair(host, member), 0) + 1
            for slot, member in enumerate(self.members[partition])
            if member is not None and slot != without
        )

    def need(self, host: str) -> int:
        return self.target[host] - self.count[host]

    # -- balance ---------------------------------------------------------------------------

    def choose_targets(self) -> None:
        """Each host gets the floor or ceiling of its zone's share; the ceilings go to the
        hosts holding most already (fewest moves), ties by rank."""
        for zone, members in self.zones.items():
            low, _ = self.share.replica_bounds(zone, len(members))
            ceilings = self.share.zone_load[zone] - low * len(members)
            ordered = sorted(members, key=lambda host: (-self.count[host], self.rank[host]))
            for position, host in enumerate(ordered):
                self.target[host] = low + (1 if position < ceilings else 0)

    def keep(self, previous: Placement) -> None:
        """Start from `previous`: its replicas on hosts still present that still fit."""
        for partition, hosts in enumerate(previous.assignment):
            for slot, host in enumerate(hosts):
                if host in self.zone_of and self.fits(host, partition):
                    self.put(partition, slot, host)

    def fill(self, partition: int, slot: int, zone: str | None) -> None:
        """Fill one hole with the host below target (of `zone`, if given) that shares
        fewest partitions with the partition's members; failing that, by a swap."""
        candidates = [
            host
            for host in (self.zones[zone] if zone is not None else self.zone_of)
            if self.need(host) > 0 and self.fits(host, partition)
        ]
        if candidates:
            best = min(
                candidates,
                key=lambda h: (self.cost(h, partition), -self.need(h), self.rank[h]),
            )
            self.put(partition, slot, best)
        else:
            self._fill_by_swap(partition, slot, zone)

    def _fill_by_swap(self, partition: int, slot: int, zone: str | None) -> None:
        """A host x of another partition q moves into the hole; a host below target takes
        x's place in q (of x's zone when the hole wants a zone)."""
        needy = sorted((h for h in self.zone_of if self.need(h) > 0), key=self.rank.__getitem__)
        for host in needy:
            for other, members in enumerate(self.members):
                for other_slot, moved in enumerate(members):
                    if moved is None or moved == host or other == partition:
                        continue
                    if zone is not None and {self.zone_of[moved], self.zone_of[host]} != {zone}:
                        continue
                    if self.fits(moved, partition) and self.fits(host, other, other_slot):
                        self.take(other, other_slot)
                        self.put(partition, slot, moved)
                        self.put(other, other_slot, host)
                        return
        raise _Stuck(f"placement: no host can fill partition {partition}")

    def rebalance(self) -> None:
        """Hosts below target take replicas from hosts above it, one cheapest move at a
        time: the move that adds fewest shared pairs (net of the pairs it removes)."""
        while True:
            needy = [h for h in self.zone_of if self.need(h) > 0]
            if not needy:
                return
            best: tuple[int, int, int, tuple[int, str]] | None = None
            choice: tuple[int, int, str] | None = None
            for partition, members in enumerate(self.members):
                for slot, donor in enumerate(members):
                    if donor is None or self.need(donor) >= 0:
                        continue
                    others = sum(1 for member in members if member is not None) - 1
                    relief = self.cost(donor, partition, slot) - 2 * others
                    for host in needy:
                        if not self.fits(host, partition, slot):
                            continue
                        key = (
                            self.cost(host, partition, slot) - relief,
                            partition,
                            slot,
                            self.rank[host],
                        )
                        if best is None or key < best:
                            best, choice = key, (partition, slot, host)
            if choice is None:
                self._move_by_chain(needy)
                continue
            partition, slot, host = choice
            self.take(partition, slot)
            self.put(partition, slot, host)

    def _move_by_chain(self, needy: list[str]) -> None:
        """Two moves for one: a host below target takes the place of a host i in one
        partition, and i takes the place of a host above target in another (when zones
        keep the direct move out: more zones than replicas, loads moving between zones)."""
        donors = [
            (partition, slot)
            for partition, members in enumerate(self.members)
            for slot, donor in enumerate(members)
            if donor is not None and self.need(donor) < 0
        ]
        for host in sorted(needy, key=self.rank.__getitem__):
            for partition, members in enumerate(self.members):
                for slot, middle in enumerate(members):
                    if middle is None or not self.fits(host, partition, slot):
                        continue
                    for other, other_slot in donors:
                        if other != partition and self.fits(middle, other, other_slot):
                            self.take(other, other_slot)
                            self.take(partition, slot)
                            self.put(other, other_slot, middle)
                            self.put(partition, slot, host)
                            return
        raise _Stuck("placement: no replica can move to a host below target")

    # -- spread ----------------------------------------------------------------------------

    def short_of_peers(self, host: str) -> bool:
        wanted = (len(self.members[0]) - 1) * self.count[host]
        return self.peers[host] < min(self.share.eligible_peers[host], wanted)

    def spread(self) -> None:
        """Swap replicas between partitions (counts unchanged) while a host short of peers
        has a swap that lowers the sum of squared pair counts."""
        for _ in range(SWAP_ROUNDS_MAX):
            improved = False
            for host in sorted(self.zone_of, key=self.rank.__getitem__):
                while self.short_of_peers(host) and self._improve(host):
                    improved = True
            if not improved:
                return

    def _improve(self, host: str) -> bool:
        """The best swap that takes a repeated co-member u of `host` out of one of its
        partitions p in exchange for a member w of another partition q."""
        best: tuple[bool, int, int, int, int, int] | None = None
        for partition in sorted(self.partitions_of[host]):
            members = self.members[partition]
            for slot, repeated in enumerate(members):
                if repeated is None or repeated == host:
                    continue
                if self.pairs[_pair(host, repeated)] < 2:
                    continue
                for other, other_members in enumerate(self.members):
                    if other == partition or repeated in other_members:
                        continue
                    for other_slot, incoming in enumerate(other_members):
                        if incoming is None or incoming in members:
                            continue
                        if not (
                            self.fits(incoming, partition, slot)
                            and self.fits(repeated, other, other_slot)
                        ):
                            continue
                        if self.swaps_weighed >= SWAPS_WEIGHED_MAX:
                            return False
                        self.swaps_weighed += 1
                        delta = self._swap_delta(partition, slot, other, other_slot)
                        new_peer = self.pairs.get(_pair(host, incoming), 0) == 0
                        key = (not new_peer, delta, partition, slot, other, other_slot)
                        if delta < 0 and (best is None or key < best):
                            best = key
        if best is None:
            return False
        _, _, partition, slot, other, other_slot = best
        repeated, incoming = self.take(partition, slot), self.take(other, other_slot)
        self.put(partition, slot, incoming)
        self.put(other, other_slot, repeated)
        return True

    def _swap_delta(self, partition: int, slot: int, other: int, other_slot: int) -> int:
        """The change of the sum of squared pair counts if the two slots swap hosts."""
        out, incoming = self.members[partition][slot], self.members[other][other_slot]
        assert out is not None and incoming is not None
        changes: dict[tuple[str, str], int] = {}
        for member in self.members[partition]:
            if member is not None and member != out:
                changes[_pair(out, member)] = changes.get(_pair(out, member), 0) - 1
                changes[_pair(incoming, member)] = changes.get(_pair(incoming, member), 0) + 1
        for member in self.members[other]:
            if member is not None and member != incoming:
                key_out, key_in = _pair(incoming, member), _pair(out, member)
                changes[key_out] = changes.get(key_out, 0) - 1
                changes[key_in] = changes.get(key_in, 0) + 1
        return sum(
            2 * self.pairs.get(key, 0) * change + change * change for key, change in changes.items()
        )

    # -- leaders ---------------------------------------------------------------------------

    def leaders(self, previous: Placement | None) -> list[str]:
        """Each partition's preferred leader: the previous one where it still fits the
        bounds, else the member leading least; then augmenting paths move leadership until
        every host leads the floor or ceiling of its fair share."""
        fair = self.share.leaders_fair
        low = {host: math.floor(share) for host, share in fair.items()}
        high = {host: math.ceil(share) for host, share in fair.items()}
        led = dict.fromkeys(self.zone_of, 0)
        leader: list[str | None] = [None] * len(self.members)
        if previous is not None and previous.partitions == len(self.members):
            for partition, hosts in enumerate(previous.assignment):
                if hosts[0] in self.members[partition] and led.get(hosts[0], 0) < high.get(
                    hosts[0], 0
                ):
                    leader[partition] = hosts[0]
                    led[hosts[0]] += 1
        for partition, members in enumerate(self.members):
            if leader[partition] is None:
                chosen = min(
                    (m for m in members if m is not None),
                    key=lambda m: (led[m] >= high[m], led[m] - low[m], self.rank[m]),
                )
                leader[partition] = chosen
                led[chosen] += 1
        result = [host for host in leader if host is not None]
        assert len(result) == len(self.members)
        while self._shift_leadership(result, led, low, high):
            pass
        return result

    def _shift_leadership(
        self, leader: list[str], led: dict[str, int], low: dict[str, int], high: dict[str, int]
    ) -> bool:
        """One augmenting path from a host over its bound (or to one under it)."""
        over = [h for h in sorted(led, key=self.rank.__getitem__) if led[h] > high[h]]
        under = [h for h in sorted(led, key=self.rank.__getitem__) if led[h] < low[h]]
        for start in over:
            path = self._path(start, leader, lambda h: led[h] < high[h], forward=True)
            if path is not None:
                for partition, host in path:
                    leader[partition] = host
                led[start] -= 1
                led[path[0][1]] += 1  # the path's far end gains one
                return True
        for start in under:
            path = self._path(start, leader, lambda h: led[h] > low[h], forward=False)
            if path is not None:
                end = leader[path[0][0]]  # the path's far end loses one
                for partition, host in path:
                    leader[partition] = host
                led[start] += 1
                led[end] -= 1
                return True
        return False

    def _path(
        self, start: str, leader: list[str], done: Callable[[str], bool], *, forward: bool
    ) -> list[tuple[int, str]] | None:
        """Breadth-first over hosts: forward, from a host to the members of partitions it
        leads (who could lead instead); backward, from a host to the leaders of partitions
        it is a member of. Returns the (partition, new leader) changes."""
        parent: dict[str, tuple[str, int]] = {}
        frontier, seen = [start], {start}
        while frontier:
            following = []
            for host in frontier:
                for partition in sorted(self.partitions_of[host]):
                    if (leader[partition] == host) != forward:
                        continue
                    if forward:
                        nexts = [m for m in self.members[partition] if m is not None and m != host]
                    else:
                        nexts = [leader[partition]]
                    for following_host in sorted(nexts, key=self.rank.__getitem__):
                        if following_host in seen:
                            continue
                        seen.add(following_host)
                        parent[following_host] = (host, partition)
                        if done(following_host):
                            return self._unwind(following_host, start, parent, forward=forward)
                        following.append(following_host)
            frontier = following
        return None

    @staticmethod
    def _unwind(
        end: str, start: str, parent: dict[str, tuple[str, int]], *, forward: bool
    ) -> list[tuple[int, str]]:
        changes: list[tuple[int, str]] = []
        host = end
        while host != start:
            previous, partition = parent[host]
            # forward: `host` takes over the partition `previous` led; backward: `previous`
            # (a member) takes over the partition `host` led.
            changes.append((partition, host if forward else previous))
            host = previous
        return changes


class _Stuck(AssertionError):
    """No move leads on from here. From a previous placement this can happen (uneven zones
    with more replicas than zones: the zone rule pins replicas the balance would move), and
    the placement is then made from scratch; from scratch it is a bug."""


def place(
    hosts: Sequence[Host],
    partitions: int,
    replicas: int = REPLICAS_DEFAULT,
    previous: Placement | None = None,
) -> Placement:
    """The placement of `partitions` partitions over `hosts` (see the module text); from
    `previous` when given (and of the same P and R), moving only what balance requires —
    unless the zone rule leaves no way on from it (uneven zones, more replicas than zones),
    when the placement is made anew."""
    assert 1 <= partitions <= PARTITIONS_MAX, partitions
    assert 1 <= replicas <= REPLICAS_MAX, replicas
    ordered = sorted(hosts, key=lambda host: host.id)
    assert len({host.id for host in ordered}) == len(ordered), "host ids repeat"
    assert len(ordered) >= replicas, "fewer hosts than replicas"
    builder = _Builder(ordered, partitions, replicas)
    if previous is not None and (previous.partitions, previous.replicas) != (partitions, replicas):
        previous = None
    if previous is None:
        builder.choose_targets()
        slot_zones = _zone_slots(builder.share.zone_load, builder.share.zone_cap, partitions)
        for partition in range(partitions):
            for slot, zone in enumerate(slot_zones[partition]):
                builder.fill(partition, slot, zone)
        builder.spread()
    else:
        builder.keep(previous)
        builder.choose_targets()
        try:
            for partition in range(partitions):
                for slot in range(replicas):
                    if builder.members[partition][slot] is None:
                        builder.fill(partition, slot, None)
            builder.rebalance()
        except _Stuck:
            # The previous placement cannot be rebalanced under the zone rule: place anew
            # (zone-safe and balanced, at the cost of moving more than the minimum).
            return place(hosts, partitions, replicas, None)
    leaders = builder.leaders(previous)
    assignment = []
    for partition, members in enumerate(builder.members):
        assert all(member is not None for member in members)
        rest = tuple(m for m in members if m is not None and m != leaders[partition])
        assignment.append((leaders[partition], *rest))
    return Placement(tuple(ordered), replicas, tuple(assignment))


def _zone_slots(
    zone_load: dict[str, int], zone_cap: dict[str, int], partitions: int
) -> list[list[str]]:
    """Which zone fills each slot of each partition. Partition by partition, each slot goes
    to the zone with the most load left per partition left (up to its cap), ties to the
    zone used longest ago: every zone stays placeable (a zone never needs more than its cap
    in every remaining partition), and consecutive partitions meet different zone mixes."""
    left = dict(zone_load)
    last_used = dict.fromkeys(zone_load, -1)
    slots: list[list[str]] = []
    replicas = sum(zone_load.values()) // partitions
    for partition in range(partitions):
        later = partitions - partition - 1  # partitions after this one
        chosen = [  # what the later partitions cannot take, even at their cap
            zone
            for zone in sorted(left)
            for _ in range(max(0, left[zone] - zone_cap[zone] * later))
        ]
        while len(chosen) < replicas:
            chosen.append(
                max(
                    (z for z in left if left[z] > chosen.count(z) < zone_cap[z]),
                    key=lambda z: (left[z] - chosen.count(z), -last_used[z], z),
                )
            )
        assert len(chosen) == replicas, chosen
        for zone in chosen:
            left[zone] -= 1
            last_used[zone] = partition
        slots.append(chosen)
    assert not any(left.values())
    return slots


# -- figures ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostFigures:
    id: str
    zone: str
    replicas: int
    replicas_fair: Fraction
    leaders: int
    leaders_fair: Fraction
    peers: int  # distinct hosts sharing at least one partition with it
    peers_wanted: int  # min(eligible peers, (R − 1) × its replicas)


@dataclass(frozen=True, slots=True)
class Figures:
    hosts: tuple[HostFigures, ...]
    zone_violations: int  # partitions holding more replicas in one zone than its cap


def figures(placement: Placement) -> Figures:
    """What `braid placement` prints and the tests check: per host replicas and leaders
    against their fair shares, distinct peers against what the zone rule allows."""
    share = shares(placement.hosts, placement.partitions, placement.replicas)
    zone_of = {host.id: host.zone for host in placement.hosts}
    replicas = dict.fromkeys(zone_of, 0)
    leaders = dict.fromkeys(zone_of, 0)
    peers: dict[str, set[str]] = {host: set() for host in zone_of}
    violations = 0
    for members in placement.assignment:
        leaders[members[0]] += 1
        zones = [zone_of[member] for member in members]
        if any(zones.count(zone) > share.zone_cap[zone] for zone in zones):
            violations += 1
        for member in members:
            replicas[member] += 1
            peers[member].update(m for m in members if m != member)
    rows = tuple(
        HostFigures(
            host.id,
            host.zone,
            replicas[host.id],
            share.replicas_fair[host.id],
            leaders[host.id],
            share.leaders_fair[host.id],
            len(peers[host.id]),
            min(share.eligible_peers[host.id], (placement.replicas - 1) * replicas[host.id]),
        )
        for host in placement.hosts
    )
    return Figures(rows, violations)


def replicas_moved(before: Placement, after: Placement) -> int:
    """Replicas that changed host: per partition, the hosts `after` has that `before` had not."""
    assert before.partitions == after.partitions
    return sum(
        len(set(new) - set(old))
        for old, new in zip(before.assignment, after.assignment, strict=True)
    )


def minimum_moves(before: Placement, hosts: Sequence[Host]) -> int:
    """The fewest replica moves that take `before` to any balanced placement over `hosts`
    (each host at the floor or ceiling of its zone's share): a move raises one host's
    count by one, so it is the sum of the shortfalls against the best-chosen targets —
    the floor for everyone, plus one for each ceiling not held by a host already there."""
    share = shares(hosts, before.partitions, before.replicas)
    count = {host.id: 0 for host in hosts}
    for members in before.assignment:
        for member in members:
            if member in count:
                count[member] += 1
    total = 0
    for zone, zone_hosts in _zones(hosts).items():
        low, high = share.replica_bounds(zone, len(zone_hosts))
        ceilings = share.zone_load[zone] - low * len(zone_hosts)
        total += sum(max(0, low - count[host.id]) for host in zone_hosts)
        total += max(0, ceilings - sum(1 for host in zone_hosts if count[host.id] >= high))
    return total
