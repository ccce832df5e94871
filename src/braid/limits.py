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

# Write-ahead log.
wal_record_payload_bytes_max = 16 * 1024 * 1024
wal_segment_bytes = 32 * 1024 * 1024  # preallocated, zero-filled size of every segment
wal_batch_bytes_max = 4 * 1024 * 1024  # bytes written per group-commit batch (one fsync)
wal_inline_sync_bytes_max = 64 * 1024  # a lone record this small is synced in the loop thread

# Applied state (the checkpoint of the log into the document tables).
checkpoint_records_max = 65_536  # checkpoint once this many records are unapplied
checkpoint_interval_seconds_max = 30.0  # or once the oldest unapplied record is this old
document_cache_bytes_max = 256 * 1024 * 1024  # documents kept in memory (LRU, unpinned only)
applied_chunk_deltas_max = 1024  # deltas per row of the applied state's chunk table

# Wire protocol and the node server.
frame_bytes_max = wal_record_payload_bytes_max + 1024 * 1024  # a request carries one record
connection_streams_max = 128  # requests in flight on one connection
node_requests_max = 2048  # requests in flight on one node, over all connections
push_window_bytes = 256 * 1024  # unacknowledged pushed bytes per push stream
handshake_timeout_seconds_max = 5.0
handshake_frame_bytes_max = 4096  # frames before the handshake completes (unauthenticated)
shutdown_grace_seconds_max = 10.0  # SIGTERM: time for in-flight requests to finish

assert space_bytes_min <= space_bytes_max
assert key_bytes_max < 1024
assert json_bytes_max * 2 + request_bytes_max + who_bytes_max < wal_record_payload_bytes_max
assert wal_batch_bytes_max < wal_segment_bytes
assert wal_inline_sync_bytes_max < wal_batch_bytes_max
assert wal_record_payload_bytes_max < wal_segment_bytes
assert frame_bytes_max > wal_record_payload_bytes_max
assert connection_streams_max <= node_requests_max
assert push_window_bytes < frame_bytes_max
assert handshake_frame_bytes_max < frame_bytes_max
