"""Verdicts per second for one group of sampled actions at one terminal state, cold, judged one after
another vs in parallel forks (`verdict_workers`), per sandbox backend, side by side in one run.

    python benchmarks/verifier_group.py [--backends local docker] [--workers 1 2 4 8] [--rounds 5] [--floor 20]

The group: 16 DISTINCT actions at the state before the demonstration's edit of
terminal-config_edit-0 (turn 2: a `sed -i` on service.ini): 8 equivalent rewrites of the
demonstration's command and 8 wrong commands, none identical to it (every one runs in a fork).
Cold = a fresh env (new verifier: no reference runs, private verdict cache) per measurement; the
state's snapshot is built beforehand (this measures verdicts, not replay). Rounds alternate the
worker counts so the load hits them alike; the table gives the median per count.

Where the time goes (one-after-another runs; in parallel the phases overlap): the reference runs
(the state + the demonstration twice: 3 forks, once per state), and per fork the fork itself, the
command(s), the effect measurement (file manifest + git + output) and the close; plus CPU seconds
per verdict: this process's (with its children: bwrap and the commands), the work's (the machine's
less other Python processes', i.e. the training jobs': kernel and docker daemons included) and the
whole machine's. 2 cores / work CPU per verdict bounds verdicts/s whatever the parallelism.
The load average is printed at start and end (the lead's training shares the machine).

`--floor N` (docker) measures, in the same run, what no verdict can go below: N container lifecycles
(create, start, one `true` exec, remove) with docker's defaults, and N with the backend's own containment
(`backend.create` + `exec` + `close`: capabilities, seccomp, quota volume), median wall and work CPU each,
and the docker execs one verdict makes; 2 cores / (CPU of one lifecycle) bounds verdicts/s when every
sample gets its own container.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gymnasium as gym

import pivot_envs  # noqa: F401
from benchmarks._common import table, write_json
from pivot_envs import sandboxed_env
from pivot_envs.base_env import pivot_env
from pivot_envs.domains.terminal.tasks import builtin_trajectories
from pivot_envs.parsing import render_bash_call
from pivot_envs.sandboxed_env import release_shared_sandbox, shared_sandbox
from pivot_envs.trajectory import load_trajectories, tool_calls_of

TRAJECTORY, TURN = "terminal-config_edit-0", 2


def group_actions(reference_cmd: str) -> list[str]:
    """16 distinct actions, none identical to the demonstration's command: 8 equivalent, 8 wrong."""
    equivalent = [f"{reference_cmd} # sample {i}" for i in range(4)] + [
        f"true; {reference_cmd}", f"{reference_cmd}; true", f"{reference_cmd} && true", f"( {reference_cmd} )"]
    wrong = ["ls -la", "pwd", "cat service.ini", "grep -n host service.ini", "echo sample > note.txt",
             "touch service.ini.bak", "sed -i 's/15/16/' service.ini", "head -n 3 service.ini"]
    return [render_bash_call(c) for c in equivalent + wrong]


def process_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) of every process."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        out[int(pid)] = (head.split("(", 1)[1], (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_seconds() -> tuple[float, float, dict[int, tuple[str, float]]]:
    """(this process + its waited-for children, the whole machine) CPU seconds so far, and per process."""
    t = os.times()
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
    return (t.user + t.system + t.children_user + t.children_system, busy / os.sysconf("SC_CLK_TCK"),
            process_cpu())


def work_cpu(start: tuple, end: tuple) -> float:
    """The machine's CPU seconds between `start` and `end` less what other Python processes (the
    lead's training jobs) used meanwhile: the verdicts' own cost, kernel, bwrap and docker daemons included."""
    others = sum(end[2][pid][1] - cpu for pid, (name, cpu) in start[2].items()
                 if pid != os.getpid() and name.startswith("python") and end[2].get(pid, ("",))[0] == name)
    return end[1] - start[1] - others


class Phases:
    """Wall time per phase of one env's verdicts (wrapping the env's and its forks' own methods)."""

    def __init__(self, core) -> None:
        self.seconds: Counter[str] = Counter()
        self._lock = threading.Lock()
        fork_state = core.fork_state

        def fork(state):
            box = self.timed("fork", fork_state)(state)
            box.close = self.timed("close", box.close)  # this fork's close only
            return box

        core.fork_state = fork
        core.exec_in = self.timed("command(s)", core.exec_in)
        core.verifier._run_reference = self.timed("reference runs (3 forks, once)", core.verifier._run_reference)

    def timed(self, phase: str, fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[phase] += time.perf_counter() - t0
        return run


class ExecCounter:
    """Counts docker execs (DockerSandbox._run calls) while installed."""

    def __init__(self) -> None:
        from pivot_envs.sandbox.docker.sandbox import DockerSandbox

        self.calls = 0
        self._cls, self._orig = DockerSandbox, DockerSandbox._run

        def counted(box, *args, **kwargs):
            self.calls += 1
            return self._orig(box, *args, **kwargs)

        DockerSandbox._run = counted  # type: ignore[method-assign,assignment]

    def remove(self) -> None:
        self._cls._run = self._orig  # type: ignore[method-assign]


def floor(n: int) -> dict:
    """Median wall and work CPU of one container lifecycle, docker defaults vs the backend's containment."""
    import docker

    from pivot_envs.sandbox.docker.backend import DockerBackend

    client = docker.from_env()
    backend = DockerBackend()
    out: dict = {}
    try:
        def plain() -> None:
            c = client.containers.create(backend.image, ["sleep", "infinity"], network_mode="none")
            c.start()
            c.exec_run(["true"])
            c.remove(force=True)

        def contained() -> None:
            box = backend.create()
            box.exec("true")
            box.close()

        for name, cycle in (("docker defaults", plain), ("backend containment", contained)):
            cycle()  # warm-up, not measured
            walls, cpus = [], []
            for _ in range(n):
                c0, t0 = cpu_seconds(), time.perf_counter()
                cycle()
                walls.append(time.perf_counter() - t0)
                cpus.append(work_cpu(c0, cpu_seconds()))
            out[name] = {"n": n, "wall_s": statistics.median(walls), "work_cpu_s": statistics.median(cpus)}
    finally:
        backend.close()
    return out


def measure(backend, trajs, workers: int, with_phases: bool) -> dict:
    """One group's verdicts on `backend` (a name, or a backend object for an A/B of its options)."""
    env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=backend, trajectory=TRAJECTORY,
                   reset_to_turn=TURN, verdict_workers=workers)
    try:
        _, info = env.reset()
        core = pivot_env(env)
        actions = group_actions(tool_calls_of(info["reference"])[0].arguments["command"])
        phases = Phases(core) if with_phases else None
        execs = ExecCounter() if backend == "docker" else None
        measure_files = sandboxed_env.measure_files
        if phases is not None:
            sandboxed_env.measure_files = phases.timed("effect measurement", measure_files)  # type: ignore[assignment]
        try:
            cpu0, t0 = cpu_seconds(), time.perf_counter()
            verdicts = core.judge_actions(actions)
            wall, cpu1 = time.perf_counter() - t0, cpu_seconds()
        finally:
            sandboxed_env.measure_files = measure_files  # type: ignore[assignment]
            if execs is not None:
                execs.remove()
        masked = sum(v.masked for v in verdicts)
        return {"verdicts": len(verdicts), "seconds": wall, "per_second": len(verdicts) / wall, "masked": masked,
                "correct": sum(v.reward == 1.0 for v in verdicts), "forks": core.costs.rollout_turns,
                "cpu_process": cpu1[0] - cpu0[0], "cpu_machine": cpu1[1] - cpu0[1], "cpu_work": work_cpu(cpu0, cpu1),
                "phases": dict(phases.seconds) if phases is not None else {},
                "docker_execs": execs.calls if execs is not None else None}
    finally:
        env.close()


def bench(kinds: dict[str, Any], workers: list[int], rounds: int) -> dict[str, dict]:
    """label -> workers -> runs, for backends given by name or as objects; rounds alternate between
    the backends, so that machine load hits all alike."""
    trajs = load_trajectories(builtin_trajectories("train"))
    runs: dict[str, dict[int, list[dict]]] = {label: {w: [] for w in workers} for label in kinds}
    for kind in kinds.values():
        shared_sandbox(kind, user=True)  # one backend per kind for every measurement: snapshots stay built
    try:
        for kind in kinds.values():
            measure(kind, trajs, 1, False)  # builds the state's snapshot (not measured)
        for _ in range(rounds):
            for label, kind in kinds.items():
                for w in workers:
                    runs[label][w].append(measure(kind, trajs, w, with_phases=(w == 1)))
        return {label: {str(w): r for w, r in by_w.items()} for label, by_w in runs.items()}
    finally:
        for kind in kinds.values():
            release_shared_sandbox(kind)
            if not isinstance(kind, str):
                kind.close()


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["local", "docker"])
    ap.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--floor", type=int, default=0, help="container lifecycles to measure (docker; 0 = none)")
    ap.add_argument("--local-fork-pool-ab", action="store_true",
                    help="also the local backend without its fork pool (fork_pool=0), rounds alternating")
    args = ap.parse_args()
    results: dict = {"trajectory": TRAJECTORY, "turn": TURN, "group": 16, "load_start": os.getloadavg()}
    print(f"load average at start (1/5/15 min): {' '.join(f'{x:.2f}' for x in results['load_start'])}")
    kinds: dict[str, Any] = {b: b for b in args.backends}
    if args.local_fork_pool_ab:  # the same backend without its fork pool, alternating with "local"
        from pivot_envs.sandbox.local import LocalBackend

        kinds.setdefault("local", "local")
        kinds["local, fork_pool=0"] = LocalBackend(fork_pool=0)
    results.update(bench(kinds, args.workers, args.rounds))
    args.backends = list(kinds)
    if args.floor and "docker" in args.backends:
        results["floor"] = floor(args.floor)
    results["load_end"] = os.getloadavg()
    rows = []
    for b in args.backends:
        for w, runs in results[b].items():
            med = functools.partial(median_of, runs)
            n = runs[0]["verdicts"]
            rows.append([b, "one after another" if w == "1" else f"parallel, {w}", f"{med('per_second'):.1f}",
                         f"{min(r['per_second'] for r in runs):.1f}-{max(r['per_second'] for r in runs):.1f}",
                         f"{1000 * med('cpu_process') / n:.0f}", f"{1000 * med('cpu_work') / n:.0f}",
                         f"{1000 * med('cpu_machine') / n:.0f}",
                         sum(r["masked"] for r in runs), runs[0]["correct"]])
    print(table(["backend", "verdicts", "verdicts/s (median)", "range", "process CPU ms/verdict",
                 "work CPU ms/verdict", "machine CPU ms/verdict", "masked", "correct of 16"], rows))
    print("process: this process and its children (bwrap, commands); work: the machine less other Python "
          "processes (the training jobs), i.e. with kernel and docker daemons; machine: everything.")
    for b in args.backends:
        seq = results[b].get("1")
        if seq:
            wall = statistics.median(r["seconds"] for r in seq)
            phases = Counter[str]()
            for r in seq:
                phases.update(r["phases"])
            parts = ", ".join(f"{k} {1000 * v / len(seq):.0f} ms" for k, v in phases.most_common())
            print(f"{b}, one after another, per group of 16 (median wall {1000 * wall:.0f} ms): {parts}")
    if "floor" in results:
        seq = results["docker"].get("1") or next(iter(results["docker"].values()))
        per_verdict = statistics.median(r["docker_execs"] for r in seq) / seq[0]["verdicts"]
        print(f"docker: {per_verdict:.1f} docker execs per verdict (reference runs included, one after another)")
        for name, f in results["floor"].items():
            print(f"docker floor, one container lifecycle ({name}; create, start, 1 exec, remove; n = {f['n']}): "
                  f"median wall {1000 * f['wall_s']:.0f} ms, work CPU {1000 * f['work_cpu_s']:.0f} ms "
                  f"-> at most {2 / max(f['work_cpu_s'], 1e-9):.1f} lifecycles/s on 2 cores")
    print(f"load average at end (1/5/15 min): {' '.join(f'{x:.2f}' for x in results['load_end'])}")
    print(f"\nwrote {write_json('verifier_group', results)}")


if __name__ == "__main__":
    main()
