"""The membership file (`braid.membership`): a valid file reads as written, and every
mistake is INVALID_SETTING naming the file and the field, so an operator's bad edit is
refused whole and says where it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from braid import errors
from braid.errors import BraidError
from braid.membership import ZONE_DEFAULT, Member, load_membership, parse_membership

HOSTS = "".join(
    f'[[host]]\nid = "n{i}"\naddress = "127.0.0.1:700{i}"\nzone = "{zone}"\n'
    for i, zone in enumerate("abc", start=1)
)
VALID = "partitions = 64\nreplicas = 3\n" + HOSTS


def test_a_valid_file_reads_as_written(tmp_path: Path) -> None:
    """Partitions, replicas and hosts in file order; zone defaults to one zone, replicas
    to 3."""
    path = tmp_path / "cluster.toml"
    path.write_text(VALID)
    membership = load_membership(path)
    assert (membership.partitions, membership.replicas) == (64, 3)
    assert membership.members[0] == Member("n1", "127.0.0.1:7001", "a")
    assert [host.id for host in membership.hosts()] == ["n1", "n2", "n3"]
    plain = parse_membership("partitions = 8\n" + HOSTS.replace('zone = "a"\n', ""), "plain.toml")
    assert plain.replicas == 3
    assert plain.members[0].zone == ZONE_DEFAULT


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("partitions = 64\n[[host]\n", "file", "not valid TOML"),
        (HOSTS, "partitions", "missing"),
        ("partition = 64\n" + HOSTS, "partition", "unknown field"),
        ("partitions = 0\n" + HOSTS, "partitions", "must be 1 to 65536, got 0"),
        ('partitions = "64"\n' + HOSTS, "partitions", "must be an integer"),
        ("partitions = true\n" + HOSTS, "partitions", "must be an integer"),
        ("partitions = 64\nreplicas = 4\n" + HOSTS, "host", "3 hosts cannot hold 4"),
        ("partitions = 64\nhost = 3\n", "host", "must be [[host]] tables"),
        (VALID.replace('id = "n2"', 'id = "n1"'), "host[1].id", "'n1' repeats host[0]"),
        (VALID.replace('id = "n2"', 'id = "n 2"'), "host[1].id", "is not 1 to 64 letters"),
        (VALID.replace('id = "n2"\n', ""), "host[1].id", "missing"),
        (VALID.replace("127.0.0.1:7003", "127.0.0.1"), "host[2].address", "is not HOST:PORT"),
        (VALID.replace("127.0.0.1:7003", "127.0.0.1:7001"), "host[2].address", "repeats host[0]"),
        (VALID.replace('zone = "c"', "zone = 3"), "host[2].zone", "zone 3 is not"),
        (VALID.replace('zone = "c"', 'zone = "c"\ndrain = true'), "host[2].drain", "unknown"),
    ],
)
def test_each_mistake_names_the_file_and_the_field(text: str, field: str, words: str) -> None:
    """The detail is `FILE: FIELD: problem` with the problem in plain words."""
    with pytest.raises(BraidError) as caught:
        parse_membership(text, "cluster.toml")
    assert caught.value.info is errors.INVALID_SETTING
    assert caught.value.detail.startswith(f"cluster.toml: {field}: "), caught.value.detail
    assert words in caught.value.detail


def test_an_unreadable_file_is_a_setting_error(tmp_path: Path) -> None:
    """A missing file or one that is not UTF-8 is INVALID_SETTING naming it."""
    with pytest.raises(BraidError, match=r"missing\.toml: file: cannot read it"):
        load_membership(tmp_path / "missing.toml")
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"partitions = 64\n\xff\xfe")
    with pytest.raises(BraidError, match=r"binary\.toml: file: not UTF-8"):
        load_membership(binary)


def test_adding_and_removing_hosts_is_checked() -> None:
    """--add-host refuses a member or a malformed id; --remove-host an unknown host or one
    that would leave fewer hosts than replicas."""
    membership = parse_membership(VALID, "cluster.toml")
    assert [m.id for m in membership.with_host("n4", "a").members][-1] == "n4"
    with pytest.raises(BraidError, match="--add-host: host 'n1' is already a member"):
        membership.with_host("n1", "a")
    with pytest.raises(BraidError, match="--add-host: zone 'a b' is not"):
        membership.with_host("n9", "a b")
    with pytest.raises(BraidError, match="--remove-host: no host 'n9'"):
        membership.without_host("n9")
    with pytest.raises(BraidError, match="--remove-host: 2 hosts left cannot hold 3 replicas"):
        membership.without_host("n1")
