"""Reading a store that a running node holds, through the real `braid` command (issue 10):
`--data DIR` finds the node's address in the store's LOCK and reads through the node (doc
get, list, history, export), saying so; a write, a missing secret, and a store held by
something that is not a node each fail with STORE_LOCKED naming the way to go."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import braid
from braid import errors
from tests.cluster.helpers import SECRET, Servers
from tests.support import cli


async def test_reads_of_a_held_store_go_through_its_node(servers: Servers) -> None:
    """With a node serving DIR, `doc get/list/history --data DIR` and `export --data DIR`
    exit 0 with the node's answers and a note naming the node's address on stderr; the
    readers take no lock of their own (LOCK still names the node)."""
    server = await servers.start("node")
    async with braid.connect([server.address], secret=SECRET, timeout=30) as client:
        key = braid.Key("held", "doc")
        await client.initialize(key, braid.Update(1, 1, redo='{"held":true}'))
    data = str(server.data)
    lock = (server.data / "LOCK").read_text()
    assert lock == f"pid {server.pid}\nserving {server.address}\n"
    note = f"note: {data} is held by the node at {server.address} (pid {server.pid})"
    got = cli.run_braid("doc", "get", "--data", data, "held", "doc", "--json", secret=SECRET)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["document"] == {"held": True}
    assert note in got.stderr
    listed = cli.run_braid("doc", "list", "--data", data, "--json", secret=SECRET)
    assert [entry["key"] for entry in json.loads(listed.stdout)] == ["doc"]
    history = cli.run_braid("doc", "history", "--data", data, "held", "doc", "--json",
                            secret=SECRET)  # fmt: skip
    assert json.loads(history.stdout)["seq"] == 1
    exported = cli.run_braid("export", "--data", data, secret=SECRET)
    assert exported.returncode == 0, exported.stderr
    assert '"key":"doc"' in exported.stdout
    assert (server.data / "LOCK").read_text() == lock


async def test_a_write_or_a_missing_secret_names_the_node(servers: Servers) -> None:
    """A write with --data to a held store is STORE_LOCKED naming `--server ADDRESS`; a read
    without any cluster secret is STORE_LOCKED saying the secret is needed to read through
    the node at ADDRESS (exit 1 both, no traceback)."""
    server = await servers.start("node")
    data = str(server.data)
    write = cli.run_braid("doc", "init", "--data", data, "held", "doc", "--redo", "{}",
                          secret=SECRET)  # fmt: skip
    assert write.returncode == 1
    assert write.stderr.startswith(f"error {errors.STORE_LOCKED.code} STORE_LOCKED")
    assert f"--server {server.address} instead of --data" in write.stderr
    unsecret = cli.run_braid("doc", "list", "--data", data, secret=None)
    assert unsecret.returncode == 1
    assert f"held by the node at {server.address}" in unsecret.stderr
    assert "reading through it needs the cluster secret" in unsecret.stderr
    assert "Traceback" not in write.stderr + unsecret.stderr


def test_a_store_held_by_another_process_is_a_clear_refusal(tmp_path: Path) -> None:
    """A store held by a process that is not a node (a running Python holding braid.open)
    is STORE_LOCKED for a read naming that process; nothing is read through anything."""
    store = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import asyncio, sys, braid\n"
         "async def hold():\n"
         f"    async with braid.open({str(store)!r}):\n"
         "        print('held', flush=True)\n"
         "        sys.stdin.readline()\n"
         "asyncio.run(hold())\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        result = cli.run_braid("doc", "list", "--data", str(store), secret=SECRET)
        assert result.returncode == 1
        assert f"{errors.STORE_LOCKED.code} STORE_LOCKED" in result.stderr
        assert f"pid {holder.pid}" in result.stderr
        assert "reading through it" not in result.stderr
    finally:
        holder.kill()
        holder.wait(10)
