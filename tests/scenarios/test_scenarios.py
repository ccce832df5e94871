"""Runs every scenario file with its directory's interpreter (see collection.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .collection import Scenario
from .datadriven import run_file


def test_scenario(scenario: Scenario, request: pytest.FixtureRequest) -> None:
    """The file's every case produces exactly its expected output (``BRAID_REWRITE=1``
    regenerates the expectations instead)."""
    try:
        display = scenario.path.relative_to(Path(request.config.rootpath)).as_posix()
    except ValueError:  # outside the rootdir: show the whole path
        display = str(scenario.path)
    run_file(scenario.path, scenario.make_handler(), display=display)
