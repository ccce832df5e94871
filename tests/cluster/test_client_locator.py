"""`braid.connect(locator=...)`: every request is routed through the locator (the seeds'
getDataTarget), against real `braid serve` processes. The single-node StaticLocator is one
locator; the cluster's will be another, so the client must not route around it."""

from __future__ import annotations

from dataclasses import dataclass, field

import braid
from braid.client import Target
from braid.model import Key, Update
from tests.cluster.helpers import SECRET, Servers, free_port


@dataclass
class RecordingLocator:
    """Routes each key by a table; records every question and every invalidation.

    `known=False` makes `cached` answer None, so the client must await `locate`."""

    routes: dict[str, str]  # key.key -> HOST:PORT
    default: str
    known: bool = True
    asked: list[tuple[str, str | None]] = field(default_factory=list)  # (how, key)
    invalidated: list[str | None] = field(default_factory=list)

    def _target(self, key: Key | None) -> Target:
        address = self.routes.get(key.key, self.default) if key is not None else self.default
        return Target(0, (address,), address)

    async def locate(self, key: Key | None) -> Target:
        self.asked.append(("locate", key.key if key else None))
        return self._target(key)

    def cached(self, key: Key | None) -> Target | None:
        self.asked.append(("cached", key.key if key else None))
        return self._target(key) if self.known else None

    def invalidate(self, key: Key | None, hint: str | None = None) -> None:
        self.invalidated.append(key.key if key else None)


def keys_asked(locator: RecordingLocator) -> list[str | None]:
    return [key for _, key in locator.asked]


async def test_each_call_consults_the_locator_with_its_key(servers: Servers) -> None:
    """initialize, patch, get, compute, snapshot, delete and close(key) each ask the
    locator about their own key before anything is sent; with `cached` unknown, the client
    awaits `locate` instead."""
    node = await servers.start("node")
    for known in (True, False):
        locator = RecordingLocator({}, node.address, known=known)
        async with braid.connect([node.address], secret=SECRET, locator=locator) as client:
            key = Key("locator-space", f"doc-{known}")
            before = len(locator.asked)
            await client.initialize(key, Update(1, 1, redo='{"a":1}'))
            await client.patch(key, [Update(2, 2, redo='{"b":2}')])
            await client.get(key)
            await client.compute(key, braid.HEAD_PATCH, 1)
            await client.snapshot(key, 2, '{"a":1,"b":2}', 0)
            await client.close(key)
            await client.delete(key)
            calls = locator.asked[before:]
        how = "cached" if known else "locate"
        assert [k for h, k in calls if h == how] == [key.key] * 7, calls
        if not known:  # cached was asked first each time, then locate
            assert [h for h, _ in calls] == ["cached", "locate"] * 7


async def test_documents_go_where_the_locator_says(servers: Servers) -> None:
    """With two nodes and a locator sending `left` to one and `right` to the other, each
    document exists on its own node only (read back through plain single-node clients)."""
    first = await servers.start("first")
    second = await servers.start("second")
    locator = RecordingLocator({"left": first.address, "right": second.address}, first.address)
    async with braid.connect([first.address], secret=SECRET, locator=locator) as client:
        for name in ("left", "right"):
            key = Key("locator-space", name)
            await client.initialize(key, Update(1, 1, redo=f'{{"side":"{name}"}}'))
            await client.patch(key, [Update(2, 2, redo='{"n":2}')])
    for node, mine, other in ((first, "left", "right"), (second, "right", "left")):
        async with braid.connect([node.address], secret=SECRET) as direct:
            change = await direct.get(Key("locator-space", mine))
            assert change.seq == 2
            assert change.document == f'{{"side":"{mine}","n":2}}'
            try:
                await direct.get(Key("locator-space", other))
            except braid.BraidError as error:
                assert error.name == "DOCUMENT_NOT_FOUND"
            else:
                raise AssertionError(f"{other} should not exist on {node.address}")


async def test_an_unreachable_route_is_invalidated_and_retried(servers: Servers) -> None:
    """The locator first names a port where nothing listens: the call fails there with
    UNREACHABLE (retryable, never applied), the client invalidates that key's route and
    retries; the locator then names the live node and the write succeeds exactly once."""
    node = await servers.start("node")
    dead = f"127.0.0.1:{free_port()}"

    class MovingLocator(RecordingLocator):
        def invalidate(self, key: Key | None, hint: str | None = None) -> None:
            super().invalidate(key, hint)
            self.default = node.address  # the route moved (as after a leader change)

    locator = MovingLocator({}, dead)
    async with braid.connect([node.address], secret=SECRET, locator=locator) as client:
        key = Key("locator-space", "moved")
        await client.initialize(key, Update(1, 1, redo='{"a":1}'))
        assert locator.invalidated == ["moved"]
        assert (await client.get(key)).seq == 1
