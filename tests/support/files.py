"""Files as tests compare them: every file below a directory, by its hash."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file below `directory`, by its path relative to it."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def tree(directory: Path) -> dict[str, str]:
    """`file_hashes`, and every directory below `directory` too (as 'dir'): what a test
    compares when nothing may be created, not even an empty directory."""
    found = dict.fromkeys(
        (str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_dir()),
        "dir",
    )
    return dict(sorted((found | file_hashes(directory)).items()))
