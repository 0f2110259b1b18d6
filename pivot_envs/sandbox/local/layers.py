"""Layer storage of the local backend: snapshot refs, squashing a deep stack, and the trash.

A snapshot is a stack of immutable layers (top first), each an overlay upper dir frozen as is
(whiteouts and opaque-dir xattrs included, so it works as a lower layer unchanged). Layers are
shared between snapshots and live sandboxes; the backend frees a layer when nothing stands on it.
`Snapshot.ref` is "<snapshot id>=<layer>:<layer>:...": the overlay lowerdir itself.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable

from pivot_envs.errors import SandboxError
from pivot_envs.sandbox.base import SandboxLimits, Snapshot
from pivot_envs.sandbox.local.mounts import mount_overlay, unmount


@dataclasses.dataclass
class SnapshotRecord:
    stack: tuple[str, ...]
    limits: SandboxLimits


def snapshot_ref(snap_id: str, stack: tuple[str, ...]) -> str:
    return f"{snap_id}={':'.join(stack)}"


def parse_ref(snapshot: Snapshot, backend_name: str) -> tuple[str, tuple[str, ...]]:
    """(snapshot id, layer stack) of a snapshot of the backend called `backend_name`."""
    if snapshot.backend != backend_name:
        raise ValueError(f"snapshot of backend {snapshot.backend!r} given to the {backend_name} backend")
    snap_id, sep, layers = snapshot.ref.partition("=")
    if not sep:
        raise ValueError(f"malformed local snapshot ref {snapshot.ref!r}")
    return snap_id, tuple(layers.split(":"))


def squash(stack: tuple[str, ...], layer: str, view: str, empty_layer: str) -> None:
    """Fill the new dir `layer` with the merged view of `stack` (whiteouts applied, so none are
    left), mounted read-only at the empty dir `view` meanwhile (removed afterwards)."""
    try:
        mount_overlay(stack if len(stack) > 1 else stack + (empty_layer,), None, None, view)
        try:
            subprocess.run(["cp", "-a", "--", view + "/.", layer], check=True, capture_output=True)
        finally:
            unmount(view)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(layer, ignore_errors=True)
        raise SandboxError(f"squashing {len(stack)} layers failed: {e.stderr.decode(errors='replace')}") from e
    finally:
        os.rmdir(view)


class Trash:
    """Deletes paths off the caller's critical path: `discard` renames a path into a trash dir of
    its own file system (instant) and a reaper thread removes it (deleting even a few files costs
    milliseconds on some disks)."""

    def __init__(self, name: str, next_id: Callable[[], str]):
        self._next_id = next_id
        self._queue: queue.SimpleQueue[str | int | None] = queue.SimpleQueue()
        self._reaper = threading.Thread(target=self._reap, name=name, daemon=True)
        self._reaper.start()

    def discard(self, path: str, trash_dir: str) -> None:
        """Move `path` (if it exists) into `trash_dir`, on the same file system, for the reaper."""
        target = os.path.join(trash_dir, self._next_id())
        try:
            os.rename(path, target)
        except FileNotFoundError:
            return
        self._queue.put(target)

    def empty_and_close(self, dir_fd: int) -> None:
        """Have the reaper delete everything in the directory open as `dir_fd`, then close it."""
        self._queue.put(dir_fd)

    def stop(self) -> None:
        """Let the reaper finish what is queued and end."""
        self._queue.put(None)
        self._reaper.join()

    def _reap(self) -> None:
        while True:
            path = self._queue.get()
            if path is None:
                return
            if isinstance(path, int):  # the root of a released, already unmounted volume
                _empty_dir_fd(path)
                os.close(path)
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)  # a released volume's trash vanishes: fine
            else:
                try:
                    os.unlink(path)
                except OSError:
                    pass


def _empty_dir_fd(dir_fd: int) -> None:
    """Delete everything inside the directory open as `dir_fd` (errors ignored)."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return
    for name in names:
        try:
            if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
                shutil.rmtree(name, dir_fd=dir_fd, ignore_errors=True)
            else:
                os.unlink(name, dir_fd=dir_fd)
        except OSError:
            pass
