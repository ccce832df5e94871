"""The write-ahead log's format (record.py) and the operations it carries (ops.py)."""
