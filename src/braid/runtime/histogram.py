"""Histograms for the metrics endpoint, kept as plain counts on the paths they measure.

A `Histogram` counts observations into fixed buckets (each an upper bound: a value lands in
the first bucket whose bound is at least it, as Prometheus's `le` reads), with their sum and
count: one bisect and three additions per observation, no lock (each is updated on one
thread, the node's event loop; a scrape from the endpoint's thread may see an observation
half-counted, which the next scrape corrects). runtime/metrics.py exports them in
Prometheus's form (cumulative buckets, `_sum`, `_count`). Units are base units: seconds,
records.
"""

from __future__ import annotations

import bisect

# Bucket bounds (Prometheus conventions: seconds).
REQUEST_SECONDS_BOUNDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
SYNC_SECONDS_BOUNDS = REQUEST_SECONDS_BOUNDS
CHECKPOINT_SECONDS_BOUNDS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
BATCH_RECORDS_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        assert list(bounds) == sorted(set(bounds)), "bounds rise strictly"
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or below it) per bucket, ending with "+Inf"."""
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            buckets.append((_bound_text(bound), running))
        buckets.append(("+Inf", running + self.counts[-1]))
        return buckets


def _bound_text(bound: float) -> str:
    return repr(float(bound))
