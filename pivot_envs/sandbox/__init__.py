"""Sandbox backends behind one contract (`base.Sandbox`, `base.SandboxBackend`).

`make_backend("docker" | "local" | <registered name>, **kwargs)` returns a backend; imports are
lazy so that the docker SDK is only needed when the docker backend is used. Backends declare their
`capabilities`; `backend_names()` lists them, built-in and registered (registry.py).
"""

from __future__ import annotations

from pivot_envs.sandbox.base import (
    BackendCapabilities,
    ExecResult,
    FileEntry,
    Sandbox,
    SandboxBackend,
    SandboxLimits,
    Snapshot,
)
from pivot_envs.sandbox.registry import (
    ENTRY_POINT_GROUP,
    backend_class,
    backend_names,
    capabilities,
    make_backend,
    register_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendCapabilities",
    "ExecResult",
    "FileEntry",
    "Sandbox",
    "SandboxBackend",
    "SandboxLimits",
    "Snapshot",
    "backend_class",
    "backend_names",
    "capabilities",
    "make_backend",
    "register_backend",
]
