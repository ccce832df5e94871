"""`braid serve --metrics`: the Prometheus endpoint reports what the node actually did."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import braid

SECRET = "metrics-secret"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """The samples of /metrics as {name{labels}: value}, comments dropped."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def test_metrics_count_requests_failures_and_log_batches(tmp_path: Path) -> None:
    """After 20 patches and one wrong-seq patch through a client, the endpoint shows at least
    those requests, one HEAD_SEQ_OFF failure by code and name, log records and batches
    written with time spent syncing, and one open connection."""
    metrics_port = free_port()
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "braid.cli.main",
            "serve",
            "--data",
            str(tmp_path / "store"),
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(ready),
            "--metrics",
            f"127.0.0.1:{metrics_port}",
            "--wal-segment-bytes",
            str(1 << 20),
        ],
        env=dict(os.environ, BRAID_SECRET=SECRET),
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (ready.exists() and ready.read_text()):
            assert process.poll() is None, "braid serve exited"
            assert time.monotonic() < deadline, "braid serve did not start"
            time.sleep(0.05)
        key = braid.Key("metrics-space", "doc")
        async with braid.connect([ready.read_text()], secret=SECRET) as client:
            await client.initialize(key, braid.Update(1, 1, redo="{}"))
            for seq in range(2, 22):
                await client.patch(key, [braid.Update(seq, seq, redo=f'{{"n":{seq}}}')])
            with pytest.raises(braid.BraidError):
                await client.patch(key, [braid.Update(40, 40, redo="{}")])
            samples = scrape(metrics_port)
        assert samples["braid_requests_total"] >= 22
        assert samples['braid_request_failures_total{code="2003",name="HEAD_SEQ_OFF"}'] == 1
        assert samples["braid_wal_records_total"] >= 21
        assert samples["braid_wal_batches_total"] >= 1
        assert samples["braid_wal_sync_seconds_total"] > 0
        assert samples["braid_wal_durable_lsn"] >= 21
        assert samples["braid_connections_open"] == 1
        assert samples["braid_overloaded_total"] == 0
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
