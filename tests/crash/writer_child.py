"""The writer process that tests/crash/test_kill9.py kills with SIGKILL; not a test itself.

    python writer_child.py DIR [--documents N] [--writers N] [--seconds S]
        [--segment-bytes B] [--checkpoint-records N]
        [--stall-at POINT --stall-after-acks N --stall-seconds S]

It opens the store in DIR with `braid.open`, makes sure documents doc-0 … doc-(N-1) exist
(resuming each from its head when the store already holds it: one directory survives many
kills), and runs --writers concurrent writer tasks; writer w owns the documents d with
d % writers == w, so every document has one writer. The content of every seq is a pure
function of (document, seq) (`update_for`), so the parent can tell what any seq must hold
without talking to the child.

Output, one line per event, flushed at once (each line is one write to the pipe):

    ready             the store is open
    ack DOC SEQ       a write of DOC ending at SEQ was acknowledged (its await returned)
    stall POINT       a fault hook reached POINT and is sleeping there (see below)
    done              the child stopped by itself after --seconds and closed the store

A line the parent reads is therefore an acknowledged write. The child stops by itself
after --seconds (or WRITES_PER_WRITER_MAX writes per writer), and a watchdog ends it hard
if closing the store hangs.

--stall-at makes a kill land at a chosen point: once at least --stall-after-acks writes
were acknowledged, the first time the point is reached the hook prints `stall POINT` and
sleeps --stall-seconds in that thread (the parent kills it meanwhile):

    checkpoint-transaction  inside the applied-state checkpoint transaction, after the
                            operations were applied and before the commit
    checkpoint-committed    after a checkpoint committed, before log segments are released
    segment-rotated         after a new log segment was created (header written, file
                            renamed into place) and before the batch that needed it is written
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as a script (`python writer_child.py`), this directory heads sys.path, not the
# repository root: put the root there so the shared oracle imports as under pytest.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import braid
from braid.storage.applied import AppliedState
from braid.storage.logfiles import LogFiles
from tests.support.json_model import merge_patch

SPACE = "crash-space"
WATCHDOG_GRACE_SECONDS = 15.0
WRITES_PER_WRITER_MAX = 200_000
STALL_POINTS = ("checkpoint-transaction", "checkpoint-committed", "segment-rotated")


def key(document: int) -> braid.Key:
    return braid.Key(SPACE, f"doc-{document}")


def inverse(before: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that undoes `patch` applied to `before`."""
    undo: dict[str, Any] = {}
    for name, value in patch.items():
        old = before.get(name)
        if isinstance(value, dict) and isinstance(old, dict):
            undo[name] = inverse(old, value)
        else:
            undo[name] = old  # None (delete) when the member was absent
    return undo


def redo_for(document: int, seq: int) -> dict[str, Any]:
    """What seq `seq` of `document` changes: deterministic, with deletes and nesting."""
    redo: dict[str, Any] = {
        "seq": seq,
        f"f{seq % 5}": f"d{document}-s{seq}-" + "x" * (seq % 37),
        "nested": {f"n{seq % 3}": [document, seq]},
    }
    if seq % 4 == 0:
        redo[f"f{(seq + 2) % 5}"] = None
    if seq % 7 == 0:
        redo["nested"] = None
    return redo


def update_for(document: int, seq: int, before: dict[str, Any]) -> braid.Update:
    redo = redo_for(document, seq)
    return braid.Update(
        seq,
        seq,
        who=f"writer-of-{document}",
        request=f"request-{document}-{seq}",
        redo=json.dumps(redo, separators=(",", ":")),
        undo=json.dumps(inverse(before, redo), separators=(",", ":")),
    )


def history(document: int, head: int) -> list[dict[str, Any]]:
    """history[s]: the document after seq s (history[0] is the empty document)."""
    states: list[dict[str, Any]] = [{}]
    for seq in range(1, head + 1):
        states.append(merge_patch(states[-1], redo_for(document, seq)))
    return states


def updates_per_write(head: int) -> int:
    return 1 + head % 3


# -- the child process -----------------------------------------------------------------------


class Output:
    """Event lines on stdout; counts acknowledgements for the stall hooks."""

    def __init__(self) -> None:
        self.acks = 0
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def ack(self, document: int, seq: int) -> None:
        self.acks += 1
        self.line(f"ack {document} {seq}")


def install_stall(output: Output, point: str, after_acks: int, seconds: float) -> None:
    """Wrap the method at `point` so the first call after `after_acks` acks sleeps."""
    fired = threading.Event()

    def stall() -> None:
        if output.acks >= after_acks and not fired.is_set():
            fired.set()
            output.line(f"stall {point}")
            time.sleep(seconds)

    def after(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            stall()
            return result

        return wrapper

    if point == "checkpoint-transaction":
        AppliedState._apply = after(AppliedState._apply)  # type: ignore[method-assign]
    elif point == "checkpoint-committed":
        AppliedState.checkpoint = after(AppliedState.checkpoint)  # type: ignore[method-assign]
    else:
        assert point == "segment-rotated"
        LogFiles._rotate = after(LogFiles._rotate)  # type: ignore[method-assign]


async def prepare(store: braid.Store, document: int, output: Output) -> tuple[int, dict[str, Any]]:
    """The document's head and content, initializing it if it does not exist yet."""
    try:
        change = await store.get(key(document))
    except braid.BraidError as error:
        if error.name != "DOCUMENT_NOT_FOUND":
            raise
        update = update_for(document, 1, {})
        await store.initialize(key(document), update)
        output.ack(document, 1)
        return 1, merge_patch({}, json.loads(update.redo))
    return change.seq, json.loads(change.document)


async def writer(
    store: braid.Store,
    documents: dict[int, tuple[int, dict[str, Any]]],
    deadline: float,
    output: Output,
) -> None:
    """Patch the owned documents round-robin until the deadline, acknowledging each."""
    owned = sorted(documents)
    turn = 0
    while time.monotonic() < deadline and turn < WRITES_PER_WRITER_MAX:
        document = owned[turn % len(owned)]
        turn += 1
        head, content = documents[document]
        updates = []
        for seq in range(head + 1, head + 1 + updates_per_write(head)):
            updates.append(update_for(document, seq, content))
            content = merge_patch(content, redo_for(document, seq))
        await store.patch(key(document), updates)
        documents[document] = (updates[-1].seq_end, content)
        output.ack(document, updates[-1].seq_end)


async def main(arguments: argparse.Namespace) -> None:
    output = Output()
    if arguments.stall_at:
        install_stall(
            output, arguments.stall_at, arguments.stall_after_acks, arguments.stall_seconds
        )
    config = braid.DurableConfig(
        segment_bytes=arguments.segment_bytes, checkpoint_records=arguments.checkpoint_records
    )
    deadline = time.monotonic() + arguments.seconds
    store = await braid.open(arguments.directory, config)
    output.line("ready")
    states = {}
    for document in range(arguments.documents):
        states[document] = await prepare(store, document, output)
    await asyncio.gather(
        *(
            writer(
                store,
                {d: states[d] for d in states if d % arguments.writers == index},
                deadline,
                output,
            )
            for index in range(arguments.writers)
        )
    )
    await store.close()
    output.line("done")


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory")
    parser.add_argument("--documents", type=int, default=6)
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--segment-bytes", type=int, default=1 << 16)
    parser.add_argument("--checkpoint-records", type=int, default=1 << 16)
    parser.add_argument("--stall-at", choices=STALL_POINTS)
    parser.add_argument("--stall-after-acks", type=int, default=0)
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    arguments = parser.parse_args(argv)
    assert 1 <= arguments.writers <= arguments.documents
    return arguments


if __name__ == "__main__":
    parsed = parse(sys.argv[1:])
    watchdog = threading.Timer(parsed.seconds + WATCHDOG_GRACE_SECONDS, os._exit, (3,))
    watchdog.daemon = True
    watchdog.start()
    asyncio.run(main(parsed))
