"""`braid export --server` and `braid import --server` against real `braid serve` processes
on 127.0.0.1 (issue 10): a node's documents (durable and `mem_` alike) go into another node
through a file and come back identical, twice without change; a node's export imports into
an embedded store too."""

from __future__ import annotations

import json
from pathlib import Path

import braid
from tests.cluster.helpers import SECRET, Servers
from tests.support import cli

DOCUMENTS = 200


async def fill(address: str) -> None:
    """DOCUMENTS documents of 1-3 deltas; every tenth a `mem_` key, every seventh compacted."""
    async with braid.connect([address], secret=SECRET, timeout=30) as client:
        for index in range(DOCUMENTS):
            prefix = "mem_" if index % 10 == 0 else ""
            key = braid.Key("transfer", f"{prefix}doc-{index}")
            await client.initialize(key, braid.Update(1, 1, "w", "r", f'{{"n":{index}}}'))
            for seq in range(2, 2 + index % 3):
                await client.patch(key, [braid.Update(seq, seq, redo=f'{{"s{seq}":1}}')])
            if index % 7 == 0 and index % 3 == 2:
                document = json.dumps({"n": index, "s2": 1})
                await client.snapshot(key, 2, document, 1)


async def histories(address: str) -> dict[braid.Key, object]:
    async with braid.connect([address], secret=SECRET, timeout=30) as client:
        keys = [info.key for info in await client.inventory()]
        found: dict[braid.Key, object] = {}
        for key in keys:
            found[key] = (await client.history(key), await client.get(key))
        return found


async def test_a_node_exports_into_another_node_identically_and_idempotently(
    servers: Servers, tmp_path: Path
) -> None:
    """Export a node's 200 documents (mem_ keys included) to a file, import it into a fresh
    node: every history and get answer is the same; importing again reports every document
    unchanged; the file also imports into an embedded store (whose durable copies of the
    node's documents answer the same)."""
    source = await servers.start("source")
    target = await servers.start("target")
    await fill(source.address)
    exported = tmp_path / "node.jsonl"
    out = cli.run_braid(
        "export", "--server", source.address, "-o", str(exported), "--json", secret=SECRET
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stderr)["documents"] == DOCUMENTS
    for attempt, expected in (("first", "created"), ("again", "unchanged")):
        result = cli.run_braid(
            "import", "--server", target.address, str(exported), "--json", secret=SECRET
        )
        assert result.returncode == 0, (attempt, result.stderr)
        assert json.loads(result.stdout)[expected] == DOCUMENTS, attempt
    assert await histories(target.address) == await histories(source.address)
    embedded = tmp_path / "embedded"
    local = cli.run_braid("import", "--data", str(embedded), str(exported), secret=None)
    assert local.returncode == 0, local.stderr
    assert f"{DOCUMENTS} created" in local.stdout
