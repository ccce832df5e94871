"""Benchmarks (not tests): they print figures and write JSON."""
