"""`braid bench transfer`: export and import throughput (documents/s and MB/s).

A durable store of `--documents` documents (1 to 6 deltas of a few hundred bytes each) is
exported to a file, that file imported into a new store, then imported into it again (which
changes nothing: import is idempotent), `--runs` times. The work is the commands' own
(`braid.cli.transfer`); every run's figures are printed and written, with their medians.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

import braid
from braid.bench.common import Report, run_and_report, run_loop
from braid.cli.transfer import (
    FORMAT,
    VERSION,
    Figures,
    Header,
    ImportFile,
    Outcome,
    export_documents,
    import_documents,
)

PHASES = ("export", "import", "re-import")


async def _fill(directory: Path, documents: int, seed: int) -> None:
    rng = random.Random(seed)
    async with braid.open(directory) as store:
        for index in range(documents):
            key = braid.Key("bench", f"doc-{index:06d}")
            for number in range(rng.randint(1, 6)):
                text = "x" * rng.randint(100, 300)
                update = braid.Update(
                    number + 1, number + 1, who="bench", request=f"r{number}",
                    redo=json.dumps({f"m{number}": text}), undo=json.dumps({f"m{number}": None}),
                )  # fmt: skip
                if number == 0:
                    await store.initialize(key, update)
                else:
                    await store.patch(key, [update])


async def _export(source: Path, path: Path) -> Figures:
    async with braid.open(source, read_only=True) as store:
        with path.open("wb") as output:
            header = Header(FORMAT, VERSION, str(source), None, "")
            return await export_documents(store, output, header)


async def _import(target: Path, path: Path, documents: int, again: bool) -> Figures:
    async with braid.open(target) as store:
        with path.open("rb") as stream:
            source = ImportFile(str(path), stream, path.stat().st_size)
            figures = await import_documents(store, source)
    expected = Outcome.UNCHANGED if again else Outcome.CREATED
    assert figures.outcomes[expected] == documents, figures.outcomes  # the work was done
    return figures


def measure(root: Path, documents: int, runs: int) -> Report:
    source = root / "source"
    run_loop(_fill(source, documents, seed=1))
    rows: list[dict[str, object]] = []
    for run in range(runs):
        path = root / f"export-{run}.jsonl"
        target = root / f"target-{run}"
        figures = {
            "export": run_loop(_export(source, path)),
            "import": run_loop(_import(target, path, documents, again=False)),
            "re-import": run_loop(_import(target, path, documents, again=True)),
        }
        for phase, result in figures.items():
            rows.append({"run": run + 1, "phase": phase, "bytes": result.bytes, **result.rates()})
        path.unlink()
    medians = {
        phase: {
            name: statistics.median(float(row[name]) for row in rows if row["phase"] == phase)  # type: ignore[arg-type]
            for name in ("documents_per_second", "megabytes_per_second")
        }
        for phase in PHASES
    }
    return {"benchmark": "transfer", "documents": documents, "runs": rows, "median": medians}


def show(report: Report) -> None:
    console = Console()
    table = Table(title=f"braid bench transfer — {report['documents']:,} documents")
    for column in ("phase", "documents/s (median)", "MB/s (median)", "every run, documents/s"):
        table.add_column(column, justify="right")
    medians: dict[str, dict[str, float]] = report["median"]  # type: ignore[assignment]
    rows: list[dict[str, object]] = report["runs"]  # type: ignore[assignment]
    for phase in PHASES:
        runs = ", ".join(
            f"{row['documents_per_second']:,.0f}" for row in rows if row["phase"] == phase
        )
        table.add_row(
            phase,
            f"{medians[phase]['documents_per_second']:,.0f}",
            f"{medians[phase]['megabytes_per_second']:.1f}",
            runs,
        )
    console.print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--documents", type=int, default=10_000, help="documents in the store")
    parser.add_argument("--runs", type=int, default=3, help="export/import rounds (default 3)")
    parser.add_argument("--dir", type=Path, help="where the stores go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("bench-transfer.json"), help="JSON file")


def main(args: argparse.Namespace) -> int:
    return run_and_report(
        "braid-bench-transfer-",
        args.dir,
        args.out,
        lambda root: measure(root, args.documents, args.runs),
        show,
    )
