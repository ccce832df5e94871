"""TLS, on by flag: `braid serve --tls-cert/--tls-key` and `braid.connect(tls=...)`."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

import braid
from braid.cli.main import main as braid_main
from tests.cluster.helpers import SECRET, Servers

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), made with the openssl tool."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def start_tls_server(servers: Servers, directory: Path) -> tuple[str, Path]:
    cert, key = make_certificate(directory)
    server = await servers.start("tls-node", "--tls-cert", str(cert), "--tls-key", str(key))
    return server.address, cert


async def test_client_and_server_speak_tls(servers: Servers, tmp_path: Path) -> None:
    """With TLS on, a client that trusts the node's certificate reads and writes; a client
    that does not trust it is refused at connect time (UNREACHABLE), and a plain-TCP client
    cannot get an answer from a TLS node."""
    address, cert = await start_tls_server(servers, tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    key_ = braid.Key("tls-space", "doc")
    async with braid.connect([address], secret=SECRET, tls=trusted) as client:
        await client.initialize(key_, braid.Update(1, 1, redo='{"secure":true}'))
        change = await client.get(key_)
    assert change.document == '{"secure":true}'
    assert change.seq == 1
    untrusted = ssl.create_default_context()  # system CAs: the self-signed cert fails
    async with braid.connect([address], secret=SECRET, tls=untrusted, timeout=2) as client:
        with pytest.raises(braid.BraidError) as caught:
            await client.get(key_)
    assert caught.value.name in {"UNREACHABLE", "CONNECTION_LOST", "TIMEOUT"}
    async with braid.connect([address], secret=SECRET, timeout=1) as plain:
        with pytest.raises(braid.BraidError) as refused:
            await plain.get(key_)
    assert refused.value.retryable


async def test_cli_reads_over_tls(
    servers: Servers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`braid doc --server ... --tls-ca CERT` reaches a TLS node and prints the document."""
    address, cert = await start_tls_server(servers, tmp_path)
    monkeypatch.setenv("BRAID_SECRET", SECRET)
    common = ["--server", address, "--tls-ca", str(cert)]
    # The CLI runs its own event loop: call it from a thread, off this test's loop.
    init = ["doc", "init", *common, "tls-space", "cli", "--redo", '{"a":1}']
    assert await asyncio.to_thread(braid_main, init) == 0
    get = ["doc", "get", *common, "tls-space", "cli", "--json"]
    assert await asyncio.to_thread(braid_main, get) == 0
    assert '"seq": 1' in capsys.readouterr().out
