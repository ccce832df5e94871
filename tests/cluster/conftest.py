"""Fixtures for the real-process tests: every `braid serve` a test starts is killed at the
end of the test, passed or failed (see helpers.Servers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.helpers import Servers


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    """Starts `braid serve` processes in tmp_path; kills every one still running at the end."""
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
