"""Pure, deterministic cores: no asyncio, sockets, files, clocks or global randomness."""
