"""The deterministic simulator's worlds: simulated ports whose faults come from a seed."""
