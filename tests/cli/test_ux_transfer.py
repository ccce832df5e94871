"""`braid export` and `braid import` on embedded stores, through the real `braid` command
(issue 10): a round trip over 10,000 documents answers every read byte for byte as the
original did; importing again changes nothing; a selection exports only its documents; an
interrupted import resumes; a file that is not an export, or is cut short, is refused naming
its line. (Through nodes: tests/cluster/test_ux_node_transfer.py.)"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from pathlib import Path

import pytest

import braid
from braid import errors
from braid.cli import transfer
from braid.errors import BraidError
from braid.storage.router import Store
from tests.support import cli
from tests.support.files import file_hashes

DOCUMENTS = 10_000
WRITES_AT_ONCE = 256


def run_braid(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py); embedded stores need no secret."""
    return cli.run_braid(*argv, secret=None)


def key_of(index: int) -> braid.Key:
    return braid.Key(f"space-{index % 7}", f"doc-{index:05d}-é")


async def write_document(store: Store, index: int, rng: random.Random) -> None:
    """Document `index`: 1 to 6 deltas (some spanning seqs, some with who/request/kind, a
    member deleted now and then), every fifth one compacted keeping its newest delta."""
    key = key_of(index)
    seq = 0
    deltas = rng.randint(1, 6)
    for number in range(deltas):
        width = rng.choice((1, 1, 3))
        redo: dict[str, object] = {f"m{number}": {"n": index, "text": "ü" * rng.randint(0, 40)}}
        undo: dict[str, object] = {f"m{number}": None}
        if number and rng.random() < 0.3:
            redo["m0"] = None
            undo["m0"] = {"restored": True}
        update = braid.Update(
            seq + 1,
            seq + width,
            who=rng.choice(("", "alice", "bob")),
            request=f"req-{number}",
            redo=json.dumps(redo, ensure_ascii=False),
            undo=json.dumps(undo),
            active=rng.random() < 0.5,
            asset_bytes=rng.randint(0, 9),
            kind=rng.choice(("", "edit")),
        )
        seq += width
        if number == 0:
            await store.initialize(key, update)
        else:
            await store.patch(key, [update])
    if index % 5 == 0 and deltas >= 3:
        history = await store.history(key)
        boundary = history.deltas[-2].seq_end
        document: dict[str, object] = {}
        for delta in history.deltas[:-1]:
            document = braid.model.apply_patch(document, json.loads(delta.redo))
        await store.snapshot(key, boundary, json.dumps(document), 1)


async def build_store(directory: Path, count: int) -> None:
    rng = random.Random(10)
    async with braid.open(directory) as store:
        for start in range(0, count, WRITES_AT_ONCE):
            batch = range(start, min(start + WRITES_AT_ONCE, count))
            await asyncio.gather(*(write_document(store, index, rng) for index in batch))


async def answers(store: Store, key: braid.Key) -> list[object]:
    """Every read of `key`: its history, get, and compute both ways from every seq (the
    answer, or the error code when there is none)."""
    history = await store.history(key)
    change = await store.get(key)
    found: list[object] = [history, (change.document, change.seq, change.reads)]
    for seq in range(history.head + 1):
        for method in (braid.HEAD_PATCH, braid.REWIND):
            try:
                answer = await store.compute(key, method, seq)
                found.append((answer.document, answer.seq, answer.reads))
            except BraidError as error:
                found.append(error.code)
    return found


async def compare_stores(original: Path, copy: Path) -> int:
    """Assert both stores hold the same documents answering every read identically;
    returns how many documents were compared."""
    async with (
        braid.open(original, read_only=True) as left,
        braid.open(copy, read_only=True) as right,
    ):
        keys = [info.key for info in await left.inventory()]
        assert keys == [info.key for info in await right.inventory()]
        for key in keys:
            assert await answers(left, key) == await answers(right, key), key
    return len(keys)


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, float]:
    assert result.returncode == 0, result.stderr
    figures: dict[str, float] = json.loads(result.stdout or result.stderr)
    return figures


def test_round_trip_of_10000_documents_is_exact_and_idempotent(tmp_path: Path) -> None:
    """10,000 documents (1-6 deltas, seq ranges, who/request/kind, deletions, a fifth of
    them compacted) exported and imported into a new store answer history, get and compute
    (both ways, from every seq) byte for byte as the originals, errors included; importing
    the file again reports every document unchanged and changes no file of the store.
    Prints the throughput of both commands."""
    original, copy, exported = tmp_path / "original", tmp_path / "copy", tmp_path / "all.jsonl"
    asyncio.run(build_store(original, DOCUMENTS))
    out = summary(run_braid("export", "--data", str(original), "-o", str(exported), "--json"))
    assert out["documents"] == DOCUMENTS
    assert exported.stat().st_size == out["bytes"]
    first = summary(run_braid("import", "--data", str(copy), str(exported), "--json"))
    assert (first["created"], first["unchanged"], first["conflicts"]) == (DOCUMENTS, 0, 0)
    assert asyncio.run(compare_stores(original, copy)) == DOCUMENTS
    before = {name: digest for name, digest in file_hashes(copy).items() if name != "LOCK"}
    again = summary(run_braid("import", "--data", str(copy), str(exported), "--json"))
    assert (again["created"], again["appended"], again["unchanged"]) == (0, 0, DOCUMENTS)
    after = {name: digest for name, digest in file_hashes(copy).items() if name != "LOCK"}
    assert after == before
    for name, figures in (("export", out), ("import", first), ("import again", again)):
        print(
            f"{name}: {figures['documents']:.0f} documents, {figures['bytes'] / 1e6:.1f} MB "
            f"in {figures['seconds']:.2f} s: {figures['documents_per_second']:.0f} "
            f"documents/s, {figures['megabytes_per_second']:.2f} MB/s"
        )


def test_a_selection_exports_only_its_documents(tmp_path: Path) -> None:
    """`--space` exports that space's documents only, `--prefix` those whose key begins so;
    the text summary goes to stderr, the file to stdout, and the end line counts them."""
    store = tmp_path / "store"
    asyncio.run(build_store(store, 30))
    in_space = run_braid("export", "--data", str(store), "--space", "space-3")
    assert in_space.returncode == 0, in_space.stderr
    lines = [json.loads(line) for line in in_space.stdout.splitlines()]
    documents = [line for line in lines if line["type"] == "document"]
    assert {line["space"] for line in documents} == {"space-3"}
    assert len(documents) == len([i for i in range(30) if i % 7 == 3])
    assert lines[-1] == {"type": "end", "documents": len(documents)}
    assert in_space.stderr.startswith(f"exported {len(documents)} documents")
    prefixed = run_braid("export", "--data", str(store), "--prefix", "doc-0001")
    keys = [json.loads(line).get("key") for line in prefixed.stdout.splitlines()[1:-1]]
    assert keys and all(key.startswith("doc-0001") for key in keys)


def test_an_interrupted_import_resumes_and_a_different_history_is_reported(
    tmp_path: Path,
) -> None:
    """A store holding a prefix of a document's history is completed (appended); one whose
    history differs is left unchanged and named with DOCUMENT_EXISTS (exit 1) while every
    other document is imported."""
    source, target, exported = tmp_path / "source", tmp_path / "target", tmp_path / "x.jsonl"
    asyncio.run(build_store(source, 20))
    assert run_braid("export", "--data", str(source), "-o", str(exported)).returncode == 0
    lines = exported.read_text().splitlines()
    documents = [json.loads(line) for line in lines[1:-1]]
    longer = next(d for d in documents if len(d["deltas"]) >= 2 and not d["compacted_through"])
    other = next(d for d in documents if d is not longer)
    first = longer["deltas"][0]

    async def prepare() -> None:
        async with braid.open(target) as store:
            update = braid.Update(**first)
            await store.initialize(braid.Key(longer["space"], longer["key"]), update)
            differing = braid.Update(1, 1, redo='{"mine":true}')
            await store.initialize(braid.Key(other["space"], other["key"]), differing)

    asyncio.run(prepare())
    result = run_braid("import", "--data", str(target), str(exported))
    assert result.returncode == 1
    assert "1 appended" in result.stdout and "1 conflicts" in result.stdout
    name = f"{other['space']}/{other['key']}"
    assert f"error {errors.DOCUMENT_EXISTS.code} DOCUMENT_EXISTS: {name} holds a" in result.stderr

    async def read() -> tuple[int, str]:
        async with braid.open(target, read_only=True) as store:
            resumed = await store.history(braid.Key(longer["space"], longer["key"]))
            kept = await store.get(braid.Key(other["space"], other["key"]))
            return len(resumed.deltas), kept.document

    assert asyncio.run(read()) == (len(longer["deltas"]), '{"mine":true}')


def test_a_file_that_is_not_an_export_is_refused_naming_its_line(tmp_path: Path) -> None:
    """No header, a line that is not JSON, deltas out of order, or a file cut short before
    its end line: IMPORT_FILE_INVALID (exit 1) naming the file and the line; a missing file
    is bad usage (exit 2) and creates no store."""
    store = tmp_path / "store"
    asyncio.run(build_store(store, 3))
    exported = run_braid("export", "--data", str(store)).stdout.splitlines()
    document = json.loads(exported[1])
    document["deltas"] = list(reversed(document["deltas"])) + document["deltas"]
    cases = {
        "headless": (exported[1:], 1, "no header"),
        "garbage": ([exported[0], "{not json", *exported[1:]], 2, "malformed"),
        "disorder": ([exported[0], json.dumps(document), *exported[2:]], 2, "a delta begins"),
        "short": (exported[:-1], len(exported), "ends before its end line"),
    }
    for name, (lines, line, detail) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        result = run_braid("import", "--data", str(tmp_path / f"into-{name}"), str(path))
        assert result.returncode == 1, (name, result.stderr)
        code = errors.IMPORT_FILE_INVALID.code
        assert result.stderr.startswith(f"error {code} IMPORT_FILE_INVALID: {path} line {line}")
        assert detail in result.stderr, (name, result.stderr)
    missing = run_braid("import", "--data", str(tmp_path / "fresh"), str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert "cannot read the import file" in missing.stderr
    assert not (tmp_path / "fresh").exists()


async def export_in_process(directory: Path, output: Path) -> transfer.Figures:
    async with braid.open(directory, read_only=True) as store:
        with output.open("wb") as file:
            header = transfer.Header(transfer.FORMAT, transfer.VERSION)
            return await transfer.export_documents(store, file, header)


def test_long_work_reports_progress_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal, export and import print a progress line (done of total) every
    PROGRESS_SECONDS (here every document) on stderr, leaving stdout to the data."""
    monkeypatch.setattr(transfer, "PROGRESS_SECONDS", 0.0)
    store, exported = tmp_path / "store", tmp_path / "x.jsonl"
    asyncio.run(build_store(store, 5))
    asyncio.run(export_in_process(store, exported))
    assert "exporting: 5 of 5 documents" in capsys.readouterr().err

    async def load() -> None:
        async with braid.open(tmp_path / "copy") as copy:
            with exported.open("rb") as file:
                size = exported.stat().st_size
                await transfer.import_documents(copy, transfer.ImportFile("x", file, size))

    asyncio.run(load())
    assert f"importing: {exported.stat().st_size:,} of {exported.stat().st_size:,} bytes" in (
        capsys.readouterr().err
    )


def test_an_inexact_compaction_is_imported_and_counted(tmp_path: Path) -> None:
    """A fold that is not one exact merge patch (a member set to a number, then patched as
    an object) cannot be rebuilt as such: the import writes it as an exact fold with the
    same deltas and says so in its summary (inexact_compactions 1)."""
    store, exported = tmp_path / "store", tmp_path / "x.jsonl"

    async def write() -> bool:
        async with braid.open(store) as opened:
            key = braid.Key("chat", "inexact")
            await opened.initialize(key, braid.Update(1, 1, redo='{"a":{"x":1}}'))
            await opened.patch(key, [braid.Update(2, 2, redo='{"a":1}')])
            await opened.patch(key, [braid.Update(3, 3, redo='{"a":{"b":1}}')])
            await opened.patch(key, [braid.Update(4, 4, redo='{"c":1}')])
            await opened.snapshot(key, 3, '{"a":{"b":1}}', 1)
            return (await opened.history(key)).compacted_exact

    assert asyncio.run(write()) is False
    assert run_braid("export", "--data", str(store), "-o", str(exported)).returncode == 0
    result = summary(run_braid("import", "--data", str(tmp_path / "copy"), str(exported), "--json"))
    assert (result["created"], result["inexact_compactions"]) == (1, 1)


def test_an_export_nowhere_is_bad_usage_and_opens_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--output` in a missing directory is INVALID_SETTING (exit 2) before the store is
    opened; with BRAID_DATA instead of --data, the header names the store exported."""
    store = tmp_path / "store"
    asyncio.run(build_store(store, 2))
    nowhere = run_braid("export", "--data", str(store), "-o", str(tmp_path / "no" / "x.jsonl"))
    assert nowhere.returncode == 2
    assert "no such directory" in nowhere.stderr
    monkeypatch.setenv("BRAID_DATA", str(store))
    monkeypatch.delenv("BRAID_SERVER", raising=False)
    exported = run_braid("export")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout.splitlines()[0])["source"] == str(store)


def test_a_document_the_store_refuses_is_named_with_its_line(tmp_path: Path) -> None:
    """A document line whose redo is not JSON fails the import with the store's own code
    (MALFORMED_JSON, exit 1) naming the document and its line; the documents before it are
    imported (re-running after a fix completes the rest)."""
    store = tmp_path / "store"
    asyncio.run(build_store(store, 3))
    lines = run_braid("export", "--data", str(store)).stdout.splitlines()
    broken = json.loads(lines[2])
    broken["deltas"][0]["redo"] = "{not json"
    path = tmp_path / "broken.jsonl"
    path.write_text("\n".join([lines[0], lines[1], json.dumps(broken), *lines[3:]]) + "\n")
    result = run_braid("import", "--data", str(tmp_path / "copy"), str(path))
    assert result.returncode == 1
    name = f"{broken['space']}/{broken['key']}"
    code = errors.MALFORMED_JSON.code
    assert result.stderr.startswith(f"error {code} MALFORMED_JSON: {name} ({path} line 3): ")
