"""`braid doc history --server` and `Client.history()` against a real `braid serve` process
on 127.0.0.1 (issue 10): the node answers the History request with every retained delta,
as written, for durable and `mem_` keys alike."""

from __future__ import annotations

import json

import pytest

import braid
from braid import errors
from tests.cluster.helpers import SECRET, Servers
from tests.support import cli


async def test_history_through_a_node_matches_what_was_written(servers: Servers) -> None:
    """Deltas written through the client come back from `doc history --server --json`
    (exit 0) and from Client.history() with every field as written, for a durable key and a
    `mem_` key (which the node keeps: no "gone now" note); a missing key is
    DOCUMENT_NOT_FOUND (exit 1)."""
    server = await servers.start("node")
    first = braid.Update(1, 1, "alice", "r1", '{"a":1}', "{}", True, 3, "edit")
    second = braid.Update(2, 3, "bob", "r2", '{"a":2}', '{"a":1}')
    async with braid.connect([server.address], secret=SECRET, timeout=30) as client:
        for name in ("doc", "mem_doc"):
            key = braid.Key("chat", name)
            await client.initialize(key, first)
            await client.patch(key, [second])
            assert (await client.history(key)).deltas == [first, second]
    for name in ("doc", "mem_doc"):
        result = cli.run_braid(
            "doc", "history", "--server", server.address, "chat", name, "--json", secret=SECRET
        )
        assert result.returncode == 0, result.stderr
        shown = json.loads(result.stdout)
        assert shown["seq"] == 3
        rows = [(d["seq_begin"], d["seq_end"], d["who"], d["request"]) for d in shown["deltas"]]
        assert rows == [(1, 1, "alice", "r1"), (2, 3, "bob", "r2")]
        assert (shown["deltas"][0]["kind"], shown["deltas"][0]["asset_bytes"]) == ("edit", 3)
        assert "gone now" not in result.stdout + result.stderr
    missing = cli.run_braid(
        "doc", "history", "--server", server.address, "chat", "nope", secret=SECRET
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith(f"error {errors.DOCUMENT_NOT_FOUND.code} DOCUMENT_NOT_FOUND")


async def test_braid_server_stands_in_for_server(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With BRAID_SERVER set (and no BRAID_DATA), `doc` commands and `status` reach that
    node without --server; `--seq next` and a computed undo work through it too."""
    server = await servers.start("node")
    monkeypatch.delenv("BRAID_DATA", raising=False)
    monkeypatch.setenv("BRAID_SERVER", server.address)
    steps = [
        ("doc", "init", "chat", "env", "--redo", '{"a":{"b":1}}'),
        ("doc", "patch", "chat", "env", "--seq", "next", "--redo", '{"a":{"c":2}}'),
    ]
    for step in steps:
        result = cli.run_braid(*step, secret=SECRET)
        assert result.returncode == 0, result.stderr
    shown = cli.run_braid("doc", "history", "chat", "env", "--json", secret=SECRET)
    assert shown.returncode == 0, shown.stderr
    undos = [delta["undo"] for delta in json.loads(shown.stdout)["deltas"]]
    assert undos == [{"a": None}, {"a": {"c": None}}]
    status = cli.run_braid("status", "--json", secret=SECRET)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["address"] == server.address
