"""What the benchmarks share: percentiles, the event loop they run on, and the run →
print → write-JSON scaffolding of their `main`."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

R = TypeVar("R")
Report = dict[str, object]


def percentile(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))
    return ordered[index]


def run_loop(coroutine: Coroutine[Any, Any, R], use_uvloop: bool = True) -> R:
    """Run one coroutine on a fresh event loop (uvloop unless told otherwise)."""
    if use_uvloop:
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def run_and_report(
    prefix: str,
    directory: Path | None,
    out: Path,
    measure: Callable[[Path], Report],
    show: Callable[[Report], None],
) -> int:
    """Measure in a fresh temporary directory (always removed), print, write the JSON."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=directory))
    try:
        report = measure(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    show(report)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0
