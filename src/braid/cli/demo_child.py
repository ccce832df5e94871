"""The writer process of `braid demo`, and the deterministic content both sides agree on.

Run as `python -m braid.cli.demo_child DIR --writers W --documents D`. It opens the embedded
store in DIR, prints `ready`, and runs W concurrent writers (asyncio tasks sharing the log's
group commit). Writer w owns documents w, w+W, w+2W, …: it initializes each, then appends
deltas to them in turn, sometimes two updates in one patch. After each write is
acknowledged (the store's call returned, so its batch was fsync'd) it prints one line per seq,
`ack DOCUMENT SEQ`, and flushes. The parent kills this process with SIGKILL at some moment
and checks that every line it read names a write the reopened store still holds.

The content of every delta is a pure function of (document, seq), so the parent can compute
the document any seq should hold without talking to the child: `expected_document`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import braid
from braid.model import JsonValue, Key, Update, apply_patch, diff, to_json

SPACE = "demo"
SLOTS = 8  # fields a document cycles through, so documents stay small
SEQS_PER_DOCUMENT_MAX = 5_000  # the child stops on its own after this many (~1 MB: see
# limits.document_bytes_max; the demo never compacts)
SECONDS_MAX = 30.0  # … or after this long, if nobody killed it


def document_key(document: int) -> Key:
    return Key(SPACE, f"doc-{document:03d}")


def redo_for(document: int, seq: int) -> dict[str, JsonValue]:
    """The merge patch of delta `seq` of `document` (seq 1 creates it)."""
    if seq == 1:
        return {"document": document, "seq": 1, "slots": {}, "log": ["created"]}
    slot = f"s{seq % SLOTS}"
    patch: dict[str, JsonValue] = {
        "seq": seq,
        "slots": {slot: {"at": seq, "value": (document * 7919 + seq * 104729) % 1_000_003}},
    }
    if seq % 5 == 0:  # deletions must survive recovery too
        patch["slots"][f"s{(seq + SLOTS // 2) % SLOTS}"] = None
    if seq % 7 == 0:  # arrays replace
        patch["log"] = [f"seq {seq}", f"doc {document}"]
    return patch


def expected_document(document: int, seq: int) -> JsonValue:
    """The document as it stands after delta `seq` (seq >= 1)."""
    assert seq >= 1
    current: JsonValue = {}
    for applied in range(1, seq + 1):
        current = apply_patch(current, redo_for(document, applied))
    return current


def make_updates(
    document: int, current: JsonValue, first: int, count: int
) -> tuple[list[Update], JsonValue]:
    """`count` single-seq updates from seq `first` (with exact undos), and the new document."""
    updates = []
    for seq in range(first, first + count):
        redo = redo_for(document, seq)
        after = apply_patch(current, redo)
        updates.append(
            Update(
                seq_begin=seq,
                seq_end=seq,
                who=f"writer-of-{document}",
                redo=to_json(redo),
                undo=to_json(diff(after, current)),
            )
        )
        current = after
    return updates, current


def _ack(document: int, seqs: range) -> None:
    sys.stdout.write("".join(f"ack {document} {seq}\n" for seq in seqs))
    sys.stdout.flush()


async def _writer(store: braid.Store, documents: list[int], deadline: float) -> None:
    current: dict[int, JsonValue] = {}
    head = dict.fromkeys(documents, 0)
    round_number = 0
    while time.monotonic() < deadline:
        round_number += 1
        for document in documents:
            first = head[document] + 1
            if first > SEQS_PER_DOCUMENT_MAX:
                return
            count = 2 if first > 1 and (round_number + document) % 4 == 0 else 1
            updates, after = make_updates(document, current.get(document, {}), first, count)
            if first == 1:
                await store.initialize(document_key(document), updates[0])
            else:
                await store.patch(document_key(document), updates)
            current[document] = after
            head[document] = updates[-1].seq_end
            _ack(document, range(first, head[document] + 1))


async def run_child(directory: str, writers: int, documents: int) -> int:
    deadline = time.monotonic() + SECONDS_MAX
    async with braid.open(directory) as store:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        owned = [list(range(w, documents, writers)) for w in range(writers)]
        await asyncio.gather(*(_writer(store, mine, deadline) for mine in owned if mine))
    sys.stdout.write("done\n")
    sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m braid.cli.demo_child")
    parser.add_argument("directory")
    parser.add_argument("--writers", type=int, required=True)
    parser.add_argument("--documents", type=int, required=True)
    args = parser.parse_args(argv)
    return asyncio.run(run_child(args.directory, args.writers, args.documents))


if __name__ == "__main__":
    sys.exit(main())
