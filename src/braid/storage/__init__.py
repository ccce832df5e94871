"""Engines behind the DataService API: memory, durable (WAL + applied state), and the router."""
