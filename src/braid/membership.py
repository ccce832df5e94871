"""The cluster's membership: a static TOML file an operator edits (DESIGN §2).

```toml
partitions = 64          # hash ranges of the key space; fixed for the cluster's life
replicas = 3             # copies of each partition (optional, 3 by default)

[[host]]
id = "n1"                # letters, digits, '.', '_', '-'; unique
address = "127.0.0.1:7001"
zone = "a"               # optional: a failure domain (rack, zone); one zone by default
```

Placement (`braid.core.placement`) turns it into the partition map. Every mistake is
INVALID_SETTING naming the file and the field (`cluster.toml: host[2].address: ...`), so an
operator's edit that does not parse is refused as a whole: nothing half-read is used. Later
issues poll the file and act on its changes (a host added, a host drained).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from braid import errors
from braid.client import parse_address
from braid.core.placement import PARTITIONS_MAX, REPLICAS_DEFAULT, REPLICAS_MAX, Host
from braid.errors import BraidError

HOST_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ZONE_DEFAULT = "default"
TOP_FIELDS = frozenset({"partitions", "replicas", "host"})
HOST_FIELDS = frozenset({"id", "address", "zone"})


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    address: str
    zone: str


@dataclass(frozen=True, slots=True)
class Membership:
    source: str  # the file it was read from, for messages
    partitions: int
    replicas: int
    members: tuple[Member, ...]  # in file order

    def hosts(self) -> list[Host]:
        return [Host(member.id, member.zone) for member in self.members]

    def with_host(self, host_id: str, zone: str) -> Membership:
        """The membership plus a host (its address unknown: `-`), as an operator would add it."""
        field = "--add-host"
        _check_name(self.source, field, host_id, "host id")
        _check_name(self.source, field, zone, "zone")
        if any(member.id == host_id for member in self.members):
            raise _invalid(self.source, field, f"host {host_id!r} is already a member")
        return replace(self, members=(*self.members, Member(host_id, "-", zone)))

    def without_host(self, host_id: str) -> Membership:
        field = "--remove-host"
        kept = tuple(member for member in self.members if member.id != host_id)
        if len(kept) == len(self.members):
            raise _invalid(self.source, field, f"no host {host_id!r} in the membership")
        if len(kept) < self.replicas:
            raise _invalid(
                self.source, field, f"{len(kept)} hosts left cannot hold {self.replicas} replicas"
            )
        return replace(self, members=kept)


def _invalid(source: str, field: str, problem: str) -> BraidError:
    """Every membership mistake: the file, the field, what is wrong with it."""
    return BraidError(errors.INVALID_SETTING, f"{source}: {field}: {problem}")


def load_membership(path: Path) -> Membership:
    """Read and check a membership file (INVALID_SETTING for any mistake)."""
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise _invalid(source, "file", f"cannot read it: {error.strerror}") from None
    except UnicodeDecodeError:
        raise _invalid(source, "file", "not UTF-8 text") from None
    return parse_membership(text, source)


def parse_membership(text: str, source: str) -> Membership:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise _invalid(source, "file", f"not valid TOML: {error}") from None
    unknown = sorted(set(document) - TOP_FIELDS)
    if unknown:
        raise _invalid(
            source, unknown[0], f"unknown field (known: {', '.join(sorted(TOP_FIELDS))})"
        )
    if "partitions" not in document:
        raise _invalid(source, "partitions", "missing (the number of partitions, e.g. 64)")
    partitions = _integer(source, "partitions", document["partitions"], PARTITIONS_MAX)
    replicas = _integer(
        source, "replicas", document.get("replicas", REPLICAS_DEFAULT), REPLICAS_MAX
    )
    tables = document.get("host", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise _invalid(source, "host", "must be [[host]] tables")
    members = tuple(_member(source, index, table) for index, table in enumerate(tables))
    _check_unique(source, members)
    if len(members) < replicas:
        raise _invalid(
            source, "host", f"{len(members)} hosts cannot hold {replicas} distinct replicas"
        )
    return Membership(source, partitions, replicas, members)


def _integer(source: str, field: str, value: Any, most: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(source, field, f"must be an integer, got {value!r}")
    if not 1 <= value <= most:
        raise _invalid(source, field, f"must be 1 to {most}, got {value}")
    return value


def _member(source: str, index: int, table: dict[str, Any]) -> Member:
    where = f"host[{index}]"
    unknown = sorted(set(table) - HOST_FIELDS)
    if unknown:
        known = ", ".join(sorted(HOST_FIELDS))
        raise _invalid(source, f"{where}.{unknown[0]}", f"unknown field (known: {known})")
    for field in ("id", "address"):
        if field not in table:
            raise _invalid(source, f"{where}.{field}", "missing")
    host_id, address = table["id"], table["address"]
    zone = table.get("zone", ZONE_DEFAULT)
    _check_name(source, f"{where}.id", host_id, "host id")
    _check_name(source, f"{where}.zone", zone, "zone")
    if not isinstance(address, str):
        raise _invalid(source, f"{where}.address", f"must be a string, got {address!r}")
    try:
        parse_address(address)
    except BraidError as error:
        raise _invalid(source, f"{where}.address", error.detail) from None
    return Member(host_id, address, zone)


def _check_name(source: str, field: str, value: Any, what: str) -> None:
    if not isinstance(value, str) or not HOST_ID_PATTERN.fullmatch(value):
        raise _invalid(
            source,
            field,
            f"{what} {value!r} is not 1 to 64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)",
        )


def _check_unique(source: str, members: tuple[Member, ...]) -> None:
    seen_ids: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for index, member in enumerate(members):
        if member.id in seen_ids:
            raise _invalid(
                source, f"host[{index}].id", f"{member.id!r} repeats host[{seen_ids[member.id]}]"
            )
        if member.address in seen_addresses:
            first = seen_addresses[member.address]
            raise _invalid(
                source, f"host[{index}].address", f"{member.address!r} repeats host[{first}]"
            )
        seen_ids[member.id] = index
        seen_addresses[member.address] = index
