"""Every bound braid enforces, in one place, with how they relate asserted at import.

Names end in `_max` (or `_min`) and carry their unit. Change a bound here and nowhere else.
"""

from __future__ import annotations

# Keys (DESIGN §1).
space_bytes_min = 3
space_bytes_max = 127
key_bytes_max = 511

# One update.
json_bytes_max = 4 * 1024 * 1024  # a redo, undo or snapshot document
who_bytes_max = 1024
request_bytes_max = 64 * 1024
kind_bytes_max = 64
updates_per_patch_max = 4096

# Documents (DESIGN §3 invariant 7: what braid accepts can always be read back, through every
# interface). Both bounds are enforced on write, so no read path ever meets a document past them.
#
# Depth: a JSON value's nesting (a scalar 0, a container 1 + its deepest member). Merging never
# nests deeper than its inputs (model.py proves it), and every read path (merge, msgspec, the
# CLI's json module) spends at most `json_frames_per_level_max` Python frames per level, so a
# read needs at most depth * frames + the caller's own stack, well inside Python's limit.
json_depth_max = 128
json_frames_per_level_max = 2  # diff -> same_json, or json.dumps(indent=...)'s generators
call_stack_frames_max = 300  # what a server, the CLI or a test runner has on the stack
python_recursion_limit_min = 1000  # CPython's default; braid never lowers it
#
# Size: a document's bytes are the sum of its retained deltas' sizes (`update_bytes`: the
# characters of redo, undo, who and request plus 64), kept under `document_bytes_max`. An
# answer (get, compute(HEAD_PATCH), compute(REWIND)) is re-encoded JSON: at most
# `json_expansion_max` UTF-8 bytes per character of the texts merged (a 1-character astral
# code point is 4 bytes; "1e15" comes back as "1000000000000000.0", 18 from 4), and a merge
# is no larger than the patches merged, except a diff, which adds at most
# `diff_expansion_max` times (model.py). So every answer fits one response frame.
document_bytes_max = 1024 * 1024
json_expansion_max = 4.5
diff_expansion_max = 3
response_envelope_bytes_max = 1024  # a response frame's header and fields besides the JSON
request_envelope_bytes_max = 4096  # a request frame's header, key and fields besides updates
update_envelope_bytes_max = 128  # one encoded update's numbers and field headers
utf8_bytes_per_character_max = 4

# Write-ahead log.
wal_record_payload_bytes_max = 16 * 1024 * 1024
wal_segment_bytes = 32 * 1024 * 1024  # preallocated, zero-filled size of every segment
wal_segment_bytes_min = 64 * 1024  # the smallest `braid serve --wal-segment-bytes` accepts
wal_batch_bytes_max = 4 * 1024 * 1024  # bytes written per group-commit batch (one fsync)
wal_inline_sync_bytes_max = 64 * 1024  # a lone record this small is synced in the loop thread
wal_segment_room_bytes_min = 4096  # a reopened segment is written on only with this much room

# Applied state (the checkpoint of the log into the document tables).
checkpoint_records_max = 65_536  # checkpoint once this many records are unapplied
checkpoint_interval_seconds_max = 30.0  # or once the oldest unapplied record is this old
document_cache_bytes_max = 256 * 1024 * 1024  # documents kept in memory (LRU, unpinned only)
applied_chunk_deltas_max = 1024  # deltas per row of the applied state's chunk table

# Wire protocol and the node server.
frame_bytes_max = wal_record_payload_bytes_max + 1024 * 1024  # a request carries one record
connection_streams_max = 128  # requests in flight on one connection
node_requests_max = 2048  # requests in flight on one node, over all connections
node_events_per_turn_max = 16  # requests a connection starts before yielding to the loop
push_window_bytes = 256 * 1024  # unacknowledged pushed bytes per push stream
handshake_timeout_seconds_max = 5.0
handshake_frame_bytes_max = 4096  # frames before the handshake completes (unauthenticated)
secret_bytes_min = 16  # a shorter cluster secret is refused (INVALID_SETTING) by every command
shutdown_grace_seconds_max = 10.0  # SIGTERM: time for in-flight requests to finish
health_loop_seconds_max = 2.0  # /healthz: the node's event loop runs a callback within this

# Node buffering: bytes of frames begun but not complete, over all of a node's connections
# (past it the node closes the connection holding the most, with OVERLOADED), and how long
# one frame may take to arrive (past it, FRAME_TIMEOUT closes its connection).
node_partial_frame_bytes_max = 4 * frame_bytes_max
partial_frame_seconds_max = 30.0

# The network client (braid.connect): ClientConfig's defaults and its pacing.
client_timeout_seconds = 5.0  # one call, retries included (connect(timeout=...) sets it)
client_connect_timeout_seconds = 2.0  # opening one connection, handshake included
client_retries_max = 6  # retries of one call after its first attempt
client_backoff_seconds_min = 0.01  # the first retry's delay ceiling; it doubles per retry
client_backoff_seconds_max = 0.5  # ... up to this
client_deadline_sweep_seconds = 0.05  # requests' deadlines are honoured within this
client_requests_per_write_max = 16  # requests coalesced into one transport write

# Replication (braid.core.raft, braid.core.multiraft). Time is counted in ticks of
# `raft_tick_seconds`, chosen for 127.0.0.1-class networks. A follower refuses votes for
# `raft_election_ticks` after it last heard from its leader (timeouts are randomized in
# [election, 2 * election)); a leader's read lease lasts `raft_lease_ticks` from the send of
# the latest message a majority answered. With any two hosts' clocks running at rates within
# `raft_clock_drift_max` of each other, and a tick's granularity on each side, the lease ends
# before any follower's refusal does: lease <= election * (1 - drift) - 1.
raft_tick_seconds = 0.02
raft_election_ticks = 10
raft_heartbeat_ticks = 1
raft_lease_ticks = 8
raft_clock_drift_max = 0.1  # relative: the simulators drift each clock by up to 5%
raft_inflight_max = 64  # appends in flight to one follower
raft_append_entries_max = 256  # entries in one append
raft_quiesce_ticks = 5  # a multi-Raft host's group idle this long goes quiet
raft_commit_bound_ticks = 25  # a proposal without a durable majority this long: catastrophic

assert space_bytes_min <= space_bytes_max
assert key_bytes_max < 1024
assert json_bytes_max * 2 + request_bytes_max + who_bytes_max < wal_record_payload_bytes_max
assert wal_batch_bytes_max < wal_segment_bytes
assert wal_segment_bytes_min <= wal_segment_bytes
assert wal_inline_sync_bytes_max < wal_batch_bytes_max
assert wal_record_payload_bytes_max < wal_segment_bytes
assert frame_bytes_max > wal_record_payload_bytes_max
assert connection_streams_max <= node_requests_max
assert node_events_per_turn_max >= 1  # every turn makes progress
assert push_window_bytes < frame_bytes_max
assert handshake_frame_bytes_max < frame_bytes_max
assert secret_bytes_min >= 16  # 128 bits at the very least for HMAC-SHA256's key
# Two maximal frames can always arrive side by side; and the bound is what keeps buffering
# small: the in-flight bounds alone would allow a maximal frame per request in flight.
assert node_partial_frame_bytes_max >= 2 * frame_bytes_max
assert node_partial_frame_bytes_max < node_requests_max * frame_bytes_max
assert partial_frame_seconds_max > handshake_timeout_seconds_max
assert client_backoff_seconds_min <= client_backoff_seconds_max
assert client_connect_timeout_seconds <= client_timeout_seconds
assert client_deadline_sweep_seconds < client_timeout_seconds
assert client_requests_per_write_max <= connection_streams_max
assert json_depth_max * json_frames_per_level_max + call_stack_frames_max <= (
    python_recursion_limit_min
)
assert document_bytes_max <= json_bytes_max
# Every answer about an accepted document fits one response frame (see "Documents" above).
assert (
    document_bytes_max * json_expansion_max * diff_expansion_max + response_envelope_bytes_max
    <= frame_bytes_max
)
# Every request a client's own checks pass fits one request frame: a patch or initialize
# holds at most a document's bytes (plus each update's kind and envelope), a snapshot's
# document at most json_bytes_max characters.
assert (
    document_bytes_max * utf8_bytes_per_character_max
    + updates_per_patch_max
    * (kind_bytes_max * utf8_bytes_per_character_max + update_envelope_bytes_max)
    + request_envelope_bytes_max
    <= frame_bytes_max
)
assert json_bytes_max * utf8_bytes_per_character_max + request_envelope_bytes_max <= (
    frame_bytes_max
)
assert 1 <= raft_heartbeat_ticks < raft_lease_ticks
assert raft_lease_ticks <= raft_election_ticks * (1 - raft_clock_drift_max) - 1
assert raft_quiesce_ticks > raft_heartbeat_ticks
# A write waits for its durable majority across at least one failover before it is failed.
assert raft_commit_bound_ticks > 2 * raft_election_ticks
