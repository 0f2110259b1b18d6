"""Loading algorithm plug-ins named in a config (`plugins: [path/to/my_algo.py, my_pkg.my_algo]`).

A plug-in is any module that registers algorithms with `@pivot_algo.register_algorithm(name)` when
imported. It can be a dotted module name (importable from `sys.path`) or the path of a `.py` file
outside the package; a file is imported under a module name derived from its resolved path, so
loading the same file twice (CLI, then the trainer) imports it once.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from pivot_envs.errors import PivotError


class PluginError(PivotError, ImportError):
    """A configured plug-in could not be found or imported. The message names it and says what to check."""


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def _module_name_for(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    return f"pivotrl_plugin_{path.stem}_{digest}"


def load_plugin(spec: str) -> ModuleType:
    """Import one plug-in (a dotted module name or a `.py` path) and return its module."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plug-in must be a module name or a .py path, got {spec!r}")
    spec = spec.strip()
    if not _looks_like_path(spec):
        try:
            return importlib.import_module(spec)
        except ImportError as e:
            raise PluginError(f"plug-in module {spec!r} could not be imported ({e}); put it on PYTHONPATH "
                              "or give the path of its .py file") from e
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise PluginError(f"plug-in file {spec!r} does not exist (resolved to {path})")
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"plug-in file {path} is not an importable Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise PluginError(f"plug-in file {path} raised {type(e).__name__} on import: {e}") from e
    return module


def load_plugins(specs: Iterable[str] | str | None) -> list[ModuleType]:
    """Import every plug-in of a config's `plugins` entry (a list, one string, or None)."""
    if specs is None:
        return []
    if isinstance(specs, str):
        specs = [specs]
    return [load_plugin(s) for s in specs]
