"""The JSON oracle the suites check braid against, written from RFC 7396's text and sharing
no code with `braid.model` (a bug there must not be copied into the expectation).

RFC 7396 §2, MergePatch(Target, Patch): if Patch is an object, Target becomes an object if it
is not one, and each member of Patch is applied in turn: a null value removes the member
from Target, any other value replaces the member with MergePatch(the member's value, the
value). If Patch is not an object, the result is Patch itself.
"""

from __future__ import annotations

import json
from typing import Any

Json = Any  # dict | list | str | int | float | bool | None, as json.loads returns it


def merge_patch(target: Json, patch: Json) -> Json:
    """RFC 7396 MergePatch(target, patch); neither argument is changed.

    Built in one pass over the members' names rather than by changing a copy of the target
    member by member (braid.model's way), so that the two are written differently: a
    target member the patch does not name is kept where it was, a named one is merged in
    place or dropped (null), and members new to the target follow in the patch's order."""
    if not isinstance(patch, dict):
        return patch
    base = target if isinstance(target, dict) else {}
    names = [*base, *(name for name in patch if name not in base)]
    return {
        name: merge_patch(base.get(name), patch[name]) if name in patch else base[name]
        for name in names
        if patch.get(name, True) is not None
    }


def merge_all(patches: list[Json], target: Json = None) -> Json:
    """The patches applied in order to `target` (`{}` when not given)."""
    result = {} if target is None else target
    for patch in patches:
        result = merge_patch(result, patch)
    return result


def canonical(value: Json) -> str:
    """JSON text equal exactly when the values are equal as JSON: members sorted, and Python's
    own types kept apart as JSON keeps them (true is not 1, 1 is not 1.0)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)
