"""`braid demo`: kill -9 a busy writer and show that no acknowledged write was lost.

1. Start `braid.cli.demo_child` on a fresh temporary store: several concurrent writers
   append deltas to their documents and print every acknowledged (document, seq).
2. Once acknowledgements flow, wait a random short time and SIGKILL the child.
3. Scan the log read-only (as `braid wal verify` does), then reopen the store, which repairs
   a torn tail and replays the log.
4. Check every acknowledged write: its seq is at or below the document's head, and the
   document's content is exactly what its deltas make (the content is a pure function of
   document and seq, see `demo_child`).
5. On one document, show headpatch, rewind and a snapshot, each checked against the
   expected content.

Exits 0 only if nothing acknowledged was lost and every check held. The temporary directory
is removed unless `--keep` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

import braid
from braid.cli import demo_child
from braid.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    WAL_DIRECTORY_NAME,
    add_json_flag,
    positive_float,
    positive_int,
    print_json,
)
from braid.errors import DOCUMENT_NOT_FOUND, REWIND_PAST_COMPACTED, BraidError
from braid.model import HEAD_PATCH, REWIND, apply_patch, to_json
from braid.storage.wal import analyze_log

if TYPE_CHECKING:
    from braid.cli.common import Subparsers

READY_SECONDS_MAX = 30.0  # the child must open the store and acknowledge a write by then
KILL_AFTER_SECONDS = (0.3, 1.0)  # the random kill delay, after the first acknowledgement


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="kill -9 a writer mid-stream and prove no acknowledged write was lost",
        description="Run concurrent writers in a child process on a temporary store, SIGKILL "
        "it at a random moment, reopen the store, and check that every acknowledged write "
        "survived with the right content. Exit 0 only if none was lost.",
    )
    parser.add_argument(
        "--writers", type=positive_int, default=4, metavar="N", help="concurrent writers (4)"
    )
    parser.add_argument(
        "--documents", type=positive_int, default=12, metavar="N", help="documents written (12)"
    )
    parser.add_argument("--seed", type=int, metavar="N", help="seed for the random kill delay")
    parser.add_argument(
        "--kill-after",
        type=positive_float,
        metavar="SECONDS",
        help="kill this long after the first acknowledgement "
        f"(default: random in {KILL_AFTER_SECONDS[0]}..{KILL_AFTER_SECONDS[1]} s)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    add_json_flag(parser)
    parser.set_defaults(handler=handle)


# -- the child process ------------------------------------------------------------------------


@dataclass
class ChildRun:
    """What the writer process did before it was killed."""

    acked: dict[int, list[int]] = field(default_factory=dict)
    ack_count: int = 0
    killed: bool = False
    finished: bool = False
    returncode: int = 0
    stderr: str = ""
    pid: int = 0


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _note(run: ChildRun, line: str) -> None:
    """Record one line of the child's output; a line cut short by the kill is ignored."""
    if not line.endswith("\n"):
        return
    words = line.split()
    if len(words) == 3 and words[0] == "ack":
        run.acked.setdefault(int(words[1]), []).append(int(words[2]))
        run.ack_count += 1
    elif words == ["done"]:
        run.finished = True


def run_child(directory: Path, writers: int, documents: int, kill_after: float) -> ChildRun:
    """Start the writer, let it acknowledge writes for `kill_after` seconds, SIGKILL it."""
    command = [
        sys.executable,
        "-m",
        "braid.cli.demo_child",
        str(directory),
        "--writers",
        str(writers),
        "--documents",
        str(documents),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1
    )
    assert process.stdout is not None
    assert process.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    errors: queue.Queue[str | None] = queue.Queue()
    readers = [
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, errors), daemon=True),
    ]
    for reader in readers:
        reader.start()
    run = ChildRun(pid=process.pid)
    try:
        if _wait_for_first_ack(run, lines):
            kill_at = time.monotonic() + kill_after
            while time.monotonic() < kill_at and process.poll() is None:
                _drain(run, lines, timeout=min(0.05, max(0.0, kill_at - time.monotonic())))
    finally:
        if process.poll() is None:
            process.kill()  # SIGKILL: no cleanup, no flush, no atexit
            run.killed = True
        run.returncode = process.wait()
        for reader in readers:
            reader.join()
    _drain(run, lines, timeout=0)
    run.stderr = "".join(line for line in iter(errors.get_nowait, None) if line)
    return run


def _wait_for_first_ack(run: ChildRun, lines: queue.Queue[str | None]) -> bool:
    deadline = time.monotonic() + READY_SECONDS_MAX
    while run.ack_count == 0 and time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return False
        if line is None:
            lines.put(None)
            return False
        _note(run, line)
    return run.ack_count > 0


def _drain(run: ChildRun, lines: queue.Queue[str | None], timeout: float) -> None:
    """Take every line already read; wait at most `timeout` for the first one."""
    try:
        line = lines.get(timeout=timeout) if timeout > 0 else lines.get_nowait()
    except queue.Empty:
        return
    while line is not None:
        _note(run, line)
        try:
            line = lines.get_nowait()
        except queue.Empty:
            return
    lines.put(None)  # keep the end marker for later drains


# -- checking the reopened store ----------------------------------------------------------------


@dataclass
class Verification:
    acked: int = 0
    present: int = 0
    lost: int = 0
    unacked_present: int = 0
    wrong_content: list[str] = field(default_factory=list)
    heads: dict[int, int] = field(default_factory=dict)
    log_before_open: str = ""
    replayed_records: int = 0
    torn_tail_repaired: bool = False
    recovery_detail: str = ""
    open_seconds: float = 0.0
    steps: list[tuple[str, str, bool]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and not self.wrong_content and all(ok for *_, ok in self.steps)


async def verify(directory: Path, run: ChildRun, documents: int) -> Verification:
    result = Verification()
    analysis = analyze_log(directory / WAL_DIRECTORY_NAME)
    result.log_before_open = analysis.verdict + (f" ({analysis.detail})" if analysis.detail else "")
    started = time.monotonic()
    async with braid.open(directory, create=False) as store:
        result.open_seconds = time.monotonic() - started
        report = store.durable.report
        result.replayed_records = report.replayed_records
        result.torn_tail_repaired = report.torn_tail_repaired
        result.recovery_detail = report.detail
        for document in range(documents):
            await _check_document(store, document, run.acked.get(document, []), result)
        if result.heads:
            chosen = max(result.heads, key=lambda document: result.heads[document])
            await tour_history(store, chosen, result.heads[chosen], result.steps)
    return result


async def _check_document(
    store: braid.Store, document: int, acked: list[int], result: Verification
) -> None:
    key = demo_child.document_key(document)
    try:
        change = await store.get(key)
    except BraidError as error:
        if error.info is not DOCUMENT_NOT_FOUND:
            raise
        head = 0
    else:
        head = change.seq
        if json.loads(change.document) != demo_child.expected_document(document, head):
            result.wrong_content.append(f"{key} at seq {head}")
        result.heads[document] = head
    present = sum(1 for seq in acked if seq <= head)
    result.acked += len(acked)
    result.present += present
    result.lost += len(acked) - present
    result.unacked_present += max(0, head - max(acked, default=0))


async def tour_history(
    store: braid.Store, document: int, head: int, steps: list[tuple[str, str, bool]]
) -> None:
    """headpatch, rewind and snapshot on one document, each checked against expectations."""
    key = demo_child.document_key(document)
    expected = demo_child.expected_document
    base = max(1, head - 3)
    patch = await store.compute(key, HEAD_PATCH, base)
    moved = apply_patch(expected(document, base), json.loads(patch.document))
    steps.append(
        (f"headpatch {key} from {base}", _short(patch.document), moved == expected(document, head))
    )
    rewind = await store.compute(key, REWIND, base)
    back = apply_patch(expected(document, head), json.loads(rewind.document))
    ok = rewind.seq == base and back == expected(document, base)
    steps.append((f"rewind {key} to {base}", _short(rewind.document), ok))
    if head < 4:
        return
    seq = head - 2
    document_text = to_json(expected(document, seq))
    removed = await store.snapshot(key, seq, document_text, 2)
    after = await store.get(key)
    ok = removed == seq - 1 and json.loads(after.document) == expected(document, head)
    steps.append((f"snapshot {key} at {seq}, history 2", f"removed {removed} deltas", ok))
    try:
        await store.compute(key, REWIND, seq - 1)
    except BraidError as error:
        refused = error.info is REWIND_PAST_COMPACTED
        steps.append((f"rewind {key} to {seq - 1}", f"refused: {error.code} {error.name}", refused))
    else:
        steps.append((f"rewind {key} to {seq - 1}", "allowed into compacted history", False))


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the command ----------------------------------------------------------------------------------


def handle(args: argparse.Namespace) -> int:
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    kill_after = args.kill_after
    if kill_after is None:
        kill_after = random.Random(seed).uniform(*KILL_AFTER_SECONDS)
    console = Console(highlight=False, quiet=args.json)
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="braid-demo-"))
    try:
        console.print(Text(f"store {directory}, seed {seed}"))
        console.print(
            f"{args.writers} writers on {args.documents} documents in a child process; "
            f"kill -9 {kill_after:.2f} s after its first ack"
        )
        run = run_child(directory, args.writers, args.documents, kill_after)
        if not (run.killed or run.finished) or run.ack_count == 0:
            return _child_failed(run)
        result = asyncio.run(verify(directory, run, args.documents))
    finally:
        if args.keep:
            console.print(Text(f"kept the store in {directory}"))
        else:
            shutil.rmtree(directory, ignore_errors=True)
    elapsed = time.monotonic() - started
    if args.json:
        print_json(_summary(seed, kill_after, run, result, elapsed))
    else:
        _report(console, run, result, elapsed)
    return EXIT_OK if result.ok else EXIT_ERROR


def _child_failed(run: ChildRun) -> int:
    message = f"the writer process exited with status {run.returncode} after {run.ack_count} acks"
    print(f"braid demo: {message}\n{run.stderr}", file=sys.stderr)
    return EXIT_ERROR


def _summary(
    seed: int, kill_after: float, run: ChildRun, result: Verification, elapsed: float
) -> dict[str, object]:
    return {
        "ok": result.ok,
        "seed": seed,
        "kill_after_seconds": round(kill_after, 3),
        "killed": run.killed,
        "acked": result.acked,
        "present": result.present,
        "lost": result.lost,
        "unacked_present": result.unacked_present,
        "wrong_content": result.wrong_content,
        "log_before_open": result.log_before_open,
        "replayed_records": result.replayed_records,
        "torn_tail_repaired": result.torn_tail_repaired,
        "open_seconds": round(result.open_seconds, 3),
        "elapsed_seconds": round(elapsed, 3),
        "steps": [{"step": s, "result": r, "ok": ok} for s, r, ok in result.steps],
    }


def _report(console: Console, run: ChildRun, result: Verification, elapsed: float) -> None:
    how = "killed with SIGKILL" if run.killed else "finished before the kill"
    console.print(f"writer process {run.pid} {how} (exit status {run.returncode})")
    counts = Table(title="after kill -9 and reopen", show_header=False)
    counts.add_column("what")
    counts.add_column("value", justify="right")
    rows = [
        ("acknowledged (document, seq)", str(result.acked)),
        ("present after reopen", str(result.present)),
        ("lost", str(result.lost)),
        ("unacknowledged but present", str(result.unacked_present)),
        ("documents with wrong content", str(len(result.wrong_content))),
        ("log before reopen", result.log_before_open),
        ("records replayed on open", str(result.replayed_records)),
        ("torn tail repaired", "yes" if result.torn_tail_repaired else "no"),
        ("reopen took", f"{result.open_seconds * 1000:.0f} ms"),
        ("elapsed", f"{elapsed:.2f} s"),
    ]
    for what, value in rows:
        counts.add_row(what, Text(value))
    console.print(counts)
    steps = Table(title="history on the longest document")
    for column in ("operation", "result", "check"):
        steps.add_column(column, overflow="fold")
    for step, outcome, ok in result.steps:
        steps.add_row(Text(step), Text(outcome), "ok" if ok else "FAILED")
    console.print(steps)
    for wrong in result.wrong_content:
        console.print(Text(f"wrong content: {wrong}"))
    verdict = "PASS" if result.ok else "FAIL"
    console.print(f"{verdict}: {result.lost} lost writes of {result.acked} acknowledged")
    if not result.ok:
        console.print("rerun with --keep to keep the store for `braid wal inspect`")
