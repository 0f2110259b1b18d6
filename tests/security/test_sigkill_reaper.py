"""A run SIGKILLed in the middle of a `PivotTerminal-v0` step leaves nothing behind once a new
backend instance starts (or `pivotrl sandbox gc` runs): 0 containers, processes, mounts, cgroups,
loop devices and temp dirs of the dead run, each asserted (both backends)."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from tests.conftest import backend_params, require

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r"""
import json, os, sys
import gymnasium as gym
import pivot_envs
from pivot_envs.sandbox import make_backend
from pivot_envs.domains.terminal.tasks import builtin_trajectories
from pivot_envs.parsing import render_bash_call

backend = make_backend(sys.argv[1])
env = gym.make("PivotTerminal-v0", trajectories=[builtin_trajectories("train")[0]], sandbox=backend,
               trajectory=0, reset_to_turn=1)
env.reset()
print(json.dumps({"root": backend.root, "pid": os.getpid()}), flush=True)
env.step(render_bash_call("sleep 300; echo " + sys.argv[2]))
"""


def _processes_with(marker: str, exclude: tuple[int, ...] = ()) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid() and int(pid) not in exclude:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def _mounts_under(root: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(root)]


def _loops_under(root: str) -> list[str]:
    from pivot_envs.sandbox.volumes import loop_devices_backed_under

    return list(loop_devices_backed_under(root))


@pytest.mark.parametrize("backend_name", backend_params())
@pytest.mark.parametrize("reaper", ["new backend", pytest.param("pivotrl sandbox gc", marks=pytest.mark.slow)])
def test_sigkill_mid_episode_then_reaper_leaves_nothing(backend_name, reaper):
    from pivot_envs.errors import SandboxUnavailableError
    from pivot_envs.sandbox import make_backend

    try:  # the backend must work here at all (skip on a dev box without it, fail under CI)
        make_backend(backend_name).close()
    except SandboxUnavailableError as e:
        require(False, f"{backend_name} backend unavailable: {e}")
    marker = f"pivotrl-sigkill-{uuid.uuid4().hex[:10]}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, backend_name, marker], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line, f"the child run failed to start: {child.stderr.read()[-2000:]}"
        state = json.loads(line)
        deadline = time.monotonic() + 60
        # The child's own argv holds the marker too: wait for a process other than the child, i.e. the
        # sampled command running inside a sandbox (in pivot mode the forks only exist from step on).
        while not _processes_with(marker, exclude=(child.pid,)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with(marker, exclude=(child.pid,)), "the episode's command never started"
        containers = []
        if backend_name == "docker":
            import docker

            client = docker.from_env()
            containers = [c.id for c in client.containers.list(all=True, sparse=True, filters={"label": f"pivotrl.pid={state['pid']}"})]
            assert containers
    finally:
        child.kill()  # SIGKILL: no atexit, no finally in the child
        child.wait()
    t0 = time.monotonic()
    if reaper == "new backend":
        make_backend(backend_name).close()
    else:
        proc = subprocess.run([sys.executable, "-m", "pivot_algo.cli", "sandbox", "gc", "--backend", backend_name],
                              cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
    reap_s = time.monotonic() - t0
    root = state["root"]
    deadline = time.monotonic() + 15  # killed processes and freed loop devices take a moment
    while (_processes_with(marker) or _loops_under(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    leftovers = {
        "processes": _processes_with(marker),
        "mounts": _mounts_under(root),
        "loop devices": _loops_under(root),
        "temp dirs": [root] if os.path.exists(root) else [],
        "cgroups": glob.glob(f"/sys/fs/cgroup/*/pivotrl-local/{os.path.basename(root)}")
        + glob.glob(f"/sys/fs/cgroup/pivotrl-local/{os.path.basename(root)}"),
    }
    if backend_name == "docker":
        import docker

        client = docker.from_env()
        leftovers["containers"] = [c.id for c in client.containers.list(
            all=True, sparse=True, filters={"label": f"pivotrl.pid={state['pid']}"})]
        leftovers["images"] = [i.id for i in client.images.list(filters={"label": f"pivotrl.pid={state['pid']}"})]
        leftovers["cgroups"] += [p for cid in containers for p in glob.glob(f"/sys/fs/cgroup/*/docker/{cid}")]
        leftovers["mounts"] += [m for cid in containers for m in _mounts_under("/var/lib/docker/containers/" + cid)]
    print(f"\n{backend_name} / {reaper}: reaped in {reap_s:.2f} s; leftovers "
          f"{ {k: len(v) for k, v in leftovers.items()} }")
    assert all(not v for v in leftovers.values()), leftovers
