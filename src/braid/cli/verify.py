"""`braid verify`: check a whole store, read-only, with the verdict opening would reach.

It opens the store read-only (the same scan `open` runs: the log, what the files say of
each other, the applied state's header; then the log tail replayed in memory) and, unless
`--log-only`, reads every document of the applied state and checks its rows' checksums.
`braid wal verify` is the same check without reading every document.

Exit status: 0 clean; 1 repairable (the next read-write open repairs it and loses nothing
acknowledged: a torn tail, a spare segment to make again, an applied state to rebuild from
a whole log); 2 damaged (the store refuses to open, with the code printed, or it opens but
the listed documents fail with APPLIED_STATE_CORRUPT when read); 3 no store at PATH;
4 the store is open for writing in another process (STORE_LOCKED; check it through that
process, or stop it first).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from braid.cli.common import (
    EXIT_OK,
    WAL_DIRECTORY_NAME,
    add_json_flag,
    format_error,
    print_error,
    print_json,
)
from braid.errors import APPLIED_STATE_CORRUPT, STORE_LOCKED, STORE_NOT_FOUND, BraidError
from braid.storage.durable import DurableEngine
from braid.storage.scan import APPLIED_FILE, CLEAN, DAMAGED, REPAIRABLE, StoreVerdict

if TYPE_CHECKING:
    from braid.cli.common import Subparsers

EXIT_REPAIRABLE = 1
EXIT_DAMAGED = 2
EXIT_NO_STORE = 3
EXIT_LOCKED = 4
VERDICT_EXITS = {CLEAN: EXIT_OK, REPAIRABLE: EXIT_REPAIRABLE, DAMAGED: EXIT_DAMAGED}
STATUS_TEXT = (
    "Exit 0: clean. 1: repairable (the next read-write open repairs it; nothing "
    "acknowledged is lost). 2: damaged (the store will not open, or the listed documents "
    "cannot be read; the error code says which). 3: no store at PATH. 4: the store is open "
    "for writing in another process."
)


def register(subparsers: Subparsers) -> None:
    verify = subparsers.add_parser(
        "verify",
        help="check a whole store: log, applied state, every document (read-only)",
        description="Check a store as opening it would, and read every document of its "
        "applied state against its checksums. Nothing is ever modified. " + STATUS_TEXT,
    )
    verify.add_argument("path", metavar="PATH", help="a store directory")
    add_json_flag(verify)
    verify.set_defaults(handler=handle_verify, documents=True)


@dataclass
class Verdict:
    """What checking a store found."""

    path: Path
    verdict: StoreVerdict = CLEAN
    error: BraidError | None = None  # why the store does not open
    repairs: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (document, detail)
    segments: int = 0
    records: int = 0
    span: str = "no records"
    documents_checked: int | None = None

    @property
    def opens(self) -> bool:
        return self.error is None

    def as_json(self) -> dict[str, object]:
        error = self.error
        if error is None and self.unreadable:
            error = BraidError(APPLIED_STATE_CORRUPT, f"{len(self.unreadable)} document(s)")
        return {
            "path": str(self.path),
            "verdict": self.verdict,
            "opens": self.opens,
            "code": error.code if error is not None else None,
            "name": error.name if error is not None else None,
            "detail": error.detail if error is not None else None,
            "repairs": self.repairs,
            "unreadable": [{"document": key, "detail": why} for key, why in self.unreadable],
            "segments": self.segments,
            "records": self.records,
            "documents_checked": self.documents_checked,
        }


def store_directory(path: Path) -> Path:
    """The store PATH names: PATH itself, or its parent when PATH is a store's wal/."""
    if path.name == WAL_DIRECTORY_NAME and (path.parent / APPLIED_FILE).exists():
        return path.parent
    return path


async def check_store(path: Path, *, documents: bool) -> Verdict:
    """Open the store read-only and judge it; raises STORE_NOT_FOUND and STORE_LOCKED."""
    verdict = Verdict(path)
    try:
        engine = await DurableEngine.open(path, read_only=True, create=False)
    except BraidError as error:
        if error.info in (STORE_NOT_FOUND, STORE_LOCKED):
            raise
        verdict.verdict, verdict.error = DAMAGED, error
        return verdict
    try:
        scan = engine.scan
        records = scan.log.records
        verdict.segments = len(scan.log.segments)
        verdict.records = len(records)
        if records:
            verdict.span = f"lsn {records[0].lsn}..{records[-1].lsn}"
        verdict.repairs = list(scan.repairs)
        if documents:
            verdict.unreadable, verdict.documents_checked = engine.verify_documents()
    finally:
        await engine.close()
    if verdict.unreadable:
        verdict.verdict = DAMAGED
    elif verdict.repairs:
        verdict.verdict = REPAIRABLE
    return verdict


def verdict_text(verdict: Verdict) -> str:
    intact = (
        f"{_count(verdict.segments, 'segment')}, "
        f"{_count(verdict.records, 'intact record')} ({verdict.span})"
    )
    if verdict.documents_checked is not None:
        intact += f", {_count(verdict.documents_checked, 'document')} checked"
    if verdict.error is not None:
        return f"damaged: the store will not open.\n{format_error(verdict.error)}"
    lines = []
    if verdict.unreadable:
        lines.append(
            f"damaged: {intact}; {len(verdict.unreadable)} document(s) cannot be read "
            f"(error {APPLIED_STATE_CORRUPT.code} {APPLIED_STATE_CORRUPT.name}):"
        )
        lines += [f"  {key}: {why}" for key, why in verdict.unreadable]
    elif verdict.repairs:
        lines.append(f"repairable: {intact}. The next read-write open repairs:")
    else:
        lines.append(f"clean: {intact}")
    lines += [f"  {repair}" for repair in verdict.repairs]
    return "\n".join(lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def handle_verify(args: argparse.Namespace) -> int:
    path = store_directory(Path(args.path))
    try:
        verdict = asyncio.run(check_store(path, documents=args.documents))
    except BraidError as error:
        print_error(error, as_json=args.json)
        return EXIT_LOCKED if error.info is STORE_LOCKED else EXIT_NO_STORE
    if args.json:
        print_json(verdict.as_json())
    else:
        print(f"{path}: {verdict_text(verdict)}")
    return VERDICT_EXITS[verdict.verdict]
