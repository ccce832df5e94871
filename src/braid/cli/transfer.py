"""`braid export` and `braid import`: documents with their full retained history as JSON
lines, out of and into an embedded store or a node.

The format (version 1) is one JSON object per line, told apart by `type`:

    {"type":"header","format":"braid-export","version":1,"source":"…","space":null,"prefix":""}
    {"type":"document","space":"chat","key":"room-1","compacted_through":0,
     "compacted_exact":true,"deltas":[{"seq_begin":1,"seq_end":1,"who":"","request":"",
     "redo":"{\\"title\\":\\"hi\\"}","undo":"{}","active":false,"asset_bytes":0,"kind":""}]}
    …
    {"type":"end","documents":1}

Each document line holds its retained deltas, oldest first, every field as stored: redo and
undo are the stored JSON texts (strings, byte for byte), so an imported document answers
`get`, `compute` and `history` exactly as the exported one. The end line makes a file cut
short on a line boundary detectable. A compacted document's first delta is the fold (kind
"compacted", undo `{}`) through `compacted_through`; import rebuilds the fold (it writes the
fold's redo as a delta one seq short, a `{}` delta for the last seq, and snapshots the two
into one), so rewinding into compacted history is refused there too. A fold that was not
one exact merge patch (`compacted_exact` false: a member replaced by a scalar, then patched
as an object, in the folded deltas) cannot be rebuilt that way: it is imported as an exact
fold and counted as such in the summary.

Import is idempotent: a document already there with the same history is left alone, one
whose history is a prefix of the file's is appended to (an interrupted import resumes), and
one that differs is left unchanged and reported (DOCUMENT_EXISTS, exit status 1). Documents
are read and written `WINDOW_DOCUMENTS` at a time, so a node or the log's group commit sees
many requests at once. Progress goes to stderr: a bar on a terminal, otherwise a line every
`PROGRESS_SECONDS`; the summary (documents, deltas, MB, documents/s and MB/s) at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import itertools
import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from braid import errors
from braid.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    print_error,
    run_on_target,
    target_options,
)
from braid.core.document import COMPACTED_KIND
from braid.errors import BraidError
from braid.model import Key, Update, apply_patch, parse_object, to_json, validate_space
from braid.storage.api import DataService, DocumentHistory

if TYPE_CHECKING:
    from braid.cli.common import Subparsers

FORMAT = "braid-export"
VERSION = 1
WINDOW_DOCUMENTS = 64  # documents read or written at once
PROGRESS_SECONDS = 5.0  # between progress lines when stderr is not a terminal
CONFLICTS_SHOWN_MAX = 20  # conflicting documents named one by one; the rest are counted
PATCH_UPDATES_MAX = 4096  # updates per patch call (limits.updates_per_patch_max)


# -- the format -------------------------------------------------------------------------------


class Header(msgspec.Struct, tag="header", tag_field="type", frozen=True):
    format: str
    version: int
    source: str = ""
    space: str | None = None
    prefix: str = ""


class Delta(msgspec.Struct, frozen=True):
    """One delta: Update's fields by name (Update itself is encoded as an array)."""

    seq_begin: int
    seq_end: int
    who: str = ""
    request: str = ""
    redo: str = "{}"
    undo: str = "{}"
    active: bool = False
    asset_bytes: int = 0
    kind: str = ""


class Document(msgspec.Struct, tag="document", tag_field="type", frozen=True):
    space: str
    key: str
    compacted_through: int
    compacted_exact: bool
    deltas: list[Delta]


class End(msgspec.Struct, tag="end", tag_field="type", frozen=True):
    documents: int


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Header | Document | End)


def document_line(key: Key, history: DocumentHistory) -> bytes:
    deltas = [Delta(*msgspec.structs.astuple(update)) for update in history.deltas]
    document = Document(
        key.space, key.key, history.compacted_through, history.compacted_exact, deltas
    )
    return _encoder.encode(document) + b"\n"


def history_of(document: Document) -> DocumentHistory:
    deltas = [Update(*msgspec.structs.astuple(delta)) for delta in document.deltas]
    return DocumentHistory(deltas, document.compacted_through, document.compacted_exact)


# -- progress ---------------------------------------------------------------------------------


@dataclass
class Figures:
    """What an export or import did, and how fast."""

    documents: int = 0
    deltas: int = 0
    bytes: int = 0  # of the export file
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0

    def finish(self) -> None:
        self.seconds = time.perf_counter() - self.started

    def rates(self) -> dict[str, float]:
        seconds = max(self.seconds, 1e-9)
        return {
            "documents_per_second": round(self.documents / seconds, 1),
            "megabytes_per_second": round(self.bytes / 1e6 / seconds, 2),
        }

    def summary(self) -> str:
        rates = self.rates()
        return (
            f"{self.documents:,} documents, {self.deltas:,} deltas, "
            f"{self.bytes / 1e6:.2f} MB in {self.seconds:.2f} s: "
            f"{rates['documents_per_second']:,.0f} documents/s, "
            f"{rates['megabytes_per_second']:.2f} MB/s"
        )


class Reporter:
    """Progress on stderr: a rich bar on a terminal, else a plain line now and then."""

    def __init__(self, verb: str, total: int | None, unit: str) -> None:
        self.verb = verb
        self.unit = unit
        self.total = total
        self.done = 0
        self._console = Console(stderr=True, highlight=False)
        self._bar: Progress | None = None
        self._task = None
        self._next_line = time.monotonic() + PROGRESS_SECONDS
        if sys.stderr.isatty():
            self._bar = Progress(
                TextColumn(f"{verb} "),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._task = self._bar.add_task(verb, total=total)
            self._bar.start()

    def advance(self, amount: int) -> None:
        self.done += amount
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if now >= self._next_line:
            self._next_line = now + PROGRESS_SECONDS
            of = f" of {self.total:,}" if self.total is not None else ""
            self._console.print(f"{self.verb}: {self.done:,}{of} {self.unit}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- export -----------------------------------------------------------------------------------


def selected(key: Key, space: str | None, prefix: str) -> bool:
    return (space is None or key.space == space) and key.key.startswith(prefix)


async def export_documents(
    service: DataService, output: BinaryIO, header: Header, reporter_verb: str = "exporting"
) -> Figures:
    """Write `header`, every selected document's line and the end line to `output`."""
    figures = Figures()
    keys = [
        info.key
        for info in await service.inventory()
        if selected(info.key, header.space, header.prefix)
    ]
    reporter = Reporter(reporter_verb, len(keys), "documents")
    try:
        figures.bytes += output.write(_encoder.encode(header) + b"\n")
        pending: deque[tuple[Key, asyncio.Task[DocumentHistory]]] = deque()
        for key in keys:
            pending.append((key, asyncio.ensure_future(service.history(key))))
            reporter.advance(await _settle(pending, output, figures, keep=WINDOW_DOCUMENTS - 1))
        reporter.advance(await _settle(pending, output, figures, keep=0))
        figures.bytes += output.write(_encoder.encode(End(figures.documents)) + b"\n")
    finally:
        reporter.close()
    figures.finish()
    return figures


async def _settle(
    pending: deque[tuple[Key, asyncio.Task[DocumentHistory]]],
    output: BinaryIO,
    figures: Figures,
    *,
    keep: int,
) -> int:
    """Write the oldest pending documents, in inventory order, until `keep` remain; returns
    how many were settled."""
    settled = 0
    while len(pending) > keep:
        settled += 1
        key, task = pending.popleft()
        try:
            history = await task
        except BraidError as error:
            if error.info is not errors.DOCUMENT_NOT_FOUND:
                for _, other in pending:
                    other.cancel()
                raise
            continue  # deleted since the inventory: not exported
        line = document_line(key, history)
        figures.bytes += output.write(line)
        figures.documents += 1
        figures.deltas += len(history.deltas)
    return settled


# -- import -----------------------------------------------------------------------------------


class Outcome(enum.Enum):
    CREATED = "created"
    APPENDED = "appended"  # the store held a prefix of the history: the rest was patched
    UNCHANGED = "unchanged"
    CONFLICT = "conflicts"


@dataclass
class ImportFigures(Figures):
    outcomes: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    inexact_compactions: int = 0
    conflicts: list[str] = field(default_factory=list)


class ImportFile:
    """The lines of an export file (or stdin), numbered, checked as they are read."""

    def __init__(self, name: str, stream: IO[bytes], size: int | None) -> None:
        self.name = name
        self.stream = stream
        self.size = size
        self.line = 0

    def invalid(self, detail: str) -> BraidError:
        return BraidError(errors.IMPORT_FILE_INVALID, f"{self.name} line {self.line}: {detail}")

    def records(self) -> Iterator[tuple[Header | Document | End, int]]:
        for raw in self.stream:
            self.line += 1
            try:
                record = _decoder.decode(raw)
            except msgspec.DecodeError as error:
                raise self.invalid(str(error)) from None
            yield record, len(raw)


def check_document(source: ImportFile, document: Document) -> tuple[Key, list[Update]]:
    """The key and updates of a document line, or IMPORT_FILE_INVALID saying what is wrong
    with it (the engine checks each update's fields again when it is written)."""
    try:
        key = Key(document.space, document.key)
    except BraidError as error:
        raise source.invalid(str(error)) from None
    updates = history_of(document).deltas
    if not updates:
        raise source.invalid(f"{key} has no deltas")
    for before, after in itertools.pairwise(updates):
        if after.seq_begin != before.seq_end + 1:
            raise source.invalid(
                f"{key}: a delta begins at seq {after.seq_begin} after one ending at "
                f"{before.seq_end}"
            )
    if document.compacted_through:
        first = updates[0]
        folded = (first.seq_end, first.kind, first.undo) == (
            document.compacted_through,
            COMPACTED_KIND,
            "{}",
        )
        if not folded or first.seq_end <= first.seq_begin:
            raise source.invalid(
                f"{key}: compacted through seq {document.compacted_through}, but its first "
                "delta is not a fold of two or more seqs ending there"
            )
    return key, updates


async def import_documents(service: DataService, source: ImportFile) -> ImportFigures:
    figures = ImportFigures()
    reporter = Reporter("importing", source.size, "bytes")
    running: set[asyncio.Task[None]] = set()
    header_seen = False
    ended = False
    try:
        for record, size in source.records():
            figures.bytes += size
            reporter.advance(size)
            if ended:
                raise source.invalid("a line after the end line")
            if isinstance(record, Header):
                if header_seen or source.line != 1:
                    raise source.invalid("a second header")
                if record.format != FORMAT or record.version != VERSION:
                    raise source.invalid(
                        f"format {record.format!r} version {record.version}; this braid "
                        f"reads {FORMAT!r} version {VERSION}"
                    )
                header_seen = True
                continue
            if not header_seen:
                raise source.invalid(f"no header: not a {FORMAT} file")
            if isinstance(record, End):
                if record.documents != figures.documents:
                    raise source.invalid(
                        f"the end line counts {record.documents} documents; the file holds "
                        f"{figures.documents}"
                    )
                ended = True
                continue
            key, updates = check_document(source, record)
            figures.documents += 1
            figures.deltas += len(updates)
            if len(running) >= WINDOW_DOCUMENTS:
                await _first_done(running)
            where = f"{source.name} line {source.line}"
            task = asyncio.ensure_future(_import_one(service, key, updates, record, figures, where))
            task.add_done_callback(running.discard)
            running.add(task)
        if not ended:
            source.line += 1
            raise source.invalid(
                "the file ends before its end line (cut short?)" if header_seen else "empty"
            )
        while running:
            await _first_done(running)
    except BaseException:
        for task in running:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*running, return_exceptions=True)
        raise
    finally:
        reporter.close()
    figures.finish()
    return figures


async def _first_done(running: set[asyncio.Task[None]]) -> None:
    done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    for task in done:
        task.result()  # raises the first failure


async def _import_one(
    service: DataService,
    key: Key,
    updates: list[Update],
    document: Document,
    figures: ImportFigures,
    where: str,
) -> None:
    """Import one document, counting its outcome; a failure keeps its code and names the
    document and its line (the import stops there: documents before it are in)."""
    try:
        outcome = await import_document(service, key, updates, document)
    except BraidError as error:
        raise BraidError(error.info, f"{key} ({where}): {error.detail}") from None
    figures.outcomes[outcome] += 1
    if document.compacted_through and not document.compacted_exact and (outcome is Outcome.CREATED):
        figures.inexact_compactions += 1
    if outcome is Outcome.CONFLICT and len(figures.conflicts) < CONFLICTS_SHOWN_MAX:
        figures.conflicts.append(str(key))


async def import_document(
    service: DataService, key: Key, updates: list[Update], document: Document
) -> Outcome:
    """Write one document's history unless it is there already (see the module)."""
    compacted = document.compacted_through
    first = updates[0]
    if compacted:
        # The fold's redo one seq short, then {} for its last seq; the snapshot folds them.
        first = Update(
            first.seq_begin,
            first.seq_end - 1,
            redo=first.redo,
            undo="{}",
            asset_bytes=first.asset_bytes,
            kind=first.kind,
        )
    try:
        await service.initialize(key, first)
    except BraidError as error:
        if error.info is not errors.DOCUMENT_EXISTS:
            raise
        return await _import_onto(service, key, updates, document)
    rest = updates[1:]
    if compacted:
        fold = updates[0]
        last = Update(fold.seq_end, fold.seq_end, active=fold.active, kind=fold.kind)
        await service.patch(key, [last])
        at_fold = to_json(apply_patch({}, parse_object(fold.redo, "the fold's redo")))
        await service.snapshot(key, fold.seq_end, at_fold, 0)
    await _append(service, key, rest)
    return Outcome.CREATED


async def _import_onto(
    service: DataService, key: Key, updates: list[Update], document: Document
) -> Outcome:
    """The document exists: unchanged if it is the file's, appended to if it holds a prefix
    of the file's history, else a conflict (left as it is)."""
    held = await service.history(key)
    same_base = held.compacted_through == document.compacted_through
    count = len(held.deltas)
    if same_base and held.deltas == updates:
        return Outcome.UNCHANGED
    if same_base and count < len(updates) and held.deltas == updates[:count]:
        await _append(service, key, updates[count:])
        return Outcome.APPENDED
    return Outcome.CONFLICT


async def _append(service: DataService, key: Key, updates: list[Update]) -> None:
    for start in range(0, len(updates), PATCH_UPDATES_MAX):
        await service.patch(key, updates[start : start + PATCH_UPDATES_MAX])


# -- the commands -----------------------------------------------------------------------------


def register(subparsers: Subparsers) -> None:
    common = target_options()
    export = subparsers.add_parser(
        "export",
        parents=[common],
        help="write documents with their full history as JSON lines",
        description="Write every document (or one space's, or those whose key begins with "
        "a prefix) with its full retained history as JSON lines, to a file or stdout. "
        "Progress and the summary go to stderr. Reads only: an embedded store is opened "
        "read-only.",
    )
    export.add_argument("--space", help="only this space's documents")
    export.add_argument("--prefix", default="", help="only documents whose key begins so")
    export.add_argument(
        "--output", "-o", metavar="FILE", help="write here (written whole, then renamed)"
    )
    export.set_defaults(handler=_export)
    imported = subparsers.add_parser(
        "import",
        parents=[common],
        help="load a `braid export` file into a store or a node, idempotently",
        description="Load a `braid export` file (or - for stdin) into the embedded store "
        "(created if missing) or a node. Re-running it changes nothing: documents already "
        "there with the same history are left alone, a shorter history is completed, and a "
        "different one is reported (exit 1) and left unchanged.",
    )
    imported.add_argument("file", metavar="FILE", help="the export file, or - for stdin")
    imported.set_defaults(handler=_import)


def _export(args: argparse.Namespace) -> int:
    if args.space is not None:
        validate_space(args.space)  # before the store is opened or the node contacted
    output_path = Path(args.output) if args.output else None
    temporary = output_path.with_name(output_path.name + ".tmp") if output_path else None
    if output_path is not None and not output_path.parent.is_dir():
        raise BraidError(errors.INVALID_SETTING, f"--output {output_path}: no such directory")

    async def action(service: DataService) -> int:
        where = args.data if args.data is not None else args.server
        header = Header(FORMAT, VERSION, str(where), args.space, args.prefix)
        try:
            if temporary is None:
                figures = await export_documents(service, sys.stdout.buffer, header)
                sys.stdout.buffer.flush()
            else:
                with temporary.open("wb") as output:
                    figures = await export_documents(service, output, header)
                    output.flush()
                    os.fsync(output.fileno())
                os.replace(temporary, output_path)  # type: ignore[arg-type]
        except BrokenPipeError:
            # The reader of stdout went away (`| head`): nothing more to say to it.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_ERROR
        except OSError as error:
            where_to = output_path or "stdout"
            raise BraidError(
                errors.INVALID_SETTING, f"cannot write the export to {where_to}: {error.strerror}"
            ) from None
        _report(args, "exported", figures, sys.stderr)
        return EXIT_OK

    try:
        return run_on_target(args, action, create=False, read_only=True)
    finally:
        if temporary is not None:
            temporary.unlink(missing_ok=True)


def _import(args: argparse.Namespace) -> int:
    if args.file == "-":
        source = ImportFile("stdin", sys.stdin.buffer, None)
        return _run_import(args, source)
    path = Path(args.file)
    try:
        stream = path.open("rb")
    except OSError as error:
        raise BraidError(
            errors.INVALID_SETTING, f"cannot read the import file {path}: {error.strerror}"
        ) from None
    with stream:
        size = os.fstat(stream.fileno()).st_size
        return _run_import(args, ImportFile(str(path), stream, size))


def _run_import(args: argparse.Namespace, source: ImportFile) -> int:
    async def action(service: DataService) -> int:
        figures = await import_documents(service, source)
        _report(args, "imported", figures, sys.stdout)
        conflicts = figures.outcomes[Outcome.CONFLICT]
        for name in figures.conflicts:
            detail = f"{name} holds a different history than {source.name}; left unchanged"
            print_error(BraidError(errors.DOCUMENT_EXISTS, detail), as_json=args.json)
        if conflicts > len(figures.conflicts):
            print(f"... and {conflicts - len(figures.conflicts)} more", file=sys.stderr)
        return EXIT_ERROR if conflicts else EXIT_OK

    return run_on_target(args, action, create=True, read_only=False)


def _report(args: argparse.Namespace, verb: str, figures: Figures, stream: IO[str]) -> None:
    fields: dict[str, object] = {
        "documents": figures.documents,
        "deltas": figures.deltas,
        "bytes": figures.bytes,
        "seconds": round(figures.seconds, 3),
        **figures.rates(),
    }
    line = f"{verb} {figures.summary()}"
    if isinstance(figures, ImportFigures):
        counts = {outcome.value: figures.outcomes[outcome] for outcome in Outcome}
        fields |= counts | {"inexact_compactions": figures.inexact_compactions}
        line += "; " + ", ".join(f"{count:,} {name}" for name, count in counts.items())
        if figures.inexact_compactions:
            line += (
                f"; {figures.inexact_compactions} inexact compactions imported as exact "
                "(see braid import --help)"
            )
    if args.json:
        print(json.dumps(fields, sort_keys=True), file=stream)
    else:
        print(line, file=stream)
