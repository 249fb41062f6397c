"""Loading an ``ops/bench`` script (not a package) as a module, for its unit tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).parents[3] / "ops" / "bench"


def load_script(name: str) -> ModuleType:
    """``ops/bench/<name>.py`` as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
