"""Soak: many terminal verdicts with a sandbox killed from outside at random once every 50 episodes
(`docker kill` of the container / SIGKILL to the bwrap process tree, while the sampled command runs).

Each episode resets to a state of the built-in suite and judges a group of distinct samples (one
equivalent to the demonstration, one wrong; on a kill episode a third that runs until it is killed)
in parallel forks. Asserted, per backend: every sample has a verdict; every kill is a masked sample
(infrastructure, `sandbox_error`), never a wrong answer; no other sample is masked and the others'
rewards are right; after `pivot_envs.close_all()` nothing of the run remains (state dirs, mounts,
loop devices, cgroups, processes, containers, images), counted from inside the process.

Slow. Cost on the loaded 2-core machine (load 6-9): local 200 episodes ~10 s (4 kills; 1,000 took 41 s),
docker 60 episodes ~110 s (2 kills; the states are built and their reference runs cached in the first
~40 s). PIVOTRL_SOAK=N runs N episodes per backend (1,000: 20 kills each; docker ~1-2 s an episode
here, so the test's time limit grows with N).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import _make

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI_EPISODES = {"local": 200, "docker": 60}
SOAK = int(os.environ.get("PIVOTRL_SOAK") or 0)  # episodes per backend instead of CI_EPISODES
TIME_LIMIT_S = max(600, 4 * SOAK)  # docker spends up to ~2 s an episode under load

CHILD = r"""
import json, os, random, re, signal, sys, threading, time
import gymnasium as gym
import pivot_envs
from pivot_envs.base_env import pivot_env
from pivot_envs.domains.terminal.tasks import builtin_trajectories
from pivot_envs.parsing import render_bash_call
from pivot_envs.trajectory import load_trajectories, tool_calls_of
from tests.sandbox.leftovers import descendants, leftovers

name, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
trajs = load_trajectories(builtin_trajectories("train"))[:4]
states = [(t.id, k) for t in trajs for k in range(t.num_turns)
          if tool_calls_of(t.reference(k)) and "<<" not in tool_calls_of(t.reference(k))[0].arguments["command"]]
kills = {b + rng.randrange(min(50, n - b)) for b in range(0, n, 50)}  # one at random in every 50


def ps():
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out[int(pid)] = (cmd, ppid)
    return out


def kill_from_outside(marker, done):
    # wait for the sampled command (`sleep <marker>`) to run, then kill its sandbox from outside
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        procs = ps()
        hit = next((pid for pid, (cmd, _) in procs.items() if cmd[:2] == [b"sleep", marker.encode()]), None)
        if hit is None:
            time.sleep(0.01)
            continue
        if name == "docker":
            import docker
            with open(f"/proc/{hit}/cgroup") as f:
                cid = re.search(r"[0-9a-f]{64}", f.read()).group(0)
            docker.from_env().api.kill(cid)
        else:  # the bwrap process our exec started (child of this process), then its whole tree
            pid = hit
            while procs[pid][1] != os.getpid():
                pid = procs[pid][1]
            tree = [pid] + [p for p in procs if p != pid and _below(procs, p, pid)]
            for p in tree:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        done.append(marker)
        return


def _below(procs, pid, top):
    while pid in procs and pid != os.getpid():
        pid = procs[pid][1]
        if pid == top:
            return True
    return False


env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=name)
core = pivot_env(env)
root = core.backend.root
report = {"episodes": n, "samples": 0, "verdicts": 0, "kills": 0, "killed_masked": 0, "killed_wrong": 0,
          "other_masked": 0, "wrong_rewards": [], "lost": 0}
t0 = time.time()
for i in range(n):
    tid, k = states[i % len(states)]
    _, info = env.reset(options={"trajectory": tid, "turn": k})
    cmd = tool_calls_of(info["reference"])[0].arguments["command"]
    actions = [render_bash_call(f": soak {i}; {cmd}"), render_bash_call(f"echo soak {i} > soak_{i}.txt")]
    expected = [1.0, 0.0]
    killer, done = None, []
    if i in kills:
        marker = f"60.{i:05d}"
        actions.append(render_bash_call(f"sleep {marker}"))
        killer = threading.Thread(target=kill_from_outside, args=(marker, done))
        killer.start()
    verdicts = list(core.judge_actions(actions))
    if killer is not None:
        killer.join()
        report["kills"] += len(done)
        v = verdicts[2]
        report["killed_masked"] += v.masked and v.failure_kind == "sandbox_error"
        report["killed_wrong"] += not v.masked
        if not v.masked:
            report.setdefault("killed_reasons", []).append(v.reason[:300])
    report["samples"] += len(actions)
    report["verdicts"] += sum(v is not None for v in verdicts)
    for v, want in zip(verdicts, expected):
        report["other_masked"] += v.masked
        if not v.masked and v.reward != want:
            report["wrong_rewards"].append([tid, k, i, v.reward, v.reason[:200]])
report["seconds"] = time.time() - t0
report["while_open"] = leftovers(root)
pivot_envs.close_all()
report["after_close_all"] = leftovers(root)
print(json.dumps(report), flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(TIME_LIMIT_S)
@pytest.mark.parametrize("backend", ["local", pytest.param("docker", marks=pytest.mark.docker)])
def test_soak_kills_are_masked_and_nothing_leaks(backend):
    _make(backend).close()  # skips (dev) / fails (CI) when the backend cannot run here
    n = SOAK or CI_EPISODES[backend]
    proc = subprocess.run([sys.executable, "-c", CHILD, backend, str(n)], cwd=REPO, capture_output=True, text=True,
                          timeout=TIME_LIMIT_S - 30, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(backend, json.dumps(report))  # the soak counts of the issue note (pytest -s)
    assert report["verdicts"] == report["samples"], report  # 0 lost verdicts
    assert report["kills"] == len(range(0, n, 50)), report  # every planned kill landed
    assert report["killed_masked"] == report["kills"] and report["killed_wrong"] == 0, report
    assert report["other_masked"] == 0 and not report["wrong_rewards"], report
    assert report["while_open"]["state_dirs"] >= 1, report  # the count sees what is there
    assert not any(report["after_close_all"].values()), report
