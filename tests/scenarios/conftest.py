"""Collection of scenario files: each ``tests/scenarios/<name>/*.txt`` is one pytest test.

``test_scenarios.py::test_scenario`` takes a ``scenario`` argument, parametrized here with every
file ``collection.discover()`` finds, named ``<name>/<file stem>``: run one with
``-k selftest/kv``. See ``collection.py`` for the interpreter interface.
"""

from __future__ import annotations

import pytest

from .collection import discover


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "scenario" in metafunc.fixturenames:
        scenarios = discover()
        metafunc.parametrize("scenario", scenarios, ids=[item.name for item in scenarios])
