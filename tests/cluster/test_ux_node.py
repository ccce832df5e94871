"""Health and status of one node, and its startup summary (issue 10), against real `braid
serve` processes on 127.0.0.1 and through the real `braid` command.

`braid status` and `Client.status()` report what the node holds (documents, durable and
applied lsn, connections); a status aimed at the wrong place names the real cause; the
metrics port's /healthz and /readyz answer 200 once the node serves; and a node restarted
after SIGKILL with a torn log tail logs what recovery did, before "serving", once.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import braid
from braid import errors
from braid.storage.logfiles import analyze_log
from tests.cluster.helpers import HOST, SECRET, Servers, free_port
from tests.support import cli

DOCUMENTS = 5


def run_braid(*argv: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py), with this suite's secret."""
    return cli.run_braid(*argv, secret=secret)


def http_get(port: int, path: str) -> tuple[int, str]:
    """The status and body of GET http://127.0.0.1:PORT/PATH (a 503 is an answer, too)."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def write_documents(address: str, count: int) -> None:
    async with braid.connect([address], secret=SECRET, timeout=30) as client:
        for index in range(count):
            key = braid.Key("status-space", f"doc-{index}")
            await client.initialize(key, braid.Update(1, 1, redo=f'{{"n":{index}}}'))


# -- braid status ---------------------------------------------------------------------------


async def test_status_reports_what_the_node_holds(servers: Servers) -> None:
    """`braid status --server --json` (exit 0) and Client.status() report the node's version,
    cluster, name, the documents written, a durable lsn covering every write and at least
    the applied lsn, and this client's connection; the text form names the same figures."""
    server = await servers.start("node", "--name", "status-node")
    await write_documents(server.address, DOCUMENTS)
    as_json = run_braid("status", "--server", server.address, "--json")
    assert as_json.returncode == 0, as_json.stderr
    status = json.loads(as_json.stdout)
    assert status["address"] == server.address
    assert (status["version"], status["cluster"]) == (braid.__version__, "braid")
    assert status["name"] == "status-node"
    assert status["documents"] == DOCUMENTS
    assert status["durable_lsn"] >= DOCUMENTS
    assert status["durable_lsn"] >= status["applied_lsn"]
    assert status["connections"] >= 1
    assert status["uptime_seconds"] > 0
    assert status["replayed_records"] == 0  # a fresh store: nothing to recover
    text = run_braid("status", "--server", server.address)
    assert text.returncode == 0, text.stderr
    lines = dict(line.split(None, 1) for line in text.stdout.splitlines() if " " in line)
    assert lines["documents"].strip() == str(DOCUMENTS)
    assert lines["version"].strip() == f"braid {braid.__version__}"
    assert "status-node at " + server.address in text.stdout
    async with braid.connect([server.address], secret=SECRET) as client:
        direct = await client.status()
    assert direct.documents == DOCUMENTS
    assert direct.cluster == "braid"


async def test_status_aimed_wrong_names_the_real_cause(servers: Servers, tmp_path: Path) -> None:
    """`braid status` at a metrics port is NOT_A_BRAID_NODE, at a closed port UNREACHABLE,
    with another secret AUTH_FAILED saying the secrets differ (each exit 1, no traceback);
    without --server it is bad usage (exit 2)."""
    metrics_port = free_port()
    server = await servers.start("node", "--metrics", f"{HOST}:{metrics_port}")
    closed = f"{HOST}:{free_port()}"
    cases = [
        (f"{HOST}:{metrics_port}", SECRET, errors.NOT_A_BRAID_NODE, "is not a braid node"),
        (closed, SECRET, errors.UNREACHABLE, closed),
        (server.address, "another-cluster-secret", errors.AUTH_FAILED, "secrets differ"),
    ]
    for address, secret, code, cause in cases:
        result = run_braid("status", "--server", address, secret=secret)
        assert result.returncode == 1, (address, result.stderr)
        assert result.stderr.startswith(f"error {code.code} {code.name}: "), result.stderr
        assert cause in result.stderr
        assert "Traceback" not in result.stderr
    missing = run_braid("status")
    assert missing.returncode == 2
    assert "--server" in missing.stderr


# -- /healthz and /readyz -------------------------------------------------------------------


async def test_health_and_readiness_of_a_serving_node(servers: Servers) -> None:
    """On a serving node's metrics port, /healthz is 200 (its event loop turns) and /readyz
    200 naming the address it serves; /metrics still serves the figures."""
    metrics_port = free_port()
    server = await servers.start("node", "--metrics", f"{HOST}:{metrics_port}")
    assert http_get(metrics_port, "/healthz") == (200, "ok: serving\n")
    assert http_get(metrics_port, "/readyz") == (200, f"ready: serving on {server.address}\n")
    status, body = http_get(metrics_port, "/metrics")
    assert status == 200
    assert "braid_requests_total" in body


# -- the startup summary --------------------------------------------------------------------


def start_lines(server_log: Path, start: int) -> list[str]:
    """The lines a server's log holds for its `start`-th start (helpers.ServerProcess)."""
    text = server_log.read_text(errors="replace")
    section = text.split(f"--- start {start}:", 1)[1].split("--- start ", 1)[0]
    return section.splitlines()[1:]


async def test_after_a_crash_the_node_says_what_recovery_did(servers: Servers) -> None:
    """Killed with SIGKILL and its log given a torn tail, a node restarted with
    `--log-format json` logs, as JSON lines and before its one "serving" line, that it
    recovered the store: the records it replayed (every write, none checkpointed yet), the
    torn tail it truncated, and the time taken; `braid status` reports the same. A fresh
    start says there was nothing to recover; `--log-level warning` hides these lines."""
    server = servers.new("node", "--log-format", "json")
    await server.start()
    await write_documents(server.address, DOCUMENTS)
    server.kill()
    segment = analyze_log(server.data / "wal").segments[-1]
    with open(segment.path, "r+b") as handle:
        handle.seek(segment.end)
        handle.write(b"\x30\x00\x00\x00" + bytes(range(7, 43)))  # a record cut short
    await server.start()
    first = [json.loads(line)["message"] for line in start_lines(server.log_path, 1)]
    assert any("nothing to recover" in message for message in first)
    lines = [json.loads(line) for line in start_lines(server.log_path, 2)]
    messages = [line["message"] for line in lines]
    serving = [index for index, message in enumerate(messages) if "serving on" in message]
    assert len(serving) == 1
    [recovered] = [index for index, text in enumerate(messages) if "recovered the store" in text]
    assert recovered < serving[0]
    summary = messages[recovered]
    assert lines[recovered]["level"] == "info"
    assert f"replayed {DOCUMENTS} log records" in summary
    assert "torn tail" in summary
    assert " s: " in summary  # "in 0.123 s: replayed ..."
    result = run_braid("status", "--server", server.address, "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["replayed_records"] == DOCUMENTS
    assert "torn tail" in status["recovery_repairs"]
    assert status["documents"] == DOCUMENTS
    server.kill()
    server.extra_args = ("--log-level", "warning")
    await server.start()
    assert not [line for line in start_lines(server.log_path, 3) if "serving on" in line]
