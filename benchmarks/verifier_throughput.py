"""Terminal verifier throughput: verdicts per second per sandbox backend, cold (every verdict runs
the commands in forks; snapshots already built) and with the verdict cache (same actions again),
and the same measurement for a baseline verifier, side by side in one run.

    python benchmarks/verifier_throughput.py --backends local docker --states 10
    python benchmarks/verifier_throughput.py --baseline a401cd9     # the verifier before issue 8's fixes

The baseline runs in a subprocess from a `git worktree` of `--baseline` (default: the commit before
the verifier fixes: one reference run, workdir only, last exit status, no identical-action shortcut)
with the *current* `pivot_envs/sandbox/` copied over it, so the two columns differ only in the
verifier and env code, not in the sandboxes. Runs alternate (baseline, current) per backend; the
machine load is printed with every row. `--baseline none` measures the current code only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gymnasium as gym

import pivot_envs  # noqa: F401
from benchmarks._common import table, write_json
from pivot_envs.base_env import pivot_env
from pivot_envs.parsing import render_bash_call
from pivot_envs.trajectory import load_trajectories, tool_calls_of

REPO = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE = "a401cd9"  # "Shared env core": the env/verifier as they were before issue 8's fixes


def actions_for(reference: dict) -> list[str]:
    call = render_bash_call
    calls = tool_calls_of(reference)
    if not calls:
        return ["Done.", call("ls")]
    cmd = calls[0].arguments["command"]
    return [call(cmd), call(cmd + " ; true"), call("ls -a"), call("echo nope > /dev/null")]


def bench(backend: str, n_states: int) -> dict:
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    trajs = load_trajectories(builtin_trajectories("train"))
    states = [(t.id, k) for t in trajs for k in range(t.num_turns)][:n_states]
    env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=backend)
    try:
        for tid, k in states:  # build snapshots first: this benchmark is about verdicts, not replay
            env.reset(options={"trajectory": tid, "turn": k})
        result: dict = {"load_before": os.getloadavg()}
        for phase in ("cold", "cached"):
            n, t0 = 0, time.perf_counter()
            for tid, k in states:
                _, info = env.reset(options={"trajectory": tid, "turn": k})
                n += len(pivot_env(env).judge_actions(actions_for(info["reference"])))
            dt = time.perf_counter() - t0
            result[phase] = {"verdicts": n, "seconds": dt, "per_second": n / dt}
        result["cache_hits"] = pivot_env(env).verdict_cache.hits
        result["load_after"] = os.getloadavg()
        return result
    finally:
        env.close()


def baseline_worktree(rev: str) -> Path:
    """A checkout of `rev` with the current sandbox package copied over it."""
    path = Path(tempfile.mkdtemp(prefix="pivotrl-baseline-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(path), rev], check=True,
                   capture_output=True)
    shutil.rmtree(path / "pivot_envs" / "sandbox")
    shutil.copytree(REPO / "pivot_envs" / "sandbox", path / "pivot_envs" / "sandbox")
    return path


def bench_in(tree: Path, backend: str, n_states: int) -> dict:
    """`bench` run by the code in `tree` (a subprocess with `tree` first on the path)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1] + '/benchmarks'); sys.path.insert(0, sys.argv[1]);"
            "import pivot_envs; assert pivot_envs.__file__.startswith(sys.argv[1]), pivot_envs.__file__;"
            "from verifier_throughput import bench; print('RESULT ' + json.dumps(bench(sys.argv[2], int(sys.argv[3]))))")
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", code, str(tree), backend, str(n_states)], cwd=tree, env=env,
                         capture_output=True, text=True, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"baseline run failed (exit {out.returncode}): {out.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["local", "docker"])
    ap.add_argument("--states", type=int, default=10)
    ap.add_argument("--baseline", default=DEFAULT_BASELINE, help="git revision of the baseline verifier, or 'none'")
    args = ap.parse_args()
    tree = None if args.baseline == "none" else baseline_worktree(args.baseline)
    results: dict = {"baseline": args.baseline, "states": args.states}
    try:
        for b in args.backends:
            if tree is not None:
                load = os.getloadavg()
                results[f"{b}/baseline"] = {"load_before": load, **bench_in(tree, b, args.states)}
            results[f"{b}/current"] = bench(b, args.states)
    finally:
        if tree is not None:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)
    rows = []
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        rows.append([name, r["cold"]["verdicts"], f"{r['cold']['per_second']:.1f}", f"{r['cached']['per_second']:.0f}",
                     " ".join(f"{x:.2f}" for x in r["load_before"])])
    print(table(["backend/verifier", "verdicts", "cold verdicts/s", "cached verdicts/s", "load (1/5/15 min)"], rows))
    for b in args.backends:
        if f"{b}/baseline" in results:
            ratio = results[f"{b}/current"]["cold"]["per_second"] / results[f"{b}/baseline"]["cold"]["per_second"]
            print(f"{b}: current / baseline cold throughput = {ratio:.2f}x")
    print(f"\nwrote {write_json('verifier_throughput', results)}")


if __name__ == "__main__":
    main()
