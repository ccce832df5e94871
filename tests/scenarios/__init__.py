"""Data-driven scenario tests: ``<name>/*.txt`` files run by ``<name>/interpreter.py``."""
