"""Scenarios for the pure apply/checkpoint/pinning/release rules (`braid.core.apply`)."""
