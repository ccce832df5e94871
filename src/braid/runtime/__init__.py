"""asyncio adapters that drive the pure cores: the node server and its transport."""
