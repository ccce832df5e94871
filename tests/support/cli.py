"""The real `braid` command, run in a child process, as the CLI suites use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI_SECONDS_MAX = 60  # one command, however slow the machine


def run_braid(
    *argv: str, secret: str | None, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`braid ARGV...` with BRAID_SECRET set to `secret` (or unset when None), reading
    `stdin` (or nothing); its exit status and output, whatever they are."""
    environment = {key: value for key, value in os.environ.items() if key != "BRAID_SECRET"}
    if secret is not None:
        environment["BRAID_SECRET"] = secret
    return subprocess.run(
        [sys.executable, "-m", "braid.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS_MAX,
        env=environment,
        cwd=cwd,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        check=False,
    )
