"""The sandbox backends by name: the built-in ones and those other packages register.

A backend is a `SandboxBackend` subclass with a `name` and its `capabilities`; the registry maps
the name to "module:Class" and imports the module on first use (the docker SDK is only needed
when the docker backend is used). Code that must choose or check a backend (envs, `pivotrl sandbox
gc`, command-line choices, test parameters) reads `backend_names()` and `capabilities()` instead
of naming backends.

Another package adds a backend without editing this one, through an entry point in the group
`pivotrl.sandbox_backends`, e.g. in its pyproject.toml:

    [project.entry-points."pivotrl.sandbox_backends"]
    mybox = "mypkg.sandbox:MyBoxBackend"

or, in-process, `register_backend("mybox", "mypkg.sandbox:MyBoxBackend")`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging

from pivot_envs.sandbox.base import BackendCapabilities, SandboxBackend

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pivotrl.sandbox_backends"

_BUILTIN = {
    "local": "pivot_envs.sandbox.local:LocalBackend",
    "docker": "pivot_envs.sandbox.docker:DockerBackend",
}
_REGISTERED: dict[str, str] = {}


def register_backend(name: str, entry_point: str) -> None:
    """Make `make_backend(name)` build "module:Class" (a SandboxBackend subclass)."""
    if not name or ":" not in entry_point:
        raise ValueError(f"register_backend needs a name and 'module:Class', got {name!r}, {entry_point!r}")
    _REGISTERED[name] = entry_point


def _entry_points() -> dict[str, str]:
    """Backends other installed packages declare (read at each call: cheap, and a package put on
    sys.path after start-up is seen)."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _all() -> dict[str, str]:
    found = dict(_BUILTIN)
    for name, value in {**_entry_points(), **_REGISTERED}.items():
        if name in _BUILTIN and value != _BUILTIN[name]:
            log.warning("sandbox backend %r from %s ignored: a built-in backend has that name", name, value)
            continue
        found[name] = value
    return found


def backend_names() -> tuple[str, ...]:
    """Every backend that can be named (built-in first, then the others, sorted)."""
    return tuple(_BUILTIN) + tuple(sorted(n for n in _all() if n not in _BUILTIN))


def backend_class(name: str) -> type[SandboxBackend]:
    """The class registered as `name`. ValueError names the known backends."""
    entries = _all()
    if name not in entries:
        raise ValueError(f"unknown sandbox backend {name!r}; use one of {sorted(entries)}")
    module, _, attr = entries[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, SandboxBackend)):
        raise TypeError(f"sandbox backend {name!r} ({entries[name]}) is not a SandboxBackend subclass")
    return cls


def capabilities(backend: str | SandboxBackend) -> BackendCapabilities:
    """What the backend called `backend` (or the backend object) can do."""
    if isinstance(backend, SandboxBackend):
        return backend.capabilities
    return backend_class(backend).capabilities


def make_backend(name: str | SandboxBackend, **kwargs) -> SandboxBackend:
    """Create the sandbox backend called `name` (one of `backend_names()`); a backend object is
    returned as it is."""
    if isinstance(name, SandboxBackend):
        return name
    return backend_class(name)(**kwargs)
