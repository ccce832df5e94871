"""What one host says to another: one envelope carries every group's messages between them.

Every envelope is also the sending host's liveness beat (a host that sent a peer nothing
for longer than a heartbeat interval sends it an empty one): `ctx` is the sender's clock
when it sent it, and `echo` the latest `ctx` it received from the receiver — the receiver's
own send time, which it counts toward the leases of its quiet groups
(`braid.core.multiraft.host`).

`session` changes whenever the sender's promises to the receiver lapse: it restarted, or it
stopped hearing from the receiver for an election timeout and woke the quiet groups they
share. The receiver then wakes every quiet group it shares with the sender, so no lease is
ever extended by the echoes of a host whose replicas no longer keep quiet for it.
"""

from __future__ import annotations

import msgspec

from braid.core.raft.messages import Message

GroupId = int
HostId = int


class Envelope(msgspec.Struct, frozen=True, array_like=True, gc=False):
    source: HostId
    session: tuple[int, int]  # (incarnation, lapses): see the module text
    ctx: int
    echo: int  # the receiver's ctx, as of `echo_incarnation`
    echo_incarnation: int
    items: tuple[tuple[GroupId, Message], ...] = ()
