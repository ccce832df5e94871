"""`braid serve --metrics`: the Prometheus endpoint reports what the node actually did."""

from __future__ import annotations

import urllib.request

import pytest

import braid
from tests.cluster.helpers import SECRET, Servers, free_port


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


async def test_metrics_count_requests_failures_and_log_batches(servers: Servers) -> None:
    """After 20 patches and one wrong-seq patch through a client, the endpoint shows at least
    those requests, one HEAD_SEQ_OFF failure by code and name, log records and batches
    written with time spent syncing, and one open connection."""
    metrics_port = free_port()
    server = await servers.start("node", "--metrics", f"127.0.0.1:{metrics_port}")
    key = braid.Key("metrics-space", "doc")
    async with braid.connect([server.address], secret=SECRET) as client:
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
