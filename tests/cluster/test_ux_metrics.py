"""The node's metrics for operators (issue 10), scraped from a real `braid serve`: request
latency histograms by operation and outcome, the log's batch size and sync time and the
checkpoints' duration as histograms, braid_build_info, and the standard process and Python
collectors."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

import braid
from tests.cluster.helpers import SECRET, Servers, free_port
from tests.cluster.test_metrics import scrape

PATCHES = 20
README = Path(__file__).resolve().parents[2] / "README.md"


def bucket(name: str, le: str, labels: str = "") -> str:
    inner = f'le="{le}"' + (f",{labels}" if labels else "")
    return f"{name}_bucket{{{inner}}}"


async def test_latency_histograms_by_operation_and_outcome(servers: Servers) -> None:
    """After 1 initialize, 20 patches, 3 gets, a wrong-seq patch and a list: the request
    histogram counts each (operation, outcome) exactly, its +Inf bucket equals its count,
    its buckets never fall, and its sum is positive; the log's batch histogram counts every
    record in some batch and its sync histogram every batch; the list's checkpoint is in
    the checkpoint histogram."""
    metrics_port = free_port()
    server = await servers.start("node", "--metrics", f"127.0.0.1:{metrics_port}")
    key = braid.Key("metrics-space", "doc")
    async with braid.connect([server.address], secret=SECRET) as client:
        await client.initialize(key, braid.Update(1, 1, redo="{}"))
        for seq in range(2, 2 + PATCHES):
            await client.patch(key, [braid.Update(seq, seq, redo=f'{{"n":{seq}}}')])
        for _ in range(3):
            await client.get(key)
        with pytest.raises(braid.BraidError):
            await client.patch(key, [braid.Update(99, 99, redo="{}")])
        await client.inventory()
        samples = scrape(metrics_port)
    name = "braid_request_duration_seconds"
    expected = {
        ("initialize", "ok"): 1,
        ("patch", "ok"): PATCHES,
        ("get", "ok"): 3,
        ("patch", "HEAD_SEQ_OFF"): 1,
        ("inventory", "ok"): 1,
    }
    for (operation, outcome), count in expected.items():
        labels = f'operation="{operation}",outcome="{outcome}"'
        assert samples[f"{name}_count{{{labels}}}"] == count
        assert samples[bucket(name, "+Inf", labels)] == count
        assert samples[f"{name}_sum{{{labels}}}"] > 0
        ladder = [
            value
            for sample, value in samples.items()
            if sample.startswith(f"{name}_bucket{{") and sample.endswith(f"{labels}}}")
        ]
        assert ladder == sorted(ladder)  # fmt: skip
    batches = samples["braid_wal_batch_records_count"]
    assert samples["braid_wal_batch_records_sum"] == samples["braid_wal_records_total"]
    assert samples["braid_wal_records_total"] >= 1 + PATCHES
    assert samples["braid_wal_sync_duration_seconds_count"] == batches >= 1
    assert samples["braid_checkpoint_duration_seconds_count"] >= 1


async def test_build_info_and_the_standard_collectors(servers: Servers) -> None:
    """braid_build_info is 1 labelled with braid's version and the Python it runs on; the
    process collector (CPU seconds, resident memory, open file descriptors) and the Python
    collectors (python_info, garbage collections) are exported."""
    metrics_port = free_port()
    await servers.start("node", "--metrics", f"127.0.0.1:{metrics_port}")
    samples = scrape(metrics_port)
    python, implementation = platform.python_version(), platform.python_implementation()
    info = (f'braid_build_info{{implementation="{implementation}",python="{python}",'
            f'version="{braid.__version__}"}}')  # fmt: skip
    assert samples[info] == 1
    assert samples["process_cpu_seconds_total"] > 0
    assert samples["process_resident_memory_bytes"] > 0
    assert samples["process_open_fds"] > 0
    assert any(sample.startswith("python_info{") for sample in samples)
    assert any(sample.startswith("python_gc_collections_total{") for sample in samples)


async def test_every_metric_the_readme_says_to_watch_is_exported(servers: Servers) -> None:
    """Each metric named in the README's "Operating a node" section is a series a real node
    exports (after a write, a checkpoint and a failed read), so the advice cannot name a metric
    that is not there."""
    section = README.read_text().split("## Operating a node", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:braid|process)_[a-z_]+)`", section))
    assert len(named) >= 10
    metrics_port = free_port()
    server = await servers.start("node", "--metrics", f"127.0.0.1:{metrics_port}")
    async with braid.connect([server.address], secret=SECRET) as client:
        await client.initialize(braid.Key("metrics-space", "doc"), braid.Update(1, 1))
        await client.inventory()  # a checkpoint
        with pytest.raises(braid.BraidError):  # a failure, counted by code
            await client.get(braid.Key("metrics-space", "missing"))
        samples = scrape(metrics_port)
    series = {sample.split("{", 1)[0] for sample in samples}
    for name in sorted(named):
        stems = {name, f"{name}_total", f"{name}_count"}
        assert stems & series, f"the README names {name}, which the node does not export"
