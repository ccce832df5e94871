"""`braid placement` through the real command (a child process): its figures, its JSON,
and exit status 2 for a bad file or bad usage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.support import cli


def run_braid(*argv: str) -> subprocess.CompletedProcess[str]:
    """The real `braid` command (tests/support/cli.py); placement needs no secret."""
    return cli.run_braid(*argv, secret=None)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """Nine hosts in three zones, 64 partitions."""
    path = tmp_path / "cluster.toml"
    hosts = "".join(
        f'[[host]]\nid = "n{i}"\naddress = "127.0.0.1:{7000 + i}"\nzone = "{"abc"[i % 3]}"\n'
        for i in range(9)
    )
    path.write_text("partitions = 64\nreplicas = 3\n" + hosts)
    return path


def test_it_prints_the_figures_per_host(config: Path) -> None:
    """Each host's row and the summary: 21-22 replicas of fair 21.33, 7-8 leaders, every
    host sharing partitions with all 6 hosts outside its zone, no zone violation."""
    done = run_braid("placement", "--config", str(config))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "9 hosts in 3 zones, 64 partitions × 3 replicas" in out
    assert "replicas per host: 21-22, 0 hosts more than 1 from fair" in out
    assert "leaders per host: 7-8, 0 hosts more than 1 from fair" in out
    assert "distinct peers per host: 6-6, 0 hosts short" in out
    assert "zone violations: 0 partitions" in out
    for i in range(9):
        assert f"n{i}" in out


def test_adding_a_host_reports_moves_against_the_minimum(config: Path) -> None:
    """--add-host prints the placement after the change and the replicas moved (here the
    minimum: the new host's share of its zone, 64/4 = 16)."""
    done = run_braid("placement", "--config", str(config), "--add-host", "n9:a")
    assert done.returncode == 0, done.stderr
    assert "after adding n9: 10 hosts in 3 zones" in done.stdout
    assert "replicas moved: 16 (minimum 16, 1.00x)" in done.stdout


def test_json_has_the_map_and_the_moves(config: Path) -> None:
    """--json: one document with each placement's hosts and map, and the moves."""
    done = run_braid("placement", "--config", str(config), "--remove-host", "n0", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert len(document["current"]["map"]) == 64
    assert all(len(members) == 3 for members in document["after"]["map"])
    assert all("n0" not in members for members in document["after"]["map"])
    held = sum("n0" in members for members in document["current"]["map"])
    assert document["replicas_moved"] == document["replicas_moved_minimum"] == held
    assert {row["id"] for row in document["after"]["hosts"]} == {f"n{i}" for i in range(1, 9)}


def test_map_prints_every_partition_with_its_hash_range(config: Path) -> None:
    """--map adds one line per partition: its hash range and its replicas, leader first."""
    done = run_braid("placement", "--config", str(config), "--map")
    assert done.returncode == 0, done.stderr
    lines = [line.split() for line in done.stdout.splitlines() if "-" in line and "n" in line]
    ranges = [line for line in lines if len(line) == 5 and line[0].isdigit()]
    assert [int(line[0]) for line in ranges] == list(range(64))
    assert ranges[0][1] == "0000000000000000-03ffffffffffffff"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--add-host", "n1:a"), "--add-host: host 'n1' is already a member"),
        (("--remove-host", "n42"), "--remove-host: no host 'n42'"),
        (("--add-host", "n9"), "expected ID:ZONE"),
        (("--add-host", "n9:a", "--remove-host", "n1"), "not allowed with argument"),
    ],
)
def test_bad_options_exit_2(config: Path, argv: tuple[str, ...], words: str) -> None:
    """A bad option is bad usage: exit status 2 and the problem on stderr."""
    done = run_braid("placement", "--config", str(config), *argv)
    assert done.returncode == 2
    assert words in done.stderr
    assert done.stdout == ""


def test_a_bad_file_exits_2_naming_file_and_field(tmp_path: Path) -> None:
    """A file with a mistake is INVALID_SETTING (1009, exit 2) naming the file and the
    field; with --json, as a JSON object on stderr. A missing file likewise."""
    path = tmp_path / "bad.toml"
    path.write_text('partitions = 64\n[[host]]\nid = "n1"\naddress = "nowhere"\n')
    done = run_braid("placement", "--config", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error 1009 INVALID_SETTING: {path}: host[0].address: ")
    done = run_braid("placement", "--config", str(path), "--json")
    assert done.returncode == 2
    assert json.loads(done.stderr)["name"] == "INVALID_SETTING"
    done = run_braid("placement", "--config", str(tmp_path / "absent.toml"))
    assert done.returncode == 2
    assert "absent.toml: file: cannot read it" in done.stderr
