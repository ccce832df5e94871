"""Errors that never mislead, through the real `braid` command (issue 10, first block).

Each test runs `python -m braid.cli.main` as a user would, makes one typical mistake, and
asserts the exit status (2 for bad usage, 1 for a catalogued failure), that the message
names the real cause and no other, and that nothing on disk was created or changed.
No test here needs a node: mistakes about nodes are in tests/cluster/test_ux_errors.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import braid
from braid import errors
from tests.support import cli
from tests.support.files import tree

SECRET = "a-long-enough-cluster-secret"


def run_braid(*argv: str, secret: str | None = SECRET) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py), with this suite's secret."""
    return cli.run_braid(*argv, secret=secret)


def assert_usage(result: subprocess.CompletedProcess[str], *named: str) -> None:
    """Exit 2, INVALID_SETTING naming each of `named`, no traceback."""
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error {errors.INVALID_SETTING.code} INVALID_SETTING: ")
    for text in named:
        assert text in result.stderr
    assert "Traceback" not in result.stderr


# -- settings that are wrong --------------------------------------------------------------


def test_an_address_without_a_port_is_bad_usage_about_addresses(tmp_path: Path) -> None:
    """`--server HOST` and `serve --listen HOST`: exit 2, INVALID_SETTING saying HOST:PORT,
    never the text about negative seqs that INVALID_ARGUMENT carries; serve creates
    nothing."""
    asked = run_braid("doc", "get", "--server", "127.0.0.1", "chat", "doc")
    served = run_braid("serve", "--data", str(tmp_path / "store"), "--listen", "127.0.0.1")
    for result in (asked, served):
        assert_usage(result, "'127.0.0.1' is not HOST:PORT")
        assert "negative seq" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_missing_secret_file_is_bad_usage_naming_it(tmp_path: Path) -> None:
    """`--secret-file` naming no file: exit 2, INVALID_SETTING naming the file and how to
    make a secret, for a client and for serve (which creates nothing)."""
    missing = tmp_path / "no-such-secret"
    asked = run_braid("doc", "get", "--server", "127.0.0.1:7400", "--secret-file", str(missing),
                      "chat", "doc")  # fmt: skip
    served = run_braid("serve", "--data", str(tmp_path / "store"), "--secret-file", str(missing))
    for result in (asked, served):
        assert_usage(result, f"cannot read the secret file {missing}", "`braid secret FILE`")
        assert "negative seq" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_short_secret_is_refused_before_anything_happens(tmp_path: Path) -> None:
    """A cluster secret under 16 bytes is bad usage (exit 2, INVALID_SETTING naming its
    length and how to make a strong one) for a client and for serve, which creates nothing
    and binds nothing; through the API, braid.connect refuses it before connecting."""
    store = tmp_path / "store"
    asked = run_braid("doc", "get", "--server", "127.0.0.1:7400", "chat", "doc", secret="tiny")
    served = run_braid("serve", "--data", str(store), "--listen", "127.0.0.1:0",
                       secret="fifteen-bytes!!")  # fmt: skip
    assert_usage(asked, "the cluster secret is 4 bytes; it must be at least 16")
    assert_usage(served, "the cluster secret is 15 bytes; it must be at least 16")
    for result in (asked, served):
        assert "`braid secret FILE`" in result.stderr
    assert not store.exists()
    with pytest.raises(braid.BraidError) as refused:
        braid.connect(["127.0.0.1:7400"], secret="fifteen-bytes!!")
    assert refused.value.code == errors.INVALID_SETTING.code
    assert "15 bytes" in refused.value.detail
    assert braid.connect(["127.0.0.1:7400"], secret="sixteen-bytes!!!") is not None


def test_a_certificate_that_does_not_load_is_bad_usage(tmp_path: Path) -> None:
    """`serve --tls-cert/--tls-key` naming files that are not a certificate: exit 2 naming
    them, no traceback, nothing created; `--tls-cert` alone likewise."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    store = tmp_path / "store"
    bad = run_braid("serve", "--data", str(store), "--tls-cert", str(cert), "--tls-key", str(key))
    assert_usage(bad, f"cannot load the TLS certificate {cert}")
    alone = run_braid("serve", "--data", str(store), "--tls-cert", str(cert))
    assert_usage(alone, "--tls-cert and --tls-key go together")
    assert not store.exists()


def test_network_options_with_data_are_bad_usage(tmp_path: Path) -> None:
    """`--secret-file` (or `--tls-ca`) with `--data` means nothing: exit 2, nothing created."""
    store = tmp_path / "store"
    result = run_braid("doc", "init", "--data", str(store), "--secret-file", "s", "chat", "doc",
                       "--redo", "{}")  # fmt: skip
    assert_usage(result, "--secret-file goes with --server, not with --data")
    assert not store.exists()


# -- --json ---------------------------------------------------------------------------------


def test_json_commands_print_errors_as_json_on_stderr(tmp_path: Path) -> None:
    """Under --json, a catalogued error (exit 1) and bad usage (exit 2) are each one JSON
    object {code, name, detail} on stderr, with nothing on stdout."""
    missing = run_braid("doc", "get", "--data", str(tmp_path / "none"), "chat", "doc", "--json")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert json.loads(missing.stderr) == {
        "code": errors.STORE_NOT_FOUND.code,
        "name": "STORE_NOT_FOUND",
        "detail": f"no braid store at {tmp_path / 'none'}",
    }
    usage = run_braid("doc", "get", "--data", str(tmp_path), "chat", "--json")
    assert usage.returncode == 2
    assert usage.stdout == ""
    shown = json.loads(usage.stderr)
    assert (shown["code"], shown["name"]) == (errors.INVALID_SETTING.code, "INVALID_SETTING")
    assert "the following arguments are required: KEY" in shown["detail"]
    unverified = run_braid("verify", str(tmp_path / "none"), "--json")
    assert json.loads(unverified.stderr)["name"] == "STORE_NOT_FOUND"


# -- nothing created ----------------------------------------------------------------------


def test_a_directory_holding_other_files_is_not_made_a_store(tmp_path: Path) -> None:
    """`doc init --data DIR` and `serve --data DIR` on a directory holding someone's files:
    STORE_NOT_FOUND (exit 1) naming the directory and its files; the directory is byte for
    byte unchanged. An empty directory does become a store."""
    directory = tmp_path / "photos"
    directory.mkdir()
    (directory / "cat.jpg").write_bytes(b"\xff\xd8 not really")
    (directory / "notes").mkdir()
    before = tree(directory)
    init = run_braid("doc", "init", "--data", str(directory), "chat", "doc", "--redo", "{}")
    served = run_braid("serve", "--data", str(directory), "--listen", "127.0.0.1:0")
    for result in (init, served):
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"error {errors.STORE_NOT_FOUND.code} STORE_NOT_FOUND: ")
        assert f"{directory} is not a braid store: it holds other files (cat.jpg, notes)" in (
            result.stderr
        )
    assert tree(directory) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    made = run_braid("doc", "init", "--data", str(empty), "chat", "doc", "--redo", "{}")
    assert made.returncode == 0, made.stderr
    assert (empty / "wal").is_dir()


@pytest.mark.parametrize(
    ("space", "key", "redo", "code"),
    [
        ("No Such Space", "doc", "{}", errors.INVALID_SPACE),
        ("chat", "bad\x01key", "{}", errors.INVALID_KEY),
        ("chat", "doc", "{not json", errors.MALFORMED_JSON),
    ],
    ids=["space", "key", "redo"],
)
def test_an_invalid_key_or_update_creates_no_store(
    tmp_path: Path, space: str, key: str, redo: str, code: errors.ErrorInfo
) -> None:
    """`doc init` with a bad space, key or redo fails with its code (exit 1) before the
    store is opened: the directory `--data` names is not created."""
    store = tmp_path / "store"
    result = run_braid("doc", "init", "--data", str(store), space, key, "--redo", redo)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error {code.code} {code.name}: ")
    assert not store.exists()


def test_a_patch_with_a_bad_key_touches_no_store(tmp_path: Path) -> None:
    """A patch with an invalid key on an existing store fails before opening it: no file
    of the store changes (not even the LOCK file's holder pid)."""
    store = tmp_path / "store"
    assert (
        run_braid("doc", "init", "--data", str(store), "chat", "doc", "--redo", "{}").returncode
        == 0
    )
    before = tree(store)
    result = run_braid("doc", "patch", "--data", str(store), "chat", "bad\x01key", "--seq", "2",
                       "--redo", "{}")  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"error {errors.INVALID_KEY.code} INVALID_KEY: ")
    assert tree(store) == before
