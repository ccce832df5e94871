"""The README's promises are checked against the code, so they cannot drift."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from braid.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def test_quick_start_is_exactly_make_demo_and_make_test() -> None:
    """The quick start is two commands, `make demo` then `make test`, and both are targets
    of the Makefile; CI runs that same test command."""
    section = README.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert [command for command in commands if command] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test:", makefile, flags=re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


BRAID_LINES = [
    line.strip()
    for block in code_blocks("sh")
    for line in block.splitlines()
    if line.strip().startswith("braid ")
]


def test_readme_shows_cli_examples() -> None:
    """The README has a command-line section with examples (the next test checks them)."""
    assert len(BRAID_LINES) >= 10


@pytest.mark.parametrize("line", BRAID_LINES)
def test_every_readme_command_parses(line: str) -> None:
    """Each `braid ...` line in the README is accepted by the real argument parser."""
    arguments = shlex.split(line.split(" #", 1)[0])[1:]
    parsed = build_parser().parse_args(arguments)
    assert callable(parsed.handler)


def test_python_example_uses_the_public_names() -> None:
    """Every `braid.NAME` the README's Python examples use exists in the package (braid.sync
    once imported, as its example does)."""
    import braid
    import braid.sync  # the example imports it

    names = set()
    for block in code_blocks("python"):
        names.update(re.findall(r"\bbraid\.([A-Za-z_]+)", block))
    assert names >= {"open", "Key", "Update", "HEAD_PATCH", "connect"}
    for name in names:
        assert hasattr(braid, name), name


RUNNABLE = [block for block in code_blocks("python") if "asyncio.run(" in block]


def test_a_python_example_runs_as_pasted(tmp_path: Path) -> None:
    """The README's complete Python example (the one with `asyncio.run`) runs unchanged in a
    fresh directory as its own script, and prints what its comments say it prints."""
    assert RUNNABLE, "the README has no complete (asyncio.run) Python example"
    for block in RUNNABLE:
        script = tmp_path / "example.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        printed = [
            line.split("# ", 1)[1].strip()
            for line in block.splitlines()
            if line.strip().startswith("print(") and "# " in line
        ]
        assert result.stdout.splitlines() == printed
