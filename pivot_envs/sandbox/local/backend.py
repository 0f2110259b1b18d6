"""`LocalBackend`: the local sandboxes of one process, their snapshots (layer stacks) and storage.

How state is stored (all under one root directory, removed by `close()` and at interpreter exit;
a killed run's root is removed by the next backend or `pivotrl sandbox gc`, see host.py)
    * `volumes/<volume>/{upper,work,layers/<n>,trash}`: a sandbox's quota volume (an ext4 file
      system on a loop device, image `volumes/<volume>.img`; pool.py). `layers/<n>` are immutable
      layers frozen from its upper dir. A volume stays mounted while a snapshot stands on its layers.
    * `layers/<n>`: squashed layers (and the empty one), on the host disk.
    * `sandboxes/<n>/merged`: one live sandbox's overlay mount, whose lower layers are the stack it
      was forked from; it mirrors the sandbox paths of the persistent dirs (merged/app, merged/tmp,
      merged/root), which are bound into the sandbox at those paths.
    * `trash/` (things being deleted), `masks/` (empty stand-ins for masked host secrets), `etc/`
      (the filtered copy of the host's /etc), `seccomp.bpf`, `owner.pid`.
    * `snapshot()` unmounts (no process runs between execs), renames the upper dir into a new layer,
      pushes it on the stack and remounts over a fresh upper: O(1), whatever the state size. A stack
      deeper than `max_layers` is squashed into one layer (a copy of its merged view).

The backend is thread-safe (many sandboxes in threads).
"""

from __future__ import annotations

import atexit
import collections
import itertools
import logging
import os
import shutil
import tempfile
import threading

from pivot_envs.errors import SandboxError, SandboxUnavailableError
from pivot_envs.sandbox import host
from pivot_envs.sandbox.base import (
    BackendCapabilities,
    SandboxBackend,
    SandboxLimits,
    Snapshot,
)
from pivot_envs.sandbox.local.cgroups import Cgroups
from pivot_envs.sandbox.local.hostview import (
    filtered_copy,
    host_binds,
    host_masks,
    validate_workdir,
)
from pivot_envs.sandbox.local.layers import (
    SnapshotRecord,
    Trash,
    parse_ref,
    snapshot_ref,
    squash,
)
from pivot_envs.sandbox.local.mounts import MAX_MOUNT_OPTIONS, unmount
from pivot_envs.sandbox.local.pool import VolumePool, settled_loops
from pivot_envs.sandbox.local.sandbox import BWRAP_INSTALL_HINT, LocalSandbox
from pivot_envs.sandbox.local.userns import UserNamespace
from pivot_envs.sandbox.ready_pool import ReadyPool
from pivot_envs.sandbox.seccomp import compile_filter

log = logging.getLogger(__name__)

STATE_DIR_PREFIX = "pivotrl-local-"


def state_parents() -> list[str]:
    """Where local backends put their state dirs by default (see LocalBackend's `root` argument)."""
    parents = [tempfile.gettempdir()]
    if os.environ.get("PIVOTRL_CACHE"):
        parents.append(os.path.join(os.environ["PIVOTRL_CACHE"], "local"))
    return parents


def sweep_stale_roots(parent: str) -> int:
    """Remove state dirs (mounts, volumes, loop devices and cgroups included) left by backends
    whose process died; returns how many. Processes of a dead backend's sandboxes died with it
    (bwrap --die-with-parent); the cgroup sweep kills any that got away."""
    return host.sweep_dead_owners(parent, STATE_DIR_PREFIX,
                                  lambda root: Cgroups(os.path.basename(root)).remove_parents())


class _Pending:
    """Stands in for a sandbox being started, so that GC sees the layers it is about to mount."""

    def __init__(self, stack: tuple[str, ...]):
        self.stack = stack


class LocalBackend(SandboxBackend):
    """Sandboxes isolated with bubblewrap on the host; snapshots are overlayfs layer stacks.

    Args:
        root: parent directory for the backend's state (default: $PIVOTRL_CACHE/local, else the
            system temp dir). A private subdirectory is made there and removed by `close()`.
        limits: default limits of `create` (and of forks of snapshots whose origin is unknown).
        max_layers: a snapshot whose layer stack gets deeper than this is squashed into one layer.
        flood_bytes: an exec whose dropped (past the cap) output exceeds this is killed.
        volume_pool: empty disk-quota volumes kept mounted ahead, per quota size in use, so that a
            fork does not wait for one (~5-10 ms: image copy, loop device, mount); 0 = none.
        fork_pool: sandboxes kept forked ahead per snapshot named by `warm()` (an env's episode
            resets), each with its first exec's bwrap started and waiting (`LocalSandbox.prestart`;
            ready_pool.py), so that a warm reset's fork and first command skip the mount, cgroup and
            bwrap start; 0 = none. Verdict forks do not fill it (ready_pool.py says why).
        fork_pool_snapshots: how many snapshots get a fork pool at once (least recently forked lose it).
    """

    name = "local"
    capabilities = BackendCapabilities(
        runs_images=False,
        reaps_killed_runs="state dirs with a dead owner.pid (mounts, loop devices, cgroups) are swept "
                          "by the next local backend or `pivotrl sandbox gc`",
        requires="root, bubblewrap, overlayfs and loop devices on this host",
        keeps_processes=False)

    def __init__(self, root: str | None = None, *, limits: SandboxLimits | None = None,
                 max_layers: int = 32, flood_bytes: int = 64 * 1024 * 1024, volume_pool: int = 2,
                 fork_pool: int = 1, fork_pool_snapshots: int = 8):
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise SandboxUnavailableError(f"the local sandbox backend needs bubblewrap (`bwrap`); {BWRAP_INSTALL_HINT}")
        self.bwrap: str = bwrap
        if os.geteuid() != 0:
            raise SandboxUnavailableError(
                "the local sandbox backend mounts overlayfs and needs root (or CAP_SYS_ADMIN); run as root "
                "or use the docker backend")
        if max_layers < 1:
            raise ValueError(f"max_layers must be >= 1, got {max_layers}")
        self.limits = limits or SandboxLimits()
        self.max_layers = max_layers
        self.flood_bytes = flood_bytes
        parent = root or state_parents()[-1]
        os.makedirs(parent, exist_ok=True)
        sweep_stale_roots(parent)
        self.root = tempfile.mkdtemp(prefix=STATE_DIR_PREFIX, dir=parent)
        if any(c in self.root for c in ":,=\\ "):
            os.rmdir(self.root)
            raise SandboxUnavailableError(
                f"local backend state dir {self.root!r} contains one of ':,=\\ ' (overlay option syntax); "
                "choose another root / PIVOTRL_CACHE")
        self.tag = os.path.basename(self.root)
        host.write_owner(self.root)
        for sub in ("layers", "sandboxes", "trash", "masks"):
            os.mkdir(os.path.join(self.root, sub))
        self.seccomp_file = os.path.join(self.root, "seccomp.bpf")
        with open(self.seccomp_file, "wb") as f:
            f.write(compile_filter())
        self._ids = itertools.count()
        self._trash = Trash(f"{self.tag}-reaper", self._next_id)
        self.stats: collections.Counter[str] = collections.Counter()
        self.empty_layer = os.path.join(self.root, "layers", "empty")
        os.mkdir(self.empty_layer)
        self._lock = threading.RLock()
        self._sandboxes: dict[str, LocalSandbox] = {}
        self._snapshots: dict[str, SnapshotRecord] = {}
        self._layers: set[str] = set()
        self._closed = False
        self.pool = VolumePool(os.path.join(self.root, "volumes"), volume_pool, self._lock, self._trash,
                               self._discard, self._next_id, self.stats, f"{self.tag}-volumes")
        self.etc_copy = etc_copy = os.path.join(self.root, "etc")
        filtered_copy("/etc", etc_copy)
        self._userns: UserNamespace | None = None  # made for the first root_caps sandbox
        self.host_binds = host_binds({"/etc": etc_copy}) + host_masks(os.path.join(self.root, "masks"))
        self.prlimit = shutil.which("prlimit")
        self.perl = shutil.which("perl")  # runs the waiter of pre-started execs; without it none are
        self.fork_pool: ReadyPool[tuple[str, str], LocalSandbox] = ReadyPool(
            size=fork_pool, keys=fork_pool_snapshots, lock=self._lock, stats=self.stats, start=self._start_pooled,
            discard=lambda _key, sb: sb.close(), closed=lambda: self._closed, thread_name=f"{self.tag}-forks",
            fill_on_take=False)
        self.cgroups = Cgroups(self.tag)
        if not self.cgroups.available:
            log.warning("local sandbox backend: %s; falling back to rlimits (%s): memory is an address-space "
                        "cap, pids a per-user process cap, no CPU cap", self.cgroups.reason,
                        "prlimit" if self.prlimit else "prlimit missing too: NO limits")
        atexit.register(self.close)
        self._check_works()

    @classmethod
    def reap_stale(cls) -> dict[str, int]:
        return {"state_dirs": sum(sweep_stale_roots(p) for p in state_parents() if os.path.isdir(p))}

    def user_namespace(self) -> UserNamespace:
        """The user namespace of root_caps sandboxes (userns.py), made on first use. Its root is an
        unprivileged host uid, which must be able to reach what bwrap binds: the state dir opens
        for traversal (not listing) then."""
        with self._lock:
            if self._userns is None:
                self._userns = UserNamespace()
                os.chmod(self.root, 0o711)
            return self._userns

    def _check_works(self) -> None:
        """Fail early, with the reason, when overlay mounts or bwrap cannot run here."""
        try:
            with self.create() as sb:
                r = sb.exec("echo ok", timeout=30)
        except SandboxError as e:
            self.close()
            raise SandboxUnavailableError(f"local sandbox backend cannot run here: {e}") from e
        if r.stdout != "ok\n":
            self.close()
            raise SandboxUnavailableError(
                f"local sandbox self-test failed (exit {r.exit_code}): {r.stderr.strip()[:500]}; {BWRAP_INSTALL_HINT}")

    # -- ids and layers -------------------------------------------------------------------------------

    def _next_id(self) -> str:
        return format(next(self._ids), "x")

    def _add_layer(self, layer: str) -> None:
        with self._lock:
            self._layers.add(layer)

    def _discard(self, path: str) -> None:
        """Delete `path` off the caller's critical path (the trash reaper removes it). A path on a
        sandbox volume goes to that volume's trash, anything else to the backend's."""
        volume = self.pool.volume_of(path)
        self._trash.discard(path, os.path.join(volume, "trash") if volume else os.path.join(self.root, "trash"))

    def _check_usable(self) -> None:
        if self._closed:
            raise SandboxError("this LocalBackend is closed; make a new one")

    # -- contract -----------------------------------------------------------------------------------

    def create(self, image: str | None = None, *, workdir: str = "/app",
               limits: SandboxLimits | None = None) -> LocalSandbox:
        """A fresh sandbox with empty persistent dirs. `image` must be None or "host"."""
        self._check_usable()
        if image not in (None, "host"):
            raise SandboxUnavailableError(
                f"the local sandbox backend runs the host's tools and cannot run the image {image!r}; "
                "pass image=None (or 'host'), or use the docker backend (sandbox='docker') for images")
        workdir = validate_workdir(workdir)
        return self._start((self.empty_layer,), workdir, limits or self.limits, fresh=True)

    def fork(self, snapshot: Snapshot) -> LocalSandbox:
        self._check_usable()
        snap_id, _ = parse_ref(snapshot, self.name)
        with self._lock:
            record = self._snapshots.get(snap_id)
            if record is None:
                raise SandboxError(f"snapshot {snap_id} was released (or is not from this backend); "
                                   "take a new snapshot")
        pooled = self.fork_pool.take((snap_id, snapshot.workdir))
        if pooled is not None:
            return pooled
        return self._start(record.stack, snapshot.workdir, record.limits, fresh=False)

    def warm(self, snapshot: Snapshot) -> None:
        """Keep forks of `snapshot` ready from now on (the env calls it at every episode reset)."""
        snap_id, _ = parse_ref(snapshot, self.name)
        if not self._closed:
            self.fork_pool.warm((snap_id, snapshot.workdir))

    def _start_pooled(self, key: tuple[str, str]) -> LocalSandbox:
        """A fork of snapshot `key` = (id, workdir) for the fork pool, its first exec started."""
        snap_id, workdir = key
        with self._lock:
            record = self._snapshots.get(snap_id)
            if record is None or self._closed:
                raise SandboxError(f"snapshot {snap_id} was released")
            sb = self._start(record.stack, workdir, record.limits, fresh=False)
        try:
            sb.prestart()
        except BaseException:
            sb.close()
            raise
        return sb

    def _start(self, stack: tuple[str, ...], workdir: str, limits: SandboxLimits, fresh: bool) -> LocalSandbox:
        with self._lock:
            sid = self._next_id()
            # Registered before the mount so that a concurrent GC keeps its layers.
            placeholder = _Pending(stack)
            self._sandboxes[sid] = placeholder  # type: ignore[assignment]
        try:
            sb = LocalSandbox(self, sid, stack, workdir, limits, fresh)
        except BaseException:
            with self._lock:
                self._sandboxes.pop(sid, None)
            raise
        with self._lock:
            self._sandboxes[sid] = sb
        return sb

    def _snapshot(self, sb: LocalSandbox, key: str) -> Snapshot:
        with self._lock:
            stack = sb._freeze()
            if len(stack) > self.max_layers or len(":".join(stack)) > MAX_MOUNT_OPTIONS:
                stack = self._squash(stack)
            if stack != sb.stack or not sb._mounted:
                sb._remount(stack)
            snap_id = "s" + self._next_id()
            self._snapshots[snap_id] = SnapshotRecord(stack, sb.limits)
            self._gc()
        return Snapshot(backend=self.name, ref=snapshot_ref(snap_id, stack), workdir=sb.workdir, key=key)

    def _squash(self, stack: tuple[str, ...]) -> tuple[str, ...]:
        """One layer holding the merged view of `stack`."""
        layer = os.path.join(self.root, "layers", self._next_id())
        view = os.path.join(self.root, "sandboxes", "squash-" + self._next_id())
        os.mkdir(view)
        squash(stack, layer, view, self.empty_layer)
        self._layers.add(layer)
        log.debug("squashed %d layers into %s", len(stack), layer)
        return (layer,)

    def release(self, snapshot: Snapshot) -> None:
        snap_id, _ = parse_ref(snapshot, self.name)
        self.fork_pool.drop((snap_id, snapshot.workdir))
        with self._lock:
            if self._snapshots.pop(snap_id, None) is not None:
                self._gc()

    def _gc(self) -> None:
        """Delete layers that no unreleased snapshot and no live sandbox stands on."""
        used: set[str] = set()
        for record in self._snapshots.values():
            used.update(record.stack)
        for sb in self._sandboxes.values():
            used.update(sb.stack)
        for layer in self._layers - used:
            self._discard(layer)
            self._layers.discard(layer)
        self.pool.release_unused({self.pool.volume_of(layer) for layer in self._layers})

    def _forget(self, sb: LocalSandbox) -> None:
        with self._lock:
            self.pool.sandbox_closed(sb.volume)
            if self._sandboxes.get(sb.id) is sb:
                del self._sandboxes[sb.id]
            self._gc()

    def live_resources(self) -> list[str]:
        """What is running or mounted for this backend's sandboxes right now: overlay mounts and
        cgroups (snapshot layers are storage, not counted). Empty once every sandbox is closed;
        used by tests to prove that nothing leaks."""
        storage = self.pool.storage()  # snapshot storage and the volume pool are not sandboxes
        pooled = self.fork_pool.items()  # nor are the forks waiting in the fork pool (a cache)
        storage |= {sb.volume for sb in pooled} | {sb.merged for sb in pooled}
        pooled_ids = {sb.id for sb in pooled}
        mounts = [m for m in (host.mounts_under(self.root) if os.path.isdir(self.root) else []) if m not in storage]
        loops = [dev for dev, image in settled_loops(self.root).items() if image[:-len(".img")] not in storage]
        return ([f"mount:{m}" for m in mounts]
                + [f"cgroup:{c}" for c in self.cgroups.live() if os.path.basename(c) not in pooled_ids]
                + [f"loop:{d}" for d in loops])

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.fork_pool.stop()  # joins its filler, which takes the lock: not held here
        with self._lock:
            self.pool.closed = True
            for sb in list(self._sandboxes.values()):
                if isinstance(sb, LocalSandbox):
                    sb.close()
            self._snapshots.clear()
            self._layers.clear()
        self.pool.stop()
        with self._lock:
            for m in host.mounts_under(self.root):
                unmount(m, lazy=m.startswith(self.pool.root + "/"))
            self.pool.in_use.clear()
            self.cgroups.remove_parents()
            if self._userns is not None:
                self._userns.close()
            self._trash.stop()
            shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    # -- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def host_root_processes() -> int:
        """Processes of uid 0 on the host (RLIMIT_NPROC counts them all; rlimit fallback only)."""
        count = 0
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    if os.stat(f"/proc/{name}").st_uid == 0:
                        count += 1
                except FileNotFoundError:
                    pass
        return count

    def __repr__(self) -> str:
        return f"LocalBackend(root={self.root!r}, sandboxes={len(self._sandboxes)}, snapshots={len(self._snapshots)})"
