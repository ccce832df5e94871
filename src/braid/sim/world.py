"""What the Raft simulators share (`braid.sim.raft_cluster`, `braid.sim.host_cluster`):
simulated time as an event queue, one seeded generator, the trace, the figures, drifting
clocks that tick (and catch up after a pause), and a network that loses, duplicates, delays
and partitions (symmetrically or one way).

Every random draw goes through `World.rng` in the order the events happen, so a seed replays
exactly.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from typing import Protocol


class CheckFailed(Exception):
    def __init__(self, checker: str, detail: str) -> None:
        super().__init__(f"{checker}: {detail}")
        self.checker = checker


class Clock(Protocol):
    """A simulated process's clock: its tick period (drifting), when its next tick falls,
    and whether it runs (a crash bumps its incarnation: ticks of an earlier life stop)."""

    incarnation: int
    running: bool
    paused_until: float
    next_tick: float
    period: float


class World:
    def __init__(self, seed: int, tracing: bool, events_max: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.tracing = tracing
        self.trace: list[str] = []
        self.figures: Counter[str] = Counter()
        self.now = 0.0
        self.cut: set[tuple[int, int]] = set()  # (from, to) links cut
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = 0
        self._events_max = events_max  # a run that needs more is a message storm

    def note(self, text: Callable[[], str]) -> None:
        if self.tracing:
            self.trace.append(f"{self.now:9.3f} {text()}")

    # -- time -------------------------------------------------------------------------------

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._sequence += 1
        heapq.heappush(self._events, (when, self._sequence, action))

    def run_events(self, until: float, after_each: Callable[[], None]) -> None:
        """Handle the events due until `until`, in order, calling `after_each` after each."""
        handled = 0
        while self._events:
            when, _, action = heapq.heappop(self._events)
            if when > until:
                break
            handled += 1
            if handled > self._events_max:
                detail = f"over {self._events_max} events by {when:.1f}: a storm"
                raise CheckFailed("liveness", detail)
            self.now = when
            action()
            after_each()

    def schedule_ticks(self, clock: Clock, delay: float, on_ticks: Callable[[int], None]) -> None:
        """Tick `clock` every period from `delay` on, while the same life of it runs. A
        paused process's clock runs on: the ticks it missed arrive at once when it resumes
        (`on_ticks` is told how many)."""
        incarnation = clock.incarnation
        clock.next_tick = self.now + delay

        def tick() -> None:
            if clock.incarnation != incarnation or not clock.running:
                return
            if self.now < clock.paused_until:
                self.at(clock.paused_until, tick)
                return
            ticks = 1
            while clock.next_tick + clock.period <= self.now:  # resumed: catch up
                clock.next_tick += clock.period
                ticks += 1
            on_ticks(ticks)
            self.schedule_ticks(clock, clock.period, on_ticks)

        self.at(self.now + delay, tick)

    def ticks_behind(self, clock: Clock) -> int:
        """The ticks `clock` has counted by now but not yet delivered (to judge a lease as
        its process would if asked at this instant)."""
        behind = 0
        tick_at = clock.next_tick
        while tick_at + 1e-9 <= self.now:
            tick_at += clock.period
            behind += 1
        return behind

    # -- the network ------------------------------------------------------------------------

    def transmit(
        self,
        source: int,
        target: int,
        deliver: Callable[[], None],
        loss: float,
        duplicate: float,
        delay_max: float,
    ) -> bool:
        """Send over the link source -> target: False when lost (cut, or by `loss`), else
        `deliver` runs after a random delay (twice, by `duplicate`)."""
        if (source, target) in self.cut or self.rng.random() < loss:
            return False
        copies = 2 if self.rng.random() < duplicate else 1
        for _ in range(copies):
            self.at(self.now + self.rng.uniform(0.01, delay_max), deliver)
        return True

    def partition(self, ids: list[int]) -> None:
        """Cut the processes into two random sides: symmetrically, or one way (what one
        side sends is lost, what it receives arrives)."""
        ids = list(ids)
        self.rng.shuffle(ids)
        side = set(ids[: self.rng.randint(1, len(ids) - 1)])
        one_way = self.rng.random() < 0.3
        self.cut = {(a, b) for a in side for b in ids if b not in side}
        if not one_way:
            self.cut |= {(b, a) for a, b in self.cut}
        self.figures["one-way partitions" if one_way else "partitions"] += 1
        arrow = "->" if one_way else "|"
        self.note(lambda: f"partition {sorted(side)} {arrow} {sorted(set(ids) - side)} cut")

    def heal(self) -> None:
        self.cut = set()
        self.note(lambda: "heal")


def failover_figures(ticks: list[float], tick_seconds: float) -> str:
    """A failover sample's median, p90 and worst, in milliseconds."""
    ms = sorted(sample * tick_seconds * 1000 for sample in ticks)
    return (
        f"median {ms[len(ms) // 2]:.0f} ms, p90 {ms[len(ms) * 9 // 10]:.0f} ms, "
        f"worst {ms[-1]:.0f} ms"
    )
