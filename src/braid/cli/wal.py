"""`braid wal inspect|verify`: read-only tools for a store's write-ahead log.

Both take a store directory or its `wal/` directory and never modify a file. `inspect`
dumps the segments and records the log scan (`analyze_log`, the scan recovery uses) finds,
with the log's own verdict: clean, a torn tail (the next open truncates it), or corrupt.
`verify` is `braid verify` without reading every document (see `braid.cli.verify`): the
verdict opening the store will reach.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from braid.cli.common import (
    APPLIED_STATE_NAME,
    EXIT_OK,
    WAL_DIRECTORY_NAME,
    add_json_flag,
    format_error,
    print_json,
)
from braid.cli.verify import STATUS_TEXT, handle_verify
from braid.core.wal.ops import DeleteOp, FoldOp, InitOp, PatchOp, decode_op
from braid.core.wal.record import Record, RecordType
from braid.errors import STORE_NOT_FOUND, WAL_CORRUPT, BraidError
from braid.storage.wal import LogAnalysis, LogVerdict, analyze_log, list_segments

if TYPE_CHECKING:
    from braid.cli.common import Subparsers

EXIT_NO_LOG = 3
LIMIT_DEFAULT = 200


def register(subparsers: Subparsers) -> None:
    wal = subparsers.add_parser(
        "wal",
        help="inspect and verify a write-ahead log (read-only)",
        description="Read-only tools for a store's write-ahead log. PATH is a store "
        "directory or its wal/ directory. Nothing is ever modified.",
    )
    commands = wal.add_subparsers(dest="wal_command", required=True, metavar="COMMAND")
    inspect = commands.add_parser(
        "inspect",
        help="dump segments and records",
        description="List the log's segments and records (lsn, batch, type, size, key, "
        "seqs), decoding each operation, then the verdict of the scan.",
    )
    inspect.add_argument("path", metavar="PATH", help="a store directory or its wal/ directory")
    inspect.add_argument(
        "--limit",
        type=int,
        default=LIMIT_DEFAULT,
        metavar="N",
        help=f"show at most N records (default {LIMIT_DEFAULT}; 0 shows all)",
    )
    add_json_flag(inspect)
    inspect.set_defaults(handler=handle_inspect, error_exit=EXIT_NO_LOG)
    verify = commands.add_parser(
        "verify",
        help="check the store as opening it would, without reading every document",
        description="The check `braid verify` makes, without reading every document of "
        "the applied state: the log, what the store's files say of each other, and the log "
        "tail replayed in memory; the verdict is what opening the store will do. " + STATUS_TEXT,
    )
    verify.add_argument("path", metavar="PATH", help="a store directory or its wal/ directory")
    add_json_flag(verify)
    verify.set_defaults(handler=handle_verify, documents=False)


def wal_directory(path: Path) -> Path:
    """The log directory PATH names: PATH/wal for a store, else PATH if it holds segments."""
    if (path / WAL_DIRECTORY_NAME).is_dir():
        return path / WAL_DIRECTORY_NAME
    if path.is_dir() and (list_segments(path) or (path.parent / APPLIED_STATE_NAME).is_file()):
        return path
    raise BraidError(STORE_NOT_FOUND, f"no write-ahead log at {path}")


def _analyze(path_text: str) -> tuple[Path, LogAnalysis]:
    directory = wal_directory(Path(path_text))
    return directory, analyze_log(directory)


# -- verify ---------------------------------------------------------------------------------


def log_verdict_text(analysis: LogAnalysis) -> str:
    records = analysis.records
    span = f"lsn {records[0].lsn}..{records[-1].lsn}" if records else "no records"
    intact = (
        f"{_count(len(analysis.segments), 'segment')}, "
        f"{_count(len(records), 'intact record')} ({span})"
    )
    if analysis.verdict is LogVerdict.CLEAN:
        return f"clean: {intact}"
    if analysis.verdict is LogVerdict.TORN:
        return (
            f"torn: {analysis.detail}; {intact}. Recoverable: opening the store truncates "
            "the tail, which holds nothing acknowledged."
        )
    error = BraidError(WAL_CORRUPT, analysis.detail)
    return f"corrupt: {analysis.detail}; {intact} before it.\n{format_error(error)}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _verdict_json(directory: Path, analysis: LogAnalysis) -> dict[str, object]:
    corrupt = analysis.verdict is LogVerdict.CORRUPT
    segment = analysis.problem_segment
    return {
        "path": str(directory),
        "verdict": analysis.verdict,
        "detail": analysis.detail,
        "segment": segment.name if segment is not None else None,
        "offset": analysis.problem_offset if analysis.verdict is not LogVerdict.CLEAN else None,
        "segments": len(analysis.segments),
        "records": len(analysis.records),
        "code": WAL_CORRUPT.code if corrupt else None,
        "name": WAL_CORRUPT.name if corrupt else None,
    }


# -- inspect --------------------------------------------------------------------------------


def describe(record: Record) -> tuple[str, str]:
    """A record's document key and seqs, from its decoded operation."""
    if record.type is RecordType.COMMIT:
        return "", ""
    try:
        op = decode_op(record.type, record.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, BraidError, ValueError) as error:
        return f"(undecodable: {error})", ""
    if isinstance(op, InitOp):
        seqs = _span(op.update.seq_begin, op.update.seq_end)
    elif isinstance(op, PatchOp):
        seqs = _span(op.updates[0].seq_begin, op.updates[-1].seq_end)
        if len(op.updates) > 1:
            seqs += f" ({len(op.updates)} updates)"
    elif isinstance(op, FoldOp):
        delta = op.fold.delta
        seqs = f"{_span(delta.seq_begin, delta.seq_end)} (fold of {op.fold.count})"
    else:
        assert isinstance(op, DeleteOp)
        seqs = ""
    return str(op.key), seqs


def _span(begin: int, end: int) -> str:
    return str(begin) if begin == end else f"{begin}..{end}"


def handle_inspect(args: argparse.Namespace) -> int:
    directory, analysis = _analyze(args.path)
    limit = args.limit if args.limit > 0 else len(analysis.records)
    shown = analysis.records[:limit]
    if args.json:
        print_json(_inspect_json(directory, analysis, shown))
        return EXIT_OK
    console = Console(highlight=False)
    console.print(_segments_table(directory, analysis))
    console.print(_records_table(shown))
    hidden = len(analysis.records) - len(shown)
    if hidden:
        print(f"… {hidden} more records (--limit 0 shows all)")
    print(f"verdict: {log_verdict_text(analysis)}")
    return EXIT_OK


def _segments_table(directory: Path, analysis: LogAnalysis) -> Table:
    table = Table(title=Text(f"segments in {directory}"))
    for column in ("segment", "first lsn", "first batch", "records", "data end", "file bytes"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    scanned = {state.path: state for state in analysis.segments}
    for _, path in list_segments(directory):
        state = scanned.get(path)
        size = str(path.stat().st_size)
        if state is None or state.header is None:
            table.add_row(path.name, "-", "-", "not scanned", "-", size)
            continue
        header = state.header
        table.add_row(
            path.name,
            str(header.first_lsn),
            str(header.first_batch),
            str(state.records),
            str(state.end),
            size,
        )
    return table


def _records_table(records: list[Record]) -> Table:
    table = Table(title=f"{len(records)} records")
    for column in ("lsn", "batch", "type", "size"):
        table.add_column(column, justify="right" if column != "type" else "left")
    table.add_column("key", overflow="fold")
    table.add_column("seqs")
    for record in records:
        key, seqs = describe(record)
        table.add_row(
            str(record.lsn),
            str(record.batch),
            record.type.name,
            str(len(record.payload)),
            Text(key),
            seqs,
        )
    return table


def _inspect_json(directory: Path, analysis: LogAnalysis, shown: list[Record]) -> dict[str, object]:
    result = _verdict_json(directory, analysis)
    result["segment_list"] = [
        {
            "segment": state.path.name,
            "first_lsn": state.header.first_lsn if state.header else None,
            "first_batch": state.header.first_batch if state.header else None,
            "records": state.records,
            "end": state.end,
        }
        for state in analysis.segments
    ]
    result["record_list"] = [_record_json(record) for record in shown]
    return result


def _record_json(record: Record) -> dict[str, object]:
    key, seqs = describe(record)
    return {
        "lsn": record.lsn,
        "batch": record.batch,
        "type": record.type.name,
        "size": len(record.payload),
        "offset": record.offset,
        "key": key,
        "seqs": seqs,
    }
