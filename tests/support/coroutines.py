"""Driving coroutines that never wait (the memory engine's) without an event loop."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

R = TypeVar("R")


def run_at_once(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine that never waits to its end; fail the test if it waits."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        result: R = stop.value
        return result
    raise AssertionError("the coroutine waited")
