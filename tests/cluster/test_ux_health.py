"""/healthz and /readyz mean what they say (issue 10), over real HTTP on 127.0.0.1 against
the metrics endpoint and node server `braid serve` composes, driven in-process so that the
states a real process passes through too quickly to catch (recovering, a stalled event loop,
shutting down) are held while they are asked about.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import braid
from braid import limits
from braid.runtime.metrics import MetricsEndpoint
from braid.runtime.server import NodeServer, ServerConfig
from braid.storage.router import Store

HOST = "127.0.0.1"
SECRET = b"a-long-enough-cluster-secret"
STALL_SECONDS_MAX = 30.0  # the stalled loop is released once /healthz has answered
assert limits.health_loop_seconds_max < STALL_SECONDS_MAX  # so the stall outlasts the check


def http_get(port: int, path: str) -> tuple[int, str]:
    """The status and body of GET http://127.0.0.1:PORT/PATH (a 503 is an answer, too)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def test_recovering_is_healthy_but_not_ready(tmp_path: Path) -> None:
    """Before the node is attached (its store still recovering) /healthz is 200 saying so
    and /readyz 503 "recovering the store"; once serving both are 200; once shutting down
    /readyz is 503 "shutting down" (clients should go elsewhere)."""
    endpoint = MetricsEndpoint(HOST, 0)
    endpoint.start()
    try:
        recovering = await asyncio.to_thread(http_get, endpoint.port, "/readyz")
        assert recovering == (503, "not ready: recovering the store\n")
        alive = await asyncio.to_thread(http_get, endpoint.port, "/healthz")
        assert alive == (200, "ok: recovering the store\n")
        async with braid.open(tmp_path / "store") as store:
            server = NodeServer(store, ServerConfig(cluster="braid", secret=SECRET))
            await server.start(HOST, 0)
            endpoint.attach(server, store)
            ready = await asyncio.to_thread(http_get, endpoint.port, "/readyz")
            assert ready == (200, f"ready: serving on {server.address}\n")
            healthy = await asyncio.to_thread(http_get, endpoint.port, "/healthz")
            assert healthy == (200, "ok: serving\n")
            await server.shutdown()
            leaving = await asyncio.to_thread(http_get, endpoint.port, "/readyz")
            assert leaving == (503, "not ready: shutting down\n")
    finally:
        endpoint.close()


@contextlib.asynccontextmanager
async def serving(directory: Path) -> AsyncIterator[tuple[MetricsEndpoint, NodeServer, Store]]:
    """A node serving a store in `directory`, its metrics endpoint attached; closed after."""
    endpoint = MetricsEndpoint(HOST, 0)
    endpoint.start()
    try:
        async with braid.open(directory) as store:
            server = NodeServer(store, ServerConfig(cluster="braid", secret=SECRET))
            await server.start(HOST, 0)
            endpoint.attach(server, store)
            yield endpoint, server, store
    finally:
        endpoint.close()


async def test_a_stalled_event_loop_is_unhealthy(tmp_path: Path) -> None:
    """While the node's event loop runs nothing (held here until /healthz has answered),
    /healthz is 503 saying the loop did not turn within its bound; once it turns, 200."""
    async with serving(tmp_path / "store") as (endpoint, server, _):
        answers: list[tuple[int, str]] = []
        answered = threading.Event()

        def ask() -> None:
            answers.append(http_get(endpoint.port, "/healthz"))
            answered.set()

        asker = threading.Thread(target=ask)
        asker.start()
        answered.wait(STALL_SECONDS_MAX)  # the loop is stalled: it runs nothing meanwhile
        asker.join(STALL_SECONDS_MAX)
        seconds = limits.health_loop_seconds_max
        assert answers == [
            (503, f"the node's event loop did not run a callback within {seconds} s\n")
        ]
        again = await asyncio.to_thread(http_get, endpoint.port, "/healthz")
        assert again == (200, "ok: serving\n")
        await server.shutdown()


async def test_a_failed_log_is_unhealthy_and_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a log write fails (an injected EIO), the node refuses every request with
    WAL_FAILED until it restarts: /healthz and /readyz are 503 saying so, and the metrics
    show braid_wal_failed 1 (0 before)."""
    async with serving(tmp_path / "store") as (endpoint, server, store):
        _, metrics = await asyncio.to_thread(http_get, endpoint.port, "/metrics")
        assert "braid_wal_failed 0.0" in metrics
        key = braid.Key("space-one", "doc")
        await store.initialize(key, braid.Update.of(1, {"a": 1}))

        def failing(fd: int, data: bytes | memoryview, offset: int) -> int:
            raise OSError(errno.EIO, "injected I/O error")

        monkeypatch.setattr(os, "pwrite", failing)
        with pytest.raises(braid.BraidError) as caught:
            await store.patch(key, [braid.Update.of(2, {"b": 2})])
        assert caught.value.name == "WAL_FAILED"
        monkeypatch.undo()
        health = await asyncio.to_thread(http_get, endpoint.port, "/healthz")
        ready = await asyncio.to_thread(http_get, endpoint.port, "/readyz")
        _, metrics = await asyncio.to_thread(http_get, endpoint.port, "/metrics")
        failed = "the write-ahead log failed (a write or fsync error)"
        assert health[0] == 503 and health[1].startswith(failed), health
        assert ready[0] == 503 and ready[1].startswith("not ready: " + failed), ready
        assert "braid_wal_failed 1.0" in metrics
        await server.shutdown()
