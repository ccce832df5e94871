"""The wire protocol, sans-I/O: message schema, frames, and the connection state machine."""
