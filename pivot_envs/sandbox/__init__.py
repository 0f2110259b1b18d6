"""Sandbox backends behind one contract (`base.Sandbox`, `base.SandboxBackend`).

`make_backend("docker" | "local", **kwargs)` returns a backend; imports are lazy so that the
docker SDK is only needed when the docker backend is used.
"""

from __future__ import annotations

from pivot_envs.sandbox.base import (
    ExecResult,
    FileEntry,
    Sandbox,
    SandboxBackend,
    SandboxLimits,
    Snapshot,
)

BACKENDS = {
    "docker": "pivot_envs.sandbox.docker_backend:DockerBackend",
    "local": "pivot_envs.sandbox.local_backend:LocalBackend",
}


def make_backend(name: str, **kwargs) -> SandboxBackend:
    """Create the sandbox backend called `name` (one of BACKENDS)."""
    import importlib

    if isinstance(name, SandboxBackend):
        return name
    if name not in BACKENDS:
        raise ValueError(f"unknown sandbox backend {name!r}; use one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = [
    "BACKENDS",
    "ExecResult",
    "FileEntry",
    "Sandbox",
    "SandboxBackend",
    "SandboxLimits",
    "Snapshot",
    "make_backend",
]
