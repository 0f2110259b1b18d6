"""Ownership labels on docker objects, the daemon connection, and the reaper of dead runs' leftovers.

Every container and snapshot image the docker backend makes carries the label `pivotrl=1`, the
backend instance id and the creating process id and host, so `close()` removes exactly what one
backend made and `remove_stale()` cleans up after a process that died without closing, never
touching the sandboxes of live processes that share the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Mapping

from pivot_envs.errors import SandboxUnavailableError
from pivot_envs.sandbox import host

log = logging.getLogger(__name__)

LABEL = "pivotrl"                   # "1" on everything this backend creates
LABEL_BACKEND = "pivotrl.backend"   # the backend instance id
LABEL_PID = "pivotrl.pid"           # the creating process (for remove_stale)
LABEL_HOST = "pivotrl.host"
LABEL_SNAPSHOT = "pivotrl.snapshot"  # "1" on committed snapshot images
LABEL_POOL = "pivotrl.pool"          # "1" on containers started ahead by the fork pool

#: Prefix of a docker backend's host state dir (volume templates), owned through host.write_owner.
STATE_DIR_PREFIX = "pivotrl-docker-"

# docker-py's HTTP read timeout must outlive the longest command (exec_start blocks until it ends).
CLIENT_TIMEOUT_S = 3600


def docker_module():
    try:
        import docker
    except ImportError as e:
        raise SandboxUnavailableError(
            "the docker sandbox backend needs the docker SDK: pip install 'pivotrl[docker]'") from e
    return docker


def connect(timeout: float = CLIENT_TIMEOUT_S):
    """A docker client that has answered a ping, else SandboxUnavailableError saying what to do."""
    docker = docker_module()
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:  # DockerException, requests errors, socket errors: all mean "no daemon"
        raise SandboxUnavailableError(
            f"no Docker daemon answers ({e.__class__.__name__}: {e}). Start one (as root: "
            f"sandboxes/provision_docker.sh) or set DOCKER_HOST; or use sandbox='local'") from e
    return client


def owner_labels(backend_id: str) -> dict[str, str]:
    return {LABEL: "1", LABEL_BACKEND: backend_id, LABEL_PID: str(os.getpid()),
            LABEL_HOST: socket.gethostname()}


def remove_stale(client=None) -> dict[str, int]:
    """Remove containers and snapshot images left by pivotrl processes on this host that died
    without closing their backend. Resources of live processes are left alone (other engineers'
    and workers' sandboxes share the daemon). Returns {"containers": n, "images": m, "state_dirs": k}."""
    client = client or connect()
    hostname = socket.gethostname()

    def stale(labels: Mapping[str, str]) -> bool:
        if labels.get(LABEL_HOST) != hostname:
            return False
        try:
            return not host.pid_alive(int(labels.get(LABEL_PID, "")))
        except ValueError:
            return False

    docker = docker_module()

    def remove_each(rows: list[dict], remove, what: str) -> int:
        count = 0
        for row in rows:
            if not stale(row.get("Labels") or {}):
                continue
            try:
                remove(row["Id"])
                count += 1
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:  # e.g. an image in use by a container we did not remove
                log.warning("stale %s %s not removed: %s", what, row["Id"][:19], e)
        return count

    # Raw list calls (no per-object inspect): another process's reaper may remove the same
    # leftovers at the same moment, and an object that vanished in between is simply done.
    # The daemon unmounts a quota volume bound over a container's layer dir when it deletes that
    # dir; the loop device under it then frees itself (autoclear).
    removed = {"containers": remove_each(client.api.containers(all=True, filters={"label": f"{LABEL}=1"}),
                                         lambda cid: client.api.remove_container(cid, force=True, v=True),
                                         "container"),
               "images": remove_each(client.api.images(filters={"label": f"{LABEL_SNAPSHOT}=1"}),
                                     lambda iid: client.api.remove_image(iid, force=False, noprune=False),
                                     "snapshot image")}
    # The state dirs (volume templates) of docker backends whose process died.
    removed["state_dirs"] = host.sweep_dead_owners(tempfile.gettempdir(), STATE_DIR_PREFIX)
    return removed


def remove_container(container) -> None:
    """Kill and remove `container`, escalating; a container that is already gone is fine."""
    docker = docker_module()
    try:
        container.remove(force=True, v=True)
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as e:
        log.warning("removing container %s failed (%s); killing it first", container.short_id, e)
    try:
        container.kill()
    except docker.errors.APIError:
        pass
    try:
        container.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
