"""What a process of the project left on the host, counted from inside it (tests/sandbox/test_lifecycle.py,
tests/terminal/test_soak.py): its state dirs, their mounts and loop devices, its cgroups, its child
processes, its containers and snapshot images."""

from __future__ import annotations

import glob
import os
import tempfile

from pivot_envs.sandbox import host
from pivot_envs.sandbox.volumes import loop_devices_backed_under


def descendants() -> list[int]:
    """Pids of every process below this one."""
    children = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(pid))
    out, todo = [], [os.getpid()]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def leftovers(root: str) -> dict[str, int]:
    """Counts of what this process holds on the host; `root` is its (last) local or docker state dir."""
    counts = {"state_dirs": 0, "mounts": 0, "loop_devices": 0, "cgroups": 0, "processes": len(descendants()),
              "containers": 0, "images": 0}
    for parent in {tempfile.gettempdir(), os.path.dirname(root)}:
        for d in glob.glob(os.path.join(parent, "pivotrl-*")):
            try:
                with open(os.path.join(d, "owner.pid")) as f:
                    mine = int(f.read()) == os.getpid()
            except (OSError, ValueError):
                continue
            if mine:
                counts["state_dirs"] += 1
                counts["mounts"] += len(host.mounts_under(d))
                counts["loop_devices"] += len(loop_devices_backed_under(d))
    counts["loop_devices"] += len(loop_devices_backed_under(root)) if not os.path.exists(root) else 0
    counts["cgroups"] = len(glob.glob(f"/sys/fs/cgroup/*/pivotrl-local/{os.path.basename(root)}")
                            + glob.glob(f"/sys/fs/cgroup/pivotrl-local/{os.path.basename(root)}"))
    try:
        import docker
    except ImportError:
        return counts
    try:
        client = docker.from_env()
        mine = {"label": f"pivotrl.pid={os.getpid()}"}
        counts["containers"] = len(client.api.containers(all=True, filters=mine))
        counts["images"] = len(client.api.images(filters=mine))
    except (docker.errors.DockerException, OSError):
        return counts  # no daemon here: this process cannot have containers either
    return counts
