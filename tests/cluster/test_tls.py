"""TLS, on by flag: `braid serve --tls-cert/--tls-key` and `braid.connect(tls=...)`."""

from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

import braid
from braid.cli.main import main as braid_main

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
SECRET = "tls-secret"


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


def start_tls_server(directory: Path, cert: Path, key: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = directory / "ready"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "braid.cli.main",
            "serve",
            "--data",
            str(directory / "store"),
            "--listen",
            "127.0.0.1:0",
            "--ready-file",
            str(ready),
            "--tls-cert",
            str(cert),
            "--tls-key",
            str(key),
            "--wal-segment-bytes",
            str(1 << 20),
        ],
        env=dict(os.environ, BRAID_SECRET=SECRET),
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not (ready.exists() and ready.read_text()):
        assert process.poll() is None, "braid serve exited"
        assert time.monotonic() < deadline, "braid serve did not start"
        time.sleep(0.05)
    return process, ready.read_text()


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def test_client_and_server_speak_tls(tmp_path: Path) -> None:
    """With TLS on, a client that trusts the node's certificate reads and writes; a client
    that does not trust it is refused at connect time (UNREACHABLE), and a plain-TCP client
    cannot get an answer from a TLS node."""
    cert, key = make_certificate(tmp_path)
    process, address = start_tls_server(tmp_path, cert, key)
    try:
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
    finally:
        stop(process)


def test_cli_reads_over_tls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`braid doc --server ... --tls-ca CERT` reaches a TLS node and prints the document."""
    cert, key = make_certificate(tmp_path)
    process, address = start_tls_server(tmp_path, cert, key)
    monkeypatch.setenv("BRAID_SECRET", SECRET)
    try:
        common = ["--server", address, "--tls-ca", str(cert)]
        assert braid_main(["doc", "init", *common, "tls-space", "cli", "--redo", '{"a":1}']) == 0
        assert braid_main(["doc", "get", *common, "tls-space", "cli", "--json"]) == 0
        assert '"seq": 1' in capsys.readouterr().out
    finally:
        stop(process)
