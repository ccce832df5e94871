"""Scenarios for the pure group-commit batcher (`braid.core.wal.batcher`)."""
