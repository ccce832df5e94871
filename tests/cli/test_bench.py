"""The benchmarks as a user runs them, cut to a fraction of a second per run: they start
their processes, finish, and write JSON with every figure the README reports. They assert
that figures exist and are sane, never how fast anything is (benchmarks are not tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH_SECONDS_MAX = 120
# CPU per op times ops/s is the cores a process kept busy: never more than the machine has
# (a little over for the rounding of both figures).
CORES_MAX = (os.cpu_count() or 1) + 0.1


def run_bench(tmp_path: Path, *arguments: str) -> dict[str, object]:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "braid.cli.main", "bench", *arguments, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=BENCH_SECONDS_MAX,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report: dict[str, object] = json.loads(out.read_text())
    return report


def test_bench_server_reports_every_figure(tmp_path: Path) -> None:
    """`braid bench server` at 1 and 4 in flight: one row per count with positive rates,
    ordered percentiles and the CPU per op of the server process and of the client (each
    possible: no more cores than the machine has) for patch, get and echo, every run in
    `raw`, the fsync floor, and the single-request ratio computed from the same run's
    figures."""
    report = run_bench(
        tmp_path, "server", "--seconds", "0.3", "--runs", "1", "--in-flight", "1", "4"
    )
    rows = report["results"]
    assert isinstance(rows, list)
    assert [row["in_flight"] for row in rows] == [1, 4]
    for row in rows:
        for kind in ("patch", "get", "echo"):
            assert row[f"{kind}_ops_per_second"] > 0, (kind, row)
            assert 0 < row[f"{kind}_p50_ms"] <= row[f"{kind}_p99_ms"], (kind, row)
            for side in ("server", "client"):
                cpu_us = row[f"{kind}_{side}_cpu_us_per_op"]
                assert 0 < cpu_us * row[f"{kind}_ops_per_second"] / 1e6 <= CORES_MAX, (kind, row)
    raw = report["raw"]
    assert isinstance(raw, list)
    assert [(run["in_flight"], run["run"]) for run in raw] == [(1, 1), (4, 1)]
    fsync_p50 = report["fsync_p50_ms"]
    assert isinstance(fsync_p50, float)
    assert fsync_p50 > 0
    single = rows[0]
    # The JSON's milliseconds are rounded to 0.001 and the ratio to 0.01: the ratio must lie
    # within what the rounded figures allow (a tmpfs fsync of 0.0014 ms reads as 0.001).
    half = 0.0005
    patch, floor = single["patch_p50_ms"], single["echo_p50_ms"] + fsync_p50
    low = (patch - half) / (floor + 2 * half)
    high = (patch + half) / max(floor - 2 * half, 1e-9)
    ratio = report["single_patch_p50_over_echo_plus_fsync"]
    assert isinstance(ratio, float)
    assert low - 0.005 <= ratio <= high + 0.005, (ratio, low, high)


def test_bench_engine_reports_braid_against_sqlite(tmp_path: Path) -> None:
    """`braid bench engine` with 2 writers: braid and SQLite each report a positive rate,
    ordered percentiles and a possible CPU per op (no more cores than the machine has), the
    ratio between the two rates, and the fsync floor."""
    report = run_bench(tmp_path, "engine", "--seconds", "0.3", "--runs", "1", "--writers", "2")
    rows = report["results"]
    assert isinstance(rows, list)
    [row] = rows
    assert row["writers"] == 2
    for system in ("braid", "sqlite"):
        assert row[f"{system}_ops_per_second"] > 0, (system, row)
        assert 0 < row[f"{system}_p50_ms"] <= row[f"{system}_p99_ms"], (system, row)
        cpu_us = row[f"{system}_cpu_us_per_op"]
        assert 0 < cpu_us * row[f"{system}_ops_per_second"] / 1e6 <= CORES_MAX, (system, row)
    ratio = row["braid_ops_per_second"] / row["sqlite_ops_per_second"]
    assert abs(row["ratio_vs_sqlite"] - ratio) < 0.01
    assert report["fsync_p50_ms"] > 0  # type: ignore[operator]


def test_bench_help_says_what_cpu_per_op_counts() -> None:
    """`braid bench engine --help` and `braid bench server --help` say what their CPU per op
    counts: user+sys time, and for the server bench the server's and the client's apart."""
    for command, words in (("engine", ("user+sys",)), ("server", ("user+sys", "client"))):
        result = subprocess.run(
            [sys.executable, "-m", "braid.cli.main", "bench", command, "--help"],
            capture_output=True,
            text=True,
            timeout=BENCH_SECONDS_MAX,
            check=True,
        )
        text = " ".join(result.stdout.split())
        assert "CPU us" in text, text
        for word in words:
            assert word in text, (word, text)
