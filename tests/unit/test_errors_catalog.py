"""The error catalog: unique stable codes, well-formed entries, and a published table that
matches the code (`docs/errors.md`, regenerated with `make docs`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from braid import errors
from braid.cli.main import main
from braid.errors import BraidError, ErrorInfo, catalog, lookup, render_markdown

DOCS_ERRORS = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
NAME_PATTERN = re.compile(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*")
RANGES = {
    1: "invalid input",
    2: "document state",
    3: "storage",
    4: "network and protocol",
    9: "internal",
}


def test_codes_and_names_are_unique() -> None:
    """No two entries share a code or a name."""
    entries = catalog()
    assert len({info.code for info in entries}) == len(entries)
    assert len({info.name for info in entries}) == len(entries)


def test_catalog_is_ordered_and_lookup_agrees() -> None:
    """catalog() is sorted by code and lookup(code) returns that very entry."""
    entries = catalog()
    assert [info.code for info in entries] == sorted(info.code for info in entries)
    for info in entries:
        assert lookup(info.code) is info
    assert lookup(999_999) is None


@pytest.mark.parametrize("info", catalog(), ids=lambda info: info.name)
def test_every_entry_is_well_formed(info: ErrorInfo) -> None:
    """Code in a documented range, UPPER_SNAKE name, a one-line sentence as description, bools,
    and a module constant of the same name bound to the entry."""
    assert isinstance(info.code, int)
    assert 1000 <= info.code <= 9999
    assert info.code // 1000 in RANGES
    assert NAME_PATTERN.fullmatch(info.name)
    assert info.description.strip() == info.description
    assert len(info.description) >= 20
    assert info.description.endswith(".")
    assert "\n" not in info.description
    assert type(info.retryable) is bool
    assert type(info.user_fixable) is bool
    assert getattr(errors, info.name) is info


def test_braid_error_carries_its_entry() -> None:
    """A BraidError exposes its entry's code, name and flags, and its message names the code."""
    error = BraidError(errors.DISK_FULL, "no room for 7 bytes")
    assert (error.code, error.name, error.retryable, error.user_fixable) == (
        3008,
        "DISK_FULL",
        True,
        False,
    )
    assert str(error) == "[3008 DISK_FULL] no room for 7 bytes"


def test_docs_errors_md_is_current() -> None:
    """docs/errors.md is exactly what `braid errors --markdown` prints now."""
    assert DOCS_ERRORS.read_text(encoding="utf-8") == render_markdown(), (
        "docs/errors.md is stale: run `make docs`"
    )


def test_a_catalog_change_makes_the_doc_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above has teeth: adding an entry changes the rendered table."""
    extra = ErrorInfo(9999, "TEST_ONLY", "An entry added by this test.", False, False)
    monkeypatch.setitem(errors._CATALOG, extra.code, extra)
    rendered = render_markdown()
    assert rendered != DOCS_ERRORS.read_text(encoding="utf-8")
    assert "| 9999 | `TEST_ONLY` | no | no | An entry added by this test. |" in rendered


def test_markdown_has_one_row_per_entry() -> None:
    """The table lists every entry once, with escaped pipes."""
    rows = [line for line in render_markdown().splitlines() if re.match(r"\| \d{4} \|", line)]
    assert [int(row.split("|")[1]) for row in rows] == [info.code for info in catalog()]


@pytest.mark.parametrize("info", catalog(), ids=lambda info: info.name)
def test_the_cli_explains_every_code(info: ErrorInfo, capsys: pytest.CaptureFixture[str]) -> None:
    """`braid errors CODE` prints the name, the description and both flags."""
    assert main(["errors", str(info.code)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{info.code} {info.name}\n")
    assert info.description in out
    assert f"retryable: {'yes' if info.retryable else 'no'}" in out
    assert f"user can fix: {'yes' if info.user_fixable else 'no'}" in out


def test_the_cli_prints_the_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    """`braid errors --markdown` (what `make docs` runs) prints render_markdown() verbatim."""
    assert main(["errors", "--markdown"]) == 0
    assert capsys.readouterr().out == render_markdown()
