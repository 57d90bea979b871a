"""Modules loaded on first use, so that start-up does not pay for what a command never touches."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_import(name: str) -> ModuleType:
    """`name` as a module whose code runs when one of its attributes is first read.

    Used where a module-level import of Redis/RQ and the like would otherwise cost every
    `flask …` command and web process start-up time (docs/performance.md, cold start).
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module
