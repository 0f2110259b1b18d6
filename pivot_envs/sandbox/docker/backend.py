"""`DockerBackend`: one container per sandbox, `docker commit` snapshots.

Design (numbers measured on the 2-core dev machine, Docker 20.10, overlay2):

- A sandbox is a container whose PID 1 reaps orphans and never exits on its own. Commands run
  with `docker exec`, ~50 ms each (sandbox.py).
- `snapshot()` is `docker commit` (~0.1 s; the container is paused meanwhile) and its `ref` is the
  image id; `fork()` starts a container from that image, from the fork pool when one is ready
  (pivot_envs/sandbox/ready_pool.py); `release()` removes the image.
- Every container and snapshot image carries the owner labels (reaper.py), so `close()` removes
  exactly what this backend made and a killed run's leftovers are reaped by the next backend.
- Output is capped inside the container, so a command that floods stdout costs CPU, not memory,
  and still reports its own exit code (exec_wrapper.sh).
- A disk quota per container, when the daemon allows (quota.py).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import posixpath
import queue
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from typing import Any

from pivot_envs.errors import ImageNotFoundError, SandboxError
from pivot_envs.sandbox import host
from pivot_envs.sandbox.base import (
    ROOT_CAPS,
    BackendCapabilities,
    SandboxBackend,
    SandboxLimits,
    Snapshot,
)
from pivot_envs.sandbox.docker.quota import attach_quota, detach_quota, quota_supported
from pivot_envs.sandbox.docker.reaper import (
    LABEL_BACKEND,
    LABEL_POOL,
    LABEL_SNAPSHOT,
    STATE_DIR_PREFIX,
    connect,
    docker_module,
    owner_labels,
    remove_container,
    remove_stale,
)
from pivot_envs.sandbox.docker.sandbox import MAX_EXEC_TIMEOUT_S, DockerSandbox, Spec
from pivot_envs.sandbox.ready_pool import ReadyPool
from pivot_envs.sandbox.volumes import VolumeFactory, loop_devices_backed_under

log = logging.getLogger(__name__)

DEFAULT_IMAGE = "pivotrl/sandbox-base:latest"
IMAGE_ENV_VAR = "PIVOTRL_BASE_IMAGE"  # overrides the default image (same variable as the builder)
BUILD_COMMAND = "python -m pivot_envs.images.build"  # the same command as pivot_envs.images.build.BUILD_COMMAND

#: Capabilities: none, unless `limits.root_caps` asks for Docker's default allow-list (ROOT_CAPS,
#: the same list the local backend grants then). Without it root in the container passes no
#: permission check it does not own, as on the local backend, so a command behaves the same on both.
CAP_DROP = ["ALL"]
#: no_new_privs for every process; Docker's default seccomp profile stays on (it is never disabled here).
SECURITY_OPT = ["no-new-privileges"]

# The container's PID 1: reaps orphans (the job Docker's tini did) and never exits on its own. PID 1
# gets no signal from inside its namespace unless it handles it, so `kill -9 -1` in a command kills
# every other process but not the sandbox (with tini, its child `sleep` died and the container with
# it). TERM from `docker stop` ends it; `docker rm -f` kills it from outside.
_KEEPALIVE_INIT = '$SIG{TERM} = sub { exit 0 }; while (1) { sleep 1 if wait() == -1 }'

class DockerBackend(SandboxBackend):
    """Sandboxes as docker containers (see the module docstring for the design).

    Args:
        image: default image of `create()` (default: $PIVOTRL_BASE_IMAGE or
            pivotrl/sandbox-base:latest, built by `python -m pivot_envs.images.build`).
        limits: default limits of every sandbox (`create(limits=...)` overrides per sandbox; a
            fork inherits the limits of the sandbox its snapshot came from).
        pool_size: started containers kept ready per recently forked snapshot (0: no pool).
        pool_images: how many snapshots get a pool at once (least recently forked ones lose it).
        max_pending_removals: containers of sandboxes closed with `close(wait=False)` that may wait for
            the background removal at once; beyond that, `close(wait=False)` removes before it returns.
    """

    name = "docker"
    capabilities = BackendCapabilities(
        runs_images=True,
        reaps_killed_runs="containers and snapshot images labelled with a dead owner pid on this host "
                          "are removed by the next docker backend or `pivotrl sandbox gc`",
        requires="a Docker daemon (and the sandbox base image: python -m pivot_envs.images.build)",
        test_markers=("docker",),
        keeps_processes=True)

    def __init__(self, image: str | None = None, limits: SandboxLimits | None = None,
                 pool_size: int = 2, pool_images: int = 8, max_pending_removals: int = 8):
        self.client = connect()
        self._docker = docker_module()
        self.image = image or os.environ.get(IMAGE_ENV_VAR) or DEFAULT_IMAGE
        self.limits = limits or SandboxLimits()
        self.instance_id = uuid.uuid4().hex[:12]
        self.stats: collections.Counter[str] = collections.Counter()  # counts, and fork_seconds
        self._lock = threading.RLock()
        self._closed = False
        self._sandboxes: dict[str, DockerSandbox] = {}
        self._snapshots: dict[str, SandboxLimits] = {}  # image id -> limits of its source
        self._unremoved: set[str] = set()  # released snapshot images still in use; close() retries
        self._released: set[str] = set()   # refs of released snapshots (forks of them must fail)
        # The fork pool (ready_pool.py): started containers per recently forked snapshot.
        self.pool: ReadyPool[Spec, Any] = ReadyPool(
            size=pool_size, keys=pool_images, lock=self._lock, stats=self.stats,
            start=lambda spec: self._start(spec, for_pool=True), discard=self._discard_pooled,
            closed=lambda: self._closed, thread_name=f"pivotrl-docker-pool-{self.instance_id}")
        self.max_pending_removals = max(0, int(max_pending_removals))
        self._removal_queue: queue.SimpleQueue = queue.SimpleQueue()
        self._removal_thread: threading.Thread | None = None
        self._removals_pending = 0
        self._removals_done = threading.Condition(self._lock)
        self._quota_mounts: dict[str, str] = {}  # container id -> host dir its quota volume covers
        # A new backend first reaps what killed pivotrl processes left on this daemon.
        try:
            reaped = remove_stale(self.client)
            if reaped["containers"] or reaped["images"]:
                log.warning("removed what dead pivotrl processes left behind: %s", reaped)
        except (self._docker.errors.DockerException, OSError) as e:  # never fail a start over leftovers
            log.warning("could not reap stale pivotrl containers: %s", e)
        self.root = tempfile.mkdtemp(prefix=f"{STATE_DIR_PREFIX}{self.instance_id}-")
        host.write_owner(self.root)
        self.disk_quota, why = quota_supported(self.client, self._docker)
        self.volumes = VolumeFactory(os.path.join(self.root, "volumes")) if self.disk_quota else None
        if not self.disk_quota:
            log.warning("docker backend: per-sandbox disk quota NOT enforced: %s", why)
        _LIVE_BACKENDS.add(self)

    # ------------------------------------------------------------------ containers

    @classmethod
    def reap_stale(cls) -> dict[str, int]:
        return remove_stale()

    def _labels(self) -> dict[str, str]:
        return owner_labels(self.instance_id)

    def _start(self, spec: Spec, *, for_pool: bool = False):
        """Start a container for `spec` (synchronously, ~0.2 s)."""
        limits = spec.limits
        labels = self._labels()
        if for_pool:
            labels[LABEL_POOL] = "1"
        try:
            # create + start rather than `containers.run`: run() pulls a missing image, which
            # without a registry turns "image missing" into a slow, misleading 500 error.
            container = self.client.containers.create(
                spec.image, command=["perl", "-e", _KEEPALIVE_INIT], init=False,
                working_dir=spec.workdir, labels=labels,
                network_mode=None if limits.network else "none",
                mem_limit=f"{limits.memory_mb}m", memswap_limit=f"{limits.memory_mb}m",
                nano_cpus=int(limits.cpus * 1e9), pids_limit=limits.pids,
                cap_drop=CAP_DROP, cap_add=list(ROOT_CAPS) if limits.root_caps else None,
                security_opt=SECURITY_OPT, ipc_mode="private")
        except self._docker.errors.ImageNotFound as e:
            if spec.image in (DEFAULT_IMAGE, os.environ.get(IMAGE_ENV_VAR)):
                hint = f"build it with `{BUILD_COMMAND}` (or sandboxes/provision_docker.sh)"
            elif spec.image.startswith("sha256:"):
                hint = "it is a snapshot that was already released; take a new snapshot"
            else:
                hint = (f"build it (task images: pivot_envs.images.build.build_task_image) or pull it; "
                        f"the base image comes from `{BUILD_COMMAND}`")
            raise ImageNotFoundError(f"docker image {spec.image!r} not found: {hint}") from e
        except self._docker.errors.APIError as e:
            raise SandboxError(f"creating a container from {spec.image} failed: {e}") from e
        try:
            if self.disk_quota:
                self._attach_quota(container, limits.disk_mb)
            container.start()
        except self._docker.errors.APIError as e:
            self._remove_now(container)
            raise SandboxError(f"starting a container from {spec.image} failed: {e}") from e
        except BaseException:
            self._remove_now(container)
            raise
        self.stats["containers_started"] += 1
        return container

    def _adopt(self, container, spec: Spec) -> DockerSandbox:
        box = DockerSandbox(self, container, spec)
        with self._lock:
            if self._closed:
                self._remove_now(container)
                raise SandboxError("this docker backend is closed; make a new one")
            self._sandboxes[container.id] = box
        return box

    def _attach_quota(self, container, disk_mb: int) -> None:
        assert self.volumes is not None
        layer_dir = attach_quota(container, self.volumes, disk_mb)
        with self._lock:
            self._quota_mounts[container.id] = layer_dir

    def _discard_pooled(self, spec: Spec, container) -> None:
        """A pooled container nobody will take: removed now; a released snapshot image that waited for
        it goes too."""
        self._remove_now(container)
        if spec.image in self._unremoved:
            self._remove_image(spec.image)

    def _remove_now(self, container) -> None:
        """Remove `container` and wait for it (when this returns, its processes and mounts are gone)."""
        remove_container(container)
        with self._lock:
            layer_dir = self._quota_mounts.pop(container.id, None)
        if layer_dir:
            detach_quota(layer_dir)

    def _remove_later(self, container) -> None:
        """Remove `container` off the caller's path (a closed sandbox's removal, ~60 ms of daemon work,
        was the largest part of a warm episode reset), but accounted: the container stays listed until
        it is gone, `flush_removals()` waits for every pending one, and `live_resources()`, `close()`
        and every env's `close()` flush first, so nothing outlives the close that asked for it. Removes
        now when `max_pending_removals` are already waiting (a bounded backlog)."""
        with self._lock:
            now = self._removals_pending >= self.max_pending_removals
            if not now:
                if self._removal_thread is None or not self._removal_thread.is_alive():
                    self._removal_thread = threading.Thread(target=self._removal_loop, daemon=True,
                                                            name=f"pivotrl-docker-removal-{self.instance_id}")
                    self._removal_thread.start()
                self._removals_pending += 1
        if now:
            self._remove_now(container)
            return
        self.stats["removals_in_background"] += 1
        self._removal_queue.put(container)

    def _removal_loop(self) -> None:
        while True:
            container = self._removal_queue.get()
            try:
                self._remove_now(container)
            except Exception as e:  # noqa: BLE001 - close() lists and removes what is left by label
                log.warning("background removal of container %s failed: %s", container.short_id, e)
            finally:
                with self._removals_done:
                    self._removals_pending -= 1
                    self._removals_done.notify_all()

    def flush_removals(self, timeout: float = 120.0) -> None:
        """Wait until every container handed to the background removal is gone."""
        deadline = time.monotonic() + timeout
        with self._removals_done:
            while self._removals_pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxError(f"{self._removals_pending} container removal(s) still pending after {timeout:.0f} s")
                self._removals_done.wait(left)

    def _forget(self, box: DockerSandbox) -> None:
        with self._lock:
            self._sandboxes.pop(box.container.id, None)

    def _sandbox_for(self, spec: Spec, *, pooled: bool) -> DockerSandbox:
        """A running sandbox for `spec`: from the fork pool when `pooled` and one is ready, else
        started now."""
        if self._closed:
            raise SandboxError("this docker backend is closed; make a new one")
        container = self.pool.take(spec) if pooled else None
        if container is None:
            container = self._start(spec)
        return self._adopt(container, spec)

    @property
    def pool_size(self) -> int:
        return self.pool.size

    def warm(self, snapshot: Snapshot) -> None:
        """Ask the pool to start containers for `snapshot` ahead of the first fork."""
        if self.pool.size:
            self.pool.warm(self._spec_for(snapshot))

    # ------------------------------------------------------------------ contract

    max_exec_timeout_s = MAX_EXEC_TIMEOUT_S

    def image_identity(self, image: str | None) -> str:
        """The image ID `image` (default: the backend's image) names now, so that snapshots of an image
        rebuilt under the same tag are not served for the new one; the name when it is missing
        (`create` then says so)."""
        name = image or self.image
        try:
            return str(self.client.api.inspect_image(name)["Id"])
        except self._docker.errors.ImageNotFound:
            return name

    def create(self, image: str | None = None, *, workdir: str = "/app",
               limits: SandboxLimits | None = None) -> DockerSandbox:
        return self._sandbox_for(Spec(image or self.image, workdir, limits or self.limits),
                                 pooled=False)

    def _spec_for(self, snapshot: Snapshot) -> Spec:
        if snapshot.backend != self.name:
            raise ValueError(f"snapshot of backend {snapshot.backend!r} given to the docker backend")
        with self._lock:
            if snapshot.ref in self._released:
                raise ImageNotFoundError(f"snapshot {snapshot.ref[:19]} was already released; "
                                         f"take a new snapshot")
            limits = self._snapshots.get(snapshot.ref, self.limits)
        return Spec(snapshot.ref, snapshot.workdir, limits)

    def fork(self, snapshot: Snapshot) -> DockerSandbox:
        started = time.monotonic()
        box = self._sandbox_for(self._spec_for(snapshot), pooled=True)
        self.stats["forks"] += 1
        self.stats["fork_seconds"] += time.monotonic() - started  # type: ignore[assignment]
        return box

    def _commit(self, box: DockerSandbox, key: str) -> Snapshot:
        labels = {**self._labels(), LABEL_SNAPSHOT: "1"}
        try:
            image = box.container.commit(conf={"Labels": labels})
        except self._docker.errors.APIError as e:
            raise SandboxError(f"docker commit of {box.container.short_id} failed: {e}") from e
        with self._lock:
            self._snapshots[image.id] = box.limits
        self.stats["snapshots"] += 1
        return Snapshot(backend=self.name, ref=image.id, workdir=box.workdir, key=key)

    def release(self, snapshot: Snapshot) -> None:
        with self._lock:
            if snapshot.ref in self._released:
                return
            spec = self._spec_for(snapshot)
            # Remembered so that a fork after release fails the same way whether or not the
            # image could be removed yet (a live fork or an in-flight pool start keeps it).
            self._released.add(snapshot.ref)
            self._snapshots.pop(snapshot.ref, None)
        self.pool.drop(spec)
        self._remove_image(snapshot.ref)

    def _remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=False, noprune=False)
        except self._docker.errors.ImageNotFound:
            pass
        except self._docker.errors.APIError as e:
            # In use by a live fork (HTTP 409): removing it by force would break that sandbox,
            # so it is kept and `close()` removes it once the forks are gone.
            log.debug("snapshot %s kept for now: %s", ref[:19], e)
            with self._lock:
                self._unremoved.add(ref)
        else:
            with self._lock:
                self._unremoved.discard(ref)

    def close(self) -> None:
        """Stop the pool, remove every container and snapshot image this backend created."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.pool.stop()
        finally:
            with self._lock:
                boxes = list(self._sandboxes.values())
                snapshots = list(self._snapshots) + sorted(self._unremoved)
                self._snapshots.clear()
                self._unremoved.clear()
            for box in boxes:
                box.close()
            try:
                self.flush_removals()
            except SandboxError as e:  # what is left is listed by label and removed below
                log.warning("%s", e)
            # Anything a crashed code path left behind still carries our instance label.
            try:
                # sparse: ids only; a full list inspects each container and fails on one removed meanwhile
                leftovers = self.client.containers.list(
                    all=True, sparse=True, filters={"label": f"{LABEL_BACKEND}={self.instance_id}"})
            except self._docker.errors.APIError as e:
                log.warning("could not list leftover containers: %s", e)
                leftovers = []
            for container in leftovers:
                self._remove_now(container)
            for ref in snapshots:
                self._remove_image(ref)
            shutil.rmtree(self.root, ignore_errors=True)
            _LIVE_BACKENDS.discard(self)

    def _owned_container_rows(self) -> list[dict]:
        """This backend's containers as the list API returns them (id + labels, no per-container
        inspect: a container being removed in the background may vanish between list and inspect)."""
        return self.client.api.containers(all=True, filters={"label": f"{LABEL_BACKEND}={self.instance_id}"})

    def live_containers(self) -> list[str]:
        """Ids of all containers this backend owns right now, pooled ones included."""
        return [row["Id"] for row in self._owned_container_rows()]

    def live_resources(self) -> list[str]:
        """The containers behind this backend's sandboxes ("container:<id>"), for leak checks:
        empty once every sandbox is closed. Containers waiting in the fork pool are a cache, not
        sandboxes, and are left out (the pool refills in the background at any moment);
        `close()` removes them."""
        self.flush_removals()  # a closed sandbox's container counts as gone only once it is
        rows = self._owned_container_rows()
        with self._lock:
            tracked = set(self._sandboxes)
        pooled = {row["Id"] for row in rows
                  if row["Id"] not in tracked and (row.get("Labels") or {}).get(LABEL_POOL) == "1"}
        # Quota volumes' loop devices whose container is gone (their images are deleted but named
        # after the container): a removed container's device frees itself a moment after removal.
        names = {row["Id"][:16] for row in rows}
        deadline = time.monotonic() + 2.0
        while True:
            loops = [dev for dev, image in loop_devices_backed_under(self.root).items()
                     if posixpath.basename(image).removesuffix(".img") not in names]
            if not loops or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return sorted([f"container:{row['Id']}" for row in rows if row["Id"] not in pooled]
                      + [f"loop:{dev}" for dev in loops])


_LIVE_BACKENDS: weakref.WeakSet[DockerBackend] = weakref.WeakSet()


@atexit.register
def _close_live_backends() -> None:
    """Safety net: a process that forgets `backend.close()` still leaves no containers behind."""
    for backend in list(_LIVE_BACKENDS):
        try:
            backend.close()
        except Exception as e:  # noqa: BLE001 - at exit, log and go on with the next one
            log.warning("closing docker backend %s at exit failed: %s", backend.instance_id, e)
