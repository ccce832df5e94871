"""Helpers shared by the test suites, so that each oracle and each hand-built protocol step
exists once: `json_model` (RFC 7396 and canonical JSON text, independent of braid.model) and
`wire` (the handshake proof and a handshake run between two sans-I/O connections).

Importable as `tests.support` from pytest (pyproject's `pythonpath`) and from the scripts
that run outside it (they put the repository root on `sys.path` themselves)."""
