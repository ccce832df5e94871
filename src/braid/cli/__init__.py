"""The `braid` command line: one module per subcommand, wired together in `main.py`.

Every subcommand module exposes `register(subparsers)`, which adds its parser and sets
`handler` (a function `(argparse.Namespace) -> int`, the exit status) as a default.
"""
