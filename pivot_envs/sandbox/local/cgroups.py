"""Cgroups of the local backend: one per sandbox (v1: memory, pids, cpu controllers; v2: the same in
one directory), under this backend's parent `pivotrl-local/<tag>`.

A sandbox joins its cgroup through the tiny `sh` wrapper before it execs `bwrap` (sandbox.py);
without usable cgroups the backend falls back to rlimits.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import time

from pivot_envs.sandbox.base import SandboxLimits

log = logging.getLogger(__name__)


class Cgroups:
    """Creates, fills and removes one cgroup per sandbox, on cgroup v1 or v2.

    `parent` names this backend's cgroup (`pivotrl-local/<tag>`); a sandbox's cgroup lives under it
    in every controller hierarchy used. `available` is False when nothing could be set up.
    """

    V1_CONTROLLERS = ("memory", "pids", "cpu")

    def __init__(self, tag: str, base: str = "/sys/fs/cgroup"):
        self.base = base
        self.tag = tag
        self.version = 0
        self.parents: list[str] = []  # this backend's parent cgroup directory, per hierarchy
        self.reason = ""
        try:
            if os.path.exists(os.path.join(base, "cgroup.controllers")):
                self._init_v2()
            elif all(os.path.isdir(os.path.join(base, c)) for c in self.V1_CONTROLLERS):
                self._init_v1()
            else:
                self.reason = f"no cgroup v1 {'/'.join(self.V1_CONTROLLERS)} nor cgroup v2 under {base}"
        except OSError as e:
            self.reason = f"cannot create cgroups under {base}: {e}"
            self.remove_parents()
            self.parents = []
            self.version = 0

    @property
    def available(self) -> bool:
        return self.version != 0

    def _init_v1(self) -> None:
        for ctrl in self.V1_CONTROLLERS:
            parent = os.path.join(self.base, ctrl, "pivotrl-local", self.tag)
            os.makedirs(parent, exist_ok=True)
            self.parents.append(parent)
        self.version = 1

    def _init_v2(self) -> None:
        wanted = {"memory", "pids", "cpu"}
        with open(os.path.join(self.base, "cgroup.controllers")) as f:
            have = set(f.read().split())
        if not wanted <= have:
            raise OSError(f"cgroup v2 root lacks controllers {sorted(wanted - have)}")
        top = os.path.join(self.base, "pivotrl-local")
        parent = os.path.join(top, self.tag)
        os.makedirs(parent, exist_ok=True)
        self.parents.append(parent)
        enable = " ".join("+" + c for c in sorted(wanted))
        for d in (self.base, top, parent):  # intermediate cgroups hold no process: allowed
            with open(os.path.join(d, "cgroup.subtree_control"), "w") as f:
                f.write(enable)
        self.version = 2

    def create(self, name: str, limits: SandboxLimits) -> list[str]:
        """Make the cgroup(s) of one sandbox with `limits`; return the cgroup.procs files to join."""
        dirs = [os.path.join(p, name) for p in self.parents]
        for d in dirs:
            os.mkdir(d)
        mem = str(limits.memory_mb * 1024 * 1024)
        period = 100_000
        quota = max(1000, int(limits.cpus * period))
        try:
            if self.version == 1:
                mem_dir, pids_dir, cpu_dir = dirs
                _write(os.path.join(mem_dir, "memory.limit_in_bytes"), mem)
                if os.path.exists(os.path.join(mem_dir, "memory.memsw.limit_in_bytes")):
                    _write(os.path.join(mem_dir, "memory.memsw.limit_in_bytes"), mem)  # no swapping past it
                _write(os.path.join(pids_dir, "pids.max"), str(limits.pids))
                _write(os.path.join(cpu_dir, "cpu.cfs_period_us"), str(period))
                _write(os.path.join(cpu_dir, "cpu.cfs_quota_us"), str(quota))
            else:
                (d,) = dirs
                _write(os.path.join(d, "memory.max"), mem)
                if os.path.exists(os.path.join(d, "memory.swap.max")):
                    _write(os.path.join(d, "memory.swap.max"), "0")
                _write(os.path.join(d, "pids.max"), str(limits.pids))
                _write(os.path.join(d, "cpu.max"), f"{quota} {period}")
        except OSError:
            self.remove(name)
            raise
        return [os.path.join(d, "cgroup.procs") for d in dirs]

    def pids(self, name: str) -> list[int]:
        procs = os.path.join(self.parents[-1 if self.version == 2 else 1], name, "cgroup.procs")
        try:
            with open(procs) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []

    def oom_kills(self, name: str) -> int:
        """How many processes the kernel OOM-killed in this cgroup so far."""
        path = (os.path.join(self.parents[0], name, "memory.oom_control") if self.version == 1
                else os.path.join(self.parents[0], name, "memory.events"))
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (FileNotFoundError, ValueError):
            pass
        return 0

    def kill_all(self, name: str, deadline_s: float = 2.0) -> bool:
        """SIGKILL every process in the cgroup until it is empty. True when it emptied in time."""
        if self.version == 2:
            kill_file = os.path.join(self.parents[0], name, "cgroup.kill")
            if os.path.exists(kill_file):
                try:
                    _write(kill_file, "1")
                except OSError:
                    pass
        end = time.monotonic() + deadline_s
        while True:
            pids = self.pids(name)
            if not pids:
                return True
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > end:
                return False
            time.sleep(0.005)

    def remove(self, name: str) -> None:
        self.kill_all(name)
        for parent in self.parents:
            d = os.path.join(parent, name)
            for attempt in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or attempt == 49:
                        log.warning("cannot remove cgroup %s: %s", d, e)
                        break
                    time.sleep(0.01)

    def live(self) -> list[str]:
        out = []
        for parent in self.parents:
            if os.path.isdir(parent):
                out += [os.path.join(parent, n) for n in sorted(os.listdir(parent))
                        if os.path.isdir(os.path.join(parent, n))]
        return out

    def remove_parents(self) -> None:
        for parent in self.parents:
            for child in (os.listdir(parent) if os.path.isdir(parent) else []):
                if os.path.isdir(os.path.join(parent, child)):
                    self.remove(child)
            try:
                os.rmdir(parent)
            except OSError:
                pass


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)

