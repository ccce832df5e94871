"""The self-test interpreter: a toy key-value map that exercises the scenario runner."""
