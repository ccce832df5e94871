"""The deterministic crash search (braid.sim.crash_search): the durable engine's parts over a
simulated disk, crashed at random points and reopened, seed after seed.

Proves: over thousands of seeds no acknowledged write is lost, no lost write is reported,
and every document is exactly what its logged operations make of it; the search reaches
the paths it claims to (rotations, torn-tail repairs, crashes inside the open, a full disk
giving batches back, failed syncs, released segments); each deliberately broken variant is
caught within 1,000 seeds (the check has teeth); and a seed replays exactly.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from braid.sim.crash_search import build_parser, describe_failure, main, run_seed, search
from braid.sim.store import Broken

CI_SEEDS = 5_000  # about 7 s here
SLOW_SEEDS = 100_000
BROKEN_SEEDS = 1_000


@pytest.fixture(autouse=True)
def quiet_store_log() -> Iterator[None]:
    """Spares made again after a crash are logged as warnings; thousands of them are noise."""
    logger = logging.getLogger("braid.store")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def test_thousands_of_seeds_lose_nothing_acknowledged_and_reach_every_path() -> None:
    """5,000 seeds, every promise kept; and the figures show that the search went where it
    must to mean anything: segments rotated and released, torn tails repaired, crashes
    inside a step and inside the open, batches a full disk refused, logs that failed, and
    unacknowledged writes that crashes really lost (so the check had something to check)."""
    failures, figures = search(range(CI_SEEDS))
    assert not failures, describe_failure(failures[0])
    assert figures["seeds"] == CI_SEEDS
    for figure in (
        "segments rotated",
        "segments released",
        "torn tails repaired",
        "crashes inside a step",
        "crashes inside open",
        "batches refused (disk full)",
        "log failures",
        "unacknowledged writes lost",
        "records replayed",
        "writes refused",
    ):
        assert figures[figure] >= 100, (figure, dict(figures))
    assert figures["acknowledged"] > 50 * CI_SEEDS // 3, dict(figures)


@pytest.mark.parametrize("broken", list(Broken), ids=[variant.value for variant in Broken])
def test_each_broken_variant_is_caught_within_a_thousand_seeds(broken: Broken) -> None:
    """Acknowledging a batch that was never synced, checkpointing records not yet durable,
    releasing segments the applied state does not hold yet, never syncing a new segment's
    name: each is found, and the report names the seed and how to replay it."""
    failures, figures = search(range(BROKEN_SEEDS), broken)
    assert failures, f"{broken.value} survived {BROKEN_SEEDS} seeds: {dict(figures)}"
    report = describe_failure(failures[0], broken)
    assert f"--seed {failures[0].seed} --broken {broken.value}" in report


def test_a_seed_replays_exactly() -> None:
    """The same seed gives the same run step for step (trace and figures), the failing seed
    of a broken variant the same failure."""
    lengths = []
    for seed in (7, 1234, 99_999):
        first, second = run_seed(seed, trace=True), run_seed(seed, trace=True)
        assert first.trace == second.trace
        assert first.figures == second.figures
        lengths.append(len(first.trace))
    assert max(lengths) > 20, lengths  # (a seed may crash early and do little)
    failures, _ = search(range(BROKEN_SEEDS), Broken.ACK_BEFORE_DURABLE)
    seed = failures[0].seed
    again = run_seed(seed, Broken.ACK_BEFORE_DURABLE)
    assert again.failure == failures[0].failure


@pytest.mark.slow
def test_a_hundred_thousand_seeds_lose_nothing_acknowledged() -> None:
    """The long sweep (`make test-slow`): 100,000 seeds, every promise kept."""
    failures, figures = search(range(SLOW_SEEDS))
    assert not failures, describe_failure(failures[0])
    assert figures["seeds"] == SLOW_SEEDS


def test_the_readme_tells_the_truth_about_the_crash_search() -> None:
    """The README's crash-search lines parse, name seeds the search runs, and its CI figure
    is the one this suite uses; `main` reports a seed's outcome by its exit status."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "-m braid.sim.crash_search" in line]
    assert len(lines) >= 2
    for line in lines:
        words = shlex.split(line.split(" #", 1)[0])
        build_parser().parse_args(words[words.index("braid.sim.crash_search") + 1 :])
    assert f"CI runs {CI_SEEDS:,} seeds" in readme
    assert f"`make test-slow` {SLOW_SEEDS:,}" in readme
    assert main(["--seed", "3"]) == 0
    failing = search(range(BROKEN_SEEDS), Broken.ACK_BEFORE_DURABLE)[0][0].seed
    assert main(["--seed", str(failing), "--broken", Broken.ACK_BEFORE_DURABLE.value]) == 1
