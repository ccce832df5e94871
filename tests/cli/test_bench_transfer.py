"""`braid bench transfer` as a user runs it, on a small store: it exports, imports and
re-imports every document (the bench itself asserts the import created, then left unchanged,
every one), and reports documents/s and MB/s for each phase, run by run and as medians."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_bench import run_bench


def test_bench_transfer_reports_export_import_and_reimport(tmp_path: Path) -> None:
    """200 documents, 2 runs: six rows (three phases a run) with positive rates and the
    same export size every run, and a median per phase."""
    report = run_bench(tmp_path, "transfer", "--documents", "200", "--runs", "2")
    assert report["documents"] == 200
    rows = report["runs"]
    assert isinstance(rows, list)
    assert [(row["run"], row["phase"]) for row in rows] == [
        (run, phase) for run in (1, 2) for phase in ("export", "import", "re-import")
    ]
    assert all(row["documents_per_second"] > 0 and row["megabytes_per_second"] > 0 for row in rows)
    assert len({row["bytes"] for row in rows}) == 1  # the same file, exported and imported
    medians = report["median"]
    assert isinstance(medians, dict)
    assert set(medians) == {"export", "import", "re-import"}
