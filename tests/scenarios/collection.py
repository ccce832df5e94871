"""Where scenario files live and which interpreter runs each.

Each ``tests/scenarios/<name>/*.txt`` file is run by ``<name>/interpreter.py`` (a package module:
``<name>/__init__.py`` exists too), which defines ``make() -> Handler``; ``make()`` is called once
per file, so every file starts from a fresh interpreter state.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .datadriven import Handler, ScenarioError

SCENARIOS_DIRECTORY = Path(__file__).parent
INTERPRETER_MODULE = "interpreter"


@dataclass(frozen=True)
class Scenario:
    """One scenario file and the name of the directory (the interpreter) that runs it."""

    interpreter: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.interpreter}/{self.path.stem}"

    def make_handler(self) -> Handler:
        """A fresh handler from ``<interpreter>/interpreter.py``'s ``make()``."""
        module = load_interpreter(self.interpreter)
        handler: Handler = module.make()
        return handler


def load_interpreter(name: str) -> ModuleType:
    """The module ``<name>/interpreter.py``, checked to define ``make()``."""
    module = importlib.import_module(f"{__package__}.{name}.{INTERPRETER_MODULE}")
    if not callable(getattr(module, "make", None)):
        raise ScenarioError(f"{module.__file__}: an interpreter module must define make()")
    return module


def discover(root: Path = SCENARIOS_DIRECTORY) -> list[Scenario]:
    """Every scenario file under ``root``, in name order.

    A directory with ``.txt`` files and no interpreter, an interpreter without scenario files,
    or a ``.txt`` file directly in ``root`` is an error: nothing may be silently skipped.
    """
    stray = sorted(root.glob("*.txt"))
    if stray:
        raise ScenarioError(f"{stray[0]}: a scenario file must sit in an interpreter's directory")
    scenarios: list[Scenario] = []
    for directory in sorted(path for path in root.iterdir() if path.is_dir()):
        files = sorted(directory.glob("*.txt"))
        has_interpreter = (directory / f"{INTERPRETER_MODULE}.py").is_file()
        if files and not has_interpreter:
            raise ScenarioError(f"{directory}: scenario files but no {INTERPRETER_MODULE}.py")
        if has_interpreter and not files:
            raise ScenarioError(f"{directory}: {INTERPRETER_MODULE}.py but no scenario files")
        scenarios.extend(Scenario(directory.name, path) for path in files)
    return scenarios
