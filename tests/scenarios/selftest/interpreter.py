"""A toy key-value map driven by scenario files, to prove the runner on something small.

Commands (values are strings; ``incr`` and ``fill`` store integers as text):

- ``put k=v ...``: set each key; answers ``ok``.
- ``get k ...``: one ``k=v`` line per key, or ``error: k: no such key``.
- ``del k ...``: remove each key; ``ok``, or an error line for a missing one.
- ``incr k [by=N]``: add ``N`` (default 1) to an integer value (a missing key counts as 0).
- ``fill keys=(a, b, ...) [from=N]``: set the keys to N, N+1, ...
- ``load [prefix=p]``: one ``k=v`` entry per input line, keys prefixed with ``p``.
- ``dump [keys=(a, b)] [spaced]``: every entry (or the listed keys) in key order, one per line,
  or separated by blank lines with ``spaced``.

A failure of the map (a missing key, a non-integer) is output; a malformed scenario (an unknown
command, an input line without ``=``) raises.
"""

from __future__ import annotations

from ..datadriven import Handler, TestCase


class KeyValueMap:
    """The toy state machine: a map and one method per command."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    def handle(self, case: TestCase) -> str:
        commands = {
            "put": self.put,
            "get": self.get,
            "del": self.delete,
            "incr": self.increment,
            "fill": self.fill,
            "load": self.load,
            "dump": self.dump,
        }
        if case.command not in commands:
            raise case.error("unknown command")
        return commands[case.command](case)

    def put(self, case: TestCase) -> str:
        self.entries.update(case.pairs())
        return "ok"

    def get(self, case: TestCase) -> str:
        return "\n".join(self._line(key) for key in case.bare())

    def delete(self, case: TestCase) -> str:
        missing = [key for key in case.bare() if key not in self.entries]
        if missing:
            return f"error: {', '.join(missing)}: no such key"
        for key in case.bare():
            del self.entries[key]
        return "ok"

    def increment(self, case: TestCase) -> str:
        (key,) = case.bare()
        value = self.entries.get(key, "0")
        if not value.lstrip("-").isdigit():
            return f"error: {key}={value} is not an integer"
        self.entries[key] = str(int(value) + case.int("by", 1))
        return self._line(key)

    def fill(self, case: TestCase) -> str:
        start = case.int("from", 0)
        for offset, key in enumerate(case.values("keys")):
            self.entries[key] = str(start + offset)
        return "ok"

    def load(self, case: TestCase) -> str:
        prefix = case.get("prefix", "")
        for line in case.input:
            key, equals, value = line.partition("=")
            if not equals:
                raise case.error(f"input line {line!r} is not k=v")
            self.entries[prefix + key] = value
        return f"loaded {len(case.input)}"

    def dump(self, case: TestCase) -> str:
        keys = case.values("keys", tuple(sorted(self.entries)))
        separator = "\n\n" if case.has("spaced") else "\n"
        return separator.join(self._line(key) for key in keys)

    def _line(self, key: str) -> str:
        if key not in self.entries:
            return f"error: {key}: no such key"
        return f"{key}={self.entries[key]}"


def make() -> Handler:
    """A handler over a fresh, empty map."""
    return KeyValueMap().handle
