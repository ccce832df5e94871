"""The client's retry backoff: its randomness is injected, so a seeded run repeats exactly,
and its delays stay within the bounds limits.py gives them."""

from __future__ import annotations

import random

from braid import limits
from braid.client import Client, ClientConfig, StaticLocator


def backoffs(rng: random.Random | None, attempts: int = 12) -> list[float]:
    client = Client(ClientConfig(secret=b"s"), StaticLocator(["127.0.0.1:1"]), rng)
    return [client._backoff(attempt) for attempt in range(attempts)]


def test_a_seeded_rng_gives_the_same_backoff_every_time() -> None:
    """Two clients given generators with the same seed wait exactly the same delays; another
    seed gives other delays (the jitter comes from the injected generator alone)."""
    assert backoffs(random.Random(7)) == backoffs(random.Random(7))
    assert backoffs(random.Random(7)) != backoffs(random.Random(8))


def test_backoff_doubles_from_the_minimum_up_to_the_maximum_with_jitter() -> None:
    """Attempt n waits between half and all of min(max, min * 2**n): the default client
    (seeded from os.urandom) and a seeded one alike."""
    for rng in (None, random.Random(1)):
        for attempt, delay in enumerate(backoffs(rng)):
            ceiling = min(
                limits.client_backoff_seconds_max, limits.client_backoff_seconds_min * 2**attempt
            )
            assert ceiling / 2 <= delay <= ceiling
