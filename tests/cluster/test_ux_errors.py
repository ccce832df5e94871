"""Errors that never mislead, against real `braid serve` processes (issue 10, first block).

Each test makes the mistake a user makes (a port already taken, the wrong secret, the
metrics port as the node's address, a `mem_` key over the network, `--data` on a store a
node holds) and asserts the exit status or code, that the message names the real cause,
and that nothing was created or changed.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import braid
from braid import errors
from tests.cluster.helpers import HOST, SECRET, Servers, free_port
from tests.cluster.test_metrics import scrape
from tests.support import cli

WRONG_SECRET = "not-the-cluster-secret"
POLLS_MAX = 100  # of a counter the node bumps after the client has its answer
POLL_SECONDS = 0.05


def run_braid(
    *argv: str, secret: str | None = SECRET, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py), with this suite's secret."""
    return cli.run_braid(*argv, secret=secret, cwd=cwd)


async def counter_reaches(port: int, name: str, value: float) -> dict[str, float]:
    """Scrape until `name` reaches `value` (bounded); the last samples either way."""
    samples = scrape(port)
    for _ in range(POLLS_MAX):
        if samples.get(name, 0.0) >= value:
            break
        await asyncio.sleep(POLL_SECONDS)
        samples = scrape(port)
    return samples


def occupied_port() -> socket.socket:
    """A socket listening on 127.0.0.1, holding its port until closed."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((HOST, 0))
    holder.listen()
    return holder


# -- a port already in use ----------------------------------------------------------------


def test_serve_on_a_port_in_use_names_it_and_creates_nothing(tmp_path: Path) -> None:
    """`braid serve --listen` on a port another process listens on: LISTEN_FAILED naming the
    address and the reason, exit 1, no traceback, and neither the store directory nor the
    ready file is created (the port is bound before the store is opened)."""
    store, ready = tmp_path / "store", tmp_path / "ready"
    with occupied_port() as holder:
        port = holder.getsockname()[1]
        result = run_braid(
            "serve", "--data", str(store), "--listen", f"{HOST}:{port}", "--ready-file", str(ready)
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error {errors.LISTEN_FAILED.code} LISTEN_FAILED: ")
    assert f"{HOST}:{port}" in result.stderr
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.exists()
    assert not ready.exists()


def test_serve_with_its_metrics_port_in_use_creates_nothing_and_frees_its_port(
    tmp_path: Path,
) -> None:
    """`--metrics` on a port in use: LISTEN_FAILED naming the metrics address, exit 1,
    nothing created, and the data port it had bound is released (bound again at once)."""
    store = tmp_path / "store"
    data_port = free_port()
    with occupied_port() as holder:
        metrics_port = holder.getsockname()[1]
        result = run_braid(
            "serve",
            "--data",
            str(store),
            "--listen",
            f"{HOST}:{data_port}",
            "--metrics",
            f"{HOST}:{metrics_port}",
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error {errors.LISTEN_FAILED.code} LISTEN_FAILED: ")
    assert f"cannot serve metrics on {HOST}:{metrics_port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not store.exists()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.bind((HOST, data_port))


# -- secrets ------------------------------------------------------------------------------


async def test_a_wrong_secret_says_the_secrets_differ_and_the_node_counts_it(
    servers: Servers, tmp_path: Path
) -> None:
    """A client with the wrong secret gets AUTH_FAILED saying "the cluster secrets differ"
    (not that the server lacks the secret), through the API and the CLI (exit 1); the node
    logs a line naming the peer and counts braid_auth_failures_total, not protocol
    failures; the refused write changed nothing."""
    metrics_port = free_port()
    server = await servers.start("node", "--metrics", f"{HOST}:{metrics_port}")
    key = braid.Key("secret-space", "doc")
    async with braid.connect([server.address], secret=WRONG_SECRET) as stranger:
        with pytest.raises(braid.BraidError) as refused:
            await stranger.initialize(key, braid.Update(1, 1, redo='{"intruder":true}'))
    assert refused.value.code == errors.AUTH_FAILED.code
    assert "the cluster secrets differ" in refused.value.detail
    assert "does not know" not in refused.value.detail
    assert not refused.value.retryable
    cli = run_braid(
        "doc", "get", "--server", server.address, key.space, key.key, secret=WRONG_SECRET
    )
    assert cli.returncode == 1
    assert cli.stderr.startswith(f"error {errors.AUTH_FAILED.code} AUTH_FAILED: ")
    assert "the cluster secrets differ" in cli.stderr
    samples = await counter_reaches(metrics_port, "braid_auth_failures_total", 2)
    assert samples["braid_auth_failures_total"] >= 2
    assert samples["braid_protocol_failures_total"] == 0
    log = server.log_text()
    assert f"authentication failed for {HOST}:" in log
    assert "the cluster secrets differ" in log
    async with braid.connect([server.address], secret=SECRET) as member:
        with pytest.raises(braid.BraidError) as absent:
            await member.get(key)
    assert absent.value.code == errors.DOCUMENT_NOT_FOUND.code


def test_no_secret_is_bad_usage_saying_how_to_make_one(tmp_path: Path) -> None:
    """With neither --secret-file nor BRAID_SECRET, `braid serve` and a `--server` command
    exit 2 with INVALID_SETTING naming both ways and `braid secret`; serve creates
    nothing."""
    store = tmp_path / "store"
    served = run_braid("serve", "--data", str(store), "--listen", f"{HOST}:0", secret=None)
    asked = run_braid("doc", "get", "--server", f"{HOST}:7400", "chat", "doc", secret=None)
    for result in (served, asked):
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"error {errors.INVALID_SETTING.code} INVALID_SETTING: ")
        assert "--secret-file" in result.stderr
        assert "BRAID_SECRET" in result.stderr
        assert "`braid secret FILE` writes a strong one" in result.stderr
    assert not store.exists()


async def test_braid_secret_writes_a_strong_secret_a_node_and_client_use(
    servers: Servers, tmp_path: Path
) -> None:
    """`braid secret FILE` writes a 43-character secret readable by its owner only, refuses
    to overwrite it (exit 2, file unchanged), and a node and a CLI client given the file
    work together; a secret shorter than 16 bytes is refused before anything is sent
    (INVALID_SETTING, exit 2, naming its length)."""
    secret_file = tmp_path / "cluster.secret"
    made = run_braid("secret", str(secret_file), secret=None)
    assert made.returncode == 0, made.stderr
    secret = secret_file.read_text()
    assert len(secret.strip()) == 43
    assert secret_file.stat().st_mode & 0o777 == 0o600
    again = run_braid("secret", str(secret_file), secret=None)
    assert again.returncode == 2
    assert "never overwrites" in again.stderr
    assert secret_file.read_text() == secret
    server = await servers.start("node", "--secret-file", str(secret_file))
    place = ("--server", server.address, "--secret-file", str(secret_file))
    init = run_braid("doc", "init", *place, "secret-space", "doc", "--redo", "{}", secret=None)
    assert init.returncode == 0, init.stderr
    assert "warning" not in init.stderr
    short = tmp_path / "short.secret"
    short.write_text("tiny\n")
    refused = run_braid("doc", "get", "--server", server.address, "--secret-file", str(short),
                        "secret-space", "doc", secret=None)  # fmt: skip
    assert refused.returncode == 2
    assert "INVALID_SETTING" in refused.stderr
    assert "the cluster secret is 4 bytes; it must be at least 16" in refused.stderr
    assert "AUTH_FAILED" not in refused.stderr


# -- a port that is not a braid node ------------------------------------------------------


async def test_the_metrics_port_is_not_a_braid_node(servers: Servers) -> None:
    """A client pointed at a node's metrics port gets NOT_A_BRAID_NODE (not retryable,
    quoting the HTTP answer), through the API and the CLI (exit 1), instead of waiting for
    a TIMEOUT; the metrics endpoint keeps serving."""
    metrics_port = free_port()
    await servers.start("node", "--metrics", f"{HOST}:{metrics_port}")
    address = f"{HOST}:{metrics_port}"
    key = braid.Key("metrics-space", "doc")
    async with braid.connect([address], secret=SECRET, timeout=60) as client:
        with pytest.raises(braid.BraidError) as wrong:
            await client.get(key)
    assert wrong.value.code == errors.NOT_A_BRAID_NODE.code
    assert not wrong.value.retryable
    assert f"{address} is not a braid node" in wrong.value.detail
    assert "HTTP" in wrong.value.detail
    cli = run_braid("doc", "get", "--server", address, key.space, key.key)
    assert cli.returncode == 1
    assert cli.stderr.startswith(f"error {errors.NOT_A_BRAID_NODE.code} NOT_A_BRAID_NODE: ")
    assert "metrics port" in cli.stderr
    assert "braid_requests_total" in scrape(metrics_port)


@pytest.fixture
async def banner_service() -> AsyncIterator[str]:
    """A TCP service on 127.0.0.1 that greets every connection with an SSH-like banner."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    service = await asyncio.start_server(greet, HOST, 0)
    try:
        yield f"{HOST}:{service.sockets[0].getsockname()[1]}"
    finally:
        service.close()
        await service.wait_closed()


async def test_another_service_is_not_a_braid_node(banner_service: str) -> None:
    """Any service answering with bytes that are not frames is NOT_A_BRAID_NODE quoting
    them, not retried, well before the call's timeout would give TIMEOUT."""
    async with braid.connect([banner_service], secret=SECRET, timeout=60) as client:
        with pytest.raises(braid.BraidError) as wrong:
            await client.get(braid.Key("other-space", "doc"))
    assert wrong.value.code == errors.NOT_A_BRAID_NODE.code
    assert "b'SSH-2.0-OpenSSH_'" in wrong.value.detail


# -- the network's view of keys and stores ------------------------------------------------


async def test_a_mem_key_over_the_network_is_not_called_gone(
    servers: Servers, tmp_path: Path
) -> None:
    """`doc init --server` with a `mem_` key prints no embedded-mode "gone now" note, and
    the document is still there for the next command; with --data the note is printed
    (it is gone: the next command does not find it)."""
    server = await servers.start("node")
    remote = ("--server", server.address)
    init = run_braid("doc", "init", *remote, "mem-space", "mem_doc", "--redo", '{"a":1}')
    assert init.returncode == 0, init.stderr
    assert "gone now" not in init.stdout
    assert run_braid("doc", "get", *remote, "mem-space", "mem_doc").returncode == 0
    local = ("--data", str(tmp_path / "store"))
    embedded = run_braid("doc", "init", *local, "mem-space", "mem_doc", "--redo", '{"a":1}')
    assert "this one is gone now" in embedded.stdout
    gone = run_braid("doc", "get", *local, "mem-space", "mem_doc")
    assert gone.stderr.startswith(f"error {errors.DOCUMENT_NOT_FOUND.code} ")


async def test_data_on_a_store_a_node_holds_names_the_node_and_its_address(
    servers: Servers,
) -> None:
    """A write with `--data` on a node's store: STORE_LOCKED (exit 1) naming the node's pid
    and suggesting `--server` with its address; `braid errors` no longer calls it
    retryable. (A read goes through the node: tests/cluster/test_ux_node_readonly.py.)"""
    port = free_port()
    server = await servers.start("node", port=port)
    result = run_braid("doc", "delete", "--data", str(server.data), "chat", "doc")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error {errors.STORE_LOCKED.code} STORE_LOCKED: ")
    assert f"it is a node (`braid serve`, pid {server.pid})" in result.stderr
    assert f"--server {HOST}:{port} instead of --data" in result.stderr
    explained = run_braid("errors", "STORE_LOCKED")
    assert "retryable: no" in explained.stdout
