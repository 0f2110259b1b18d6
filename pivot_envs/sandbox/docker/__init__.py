"""The `docker` sandbox backend: one container per sandbox, `docker commit` snapshots.

One job per module:
    reaper.py          ownership labels, the daemon connection, removal of dead runs' leftovers
    sandbox.py         DockerSandbox: exec, files, manifest
    exec_wrapper.sh    runs one command inside the container (time limit, output caps)
    manifest_walk.py   lists a sandbox's files inside the container
    (the fork pool is pivot_envs/sandbox/ready_pool.py, shared with the local backend)
    quota.py           the disk quota on a container's writable layer
    backend.py         DockerBackend: create/fork/snapshot/release, close
"""

from __future__ import annotations

from pivot_envs.sandbox.docker.backend import (
    DEFAULT_IMAGE,
    IMAGE_ENV_VAR,
    DockerBackend,
)
from pivot_envs.sandbox.docker.reaper import remove_stale
from pivot_envs.sandbox.docker.sandbox import DockerSandbox

__all__ = ["DEFAULT_IMAGE", "IMAGE_ENV_VAR", "DockerBackend", "DockerSandbox", "remove_stale"]
