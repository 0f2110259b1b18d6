"""Reward of constant-message policies on the message turns, per domain (issue 8: the 95% rule).

A constant policy answers every message turn with the same text ("ok", "Done.", ...). Where the
demonstration's message carries content, such a reply must earn nothing: its reward must be 0 on at
least 95% of the message turns of each domain. Measured on

- tool use: every message turn (closing and clarifying) of the 800 BFCL multi-turn entries,
  `PivotToolUse-v0` with its default verifier (and, as named comparisons, `exact` and the paper's
  rule, which accepts any message by design and so is not held to the rule);
- terminal: the message turns (the final "done" turns) of the built-in trajectories,
  `PivotTerminal-v0` with `sandbox="local"` and its default verifier (and `exact`).

Each turn is one `reset` and one `judge_actions` over all constants plus the demonstration's own
message (which must score 1). Masked verdicts (infrastructure failures) are counted apart, never
as 0. Prints a table (domain x constant -> mean reward, n, 95% Wilson interval, share of turns with
reward 0) and writes benchmarks/results/constant_messages.json.

    .venv/bin/python benchmarks/constant_messages.py                      # everything (~minutes)
    .venv/bin/python benchmarks/constant_messages.py --tooluse-limit 10 --terminal-limit 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import RESULTS, table, write_json
from pivot_algo.experiments.stats import wilson

CONSTANTS = ("ok", "Done.", "Could you clarify?", "Sure.", "I have completed the task.", "",
             "The weather is nice today.")
DEMONSTRATION = "(demonstration)"
ZERO_SHARE_REQUIRED = 0.95
TERMINAL_SPLITS = ("train", "val", "test", "heldout_families")


def message_turns(env: Any) -> list[tuple[str, int]]:
    """(trajectory id, turn) of every turn whose demonstration is a plain message."""
    base = env.unwrapped
    return [(t.id, k) for t in base.trajectories for k in range(t.num_turns) if not t.reference(k).get("tool_calls")]


def judge_constants(env: Any, turns: Iterable[tuple[str, int]], constants: Sequence[str] = CONSTANTS
                    ) -> dict[str, list[float | None]]:
    """{constant or DEMONSTRATION: one reward per turn (None = masked)} for `turns` of `env`."""
    out: dict[str, list[float | None]] = {c: [] for c in (*constants, DEMONSTRATION)}
    base = env.unwrapped
    turns = list(turns)
    for i, (tid, k) in enumerate(turns):
        if i and i % 100 == 0:
            print(f"  {type(base).__name__}: {i}/{len(turns)} turns", file=sys.stderr, flush=True)
        _, info = env.reset(options={"trajectory": tid, "turn": k})
        verdicts = base.judge_actions([*constants, info["reference"]])
        for c, v in zip((*constants, DEMONSTRATION), verdicts):
            out[c].append(None if v.masked else float(v.reward))
    return out


def summarise(rewards: list[float | None]) -> dict[str, Any]:
    scored = [r for r in rewards if r is not None]
    n = len(scored)
    ones = sum(r > 0 for r in scored)
    zeros = n - ones
    lo, hi = wilson(ones, n)
    zlo, zhi = wilson(zeros, n)
    return {"n": n, "masked": len(rewards) - n, "mean_reward": ones / n if n else float("nan"),
            "ci95": [lo, hi], "zero_share": zeros / n if n else float("nan"), "zero_share_ci95": [zlo, zhi]}


def measure(name: str, env: Any, turns: list[tuple[str, int]], constants: Sequence[str] = CONSTANTS,
            kinds: dict[tuple[str, int], str] | None = None) -> list[dict]:
    """One row for all `turns`, plus one per message kind when `kinds` ({turn: kind}) is given."""
    t0 = time.perf_counter()
    rewards = judge_constants(env, turns, constants)
    seconds = time.perf_counter() - t0
    rows = [{"domain": name, "turns": len(turns), "seconds": seconds,
             "per_constant": {c: summarise(r) for c, r in rewards.items()}}]
    for kind in sorted(set((kinds or {}).values())):
        idx = [i for i, t in enumerate(turns) if (kinds or {}).get(t) == kind]
        rows.append({"domain": f"{name}/{kind}", "turns": len(idx), "seconds": None,
                     "per_constant": {c: summarise([r[i] for i in idx]) for c, r in rewards.items()}})
    return rows


def sample_turns(turns: list[tuple[str, int]], limit: int | None, seed: int = 0) -> list[tuple[str, int]]:
    if limit is None or limit >= len(turns):
        return turns
    return sorted(random.Random(seed).sample(turns, limit))


def tooluse_rows(verifiers: Sequence[str], limit_per_category: int | None) -> list[dict]:
    import gymnasium as gym

    import pivot_envs  # noqa: F401 - registers the envs
    from pivot_envs.domains.tooluse import bfcl

    out = []
    trajs = bfcl.load_suite(limit=limit_per_category)
    for verifier in verifiers:
        env = gym.make("PivotToolUse-v0", trajectories=trajs, verifier=verifier)
        try:
            base: Any = env.unwrapped
            kinds = {(t.id, int(k)): kind for t in base.trajectories
                     for k, kind in t.task["message_turns"].items()}
            out += measure(f"tooluse[{verifier}]", env, message_turns(env), kinds=kinds)
        finally:
            env.close()
    return out


def terminal_rows(verifiers: Sequence[str], limit: int | None, sandbox: str = "local") -> list[dict]:
    import gymnasium as gym

    import pivot_envs  # noqa: F401
    from pivot_envs.domains.terminal.tasks import builtin_trajectories

    trajs = [t for split in TERMINAL_SPLITS for t in builtin_trajectories(split)]
    out = []
    for verifier in verifiers:
        env = gym.make("PivotTerminal-v0", trajectories=trajs, sandbox=sandbox, verifier=verifier)
        try:
            out += measure(f"terminal[{verifier}]", env, sample_turns(message_turns(env), limit))
        finally:
            env.close()
    return out


def print_table(rows: list[dict]) -> None:
    body = []
    for row in rows:
        for c, s in row["per_constant"].items():
            body.append([row["domain"], repr(c), f"{s['mean_reward']:.3f}", s["n"], s["masked"],
                         f"[{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]", f"{s['zero_share']:.3f}"])
    print(table(["domain", "constant", "mean reward", "n", "masked", "95% CI", "share 0"], body))


# the paper's tool-use rule accepts any message by design: reported for comparison, not held to the rule
NOT_HELD = ("tooluse[paper]",)


def rule_holds(row: dict, constants: Sequence[str] = CONSTANTS) -> bool:
    return all(row["per_constant"][c]["zero_share"] >= ZERO_SHARE_REQUIRED for c in constants)


def verdict_line(row: dict) -> str:
    held = rule_holds(row)
    note = " (the paper's any-message rule: a baseline, not held to it)" if row["domain"].startswith(NOT_HELD) else ""
    took = f", {row['seconds']:.1f} s" if row["seconds"] is not None else ""
    return f"{row['domain']}: 95% rule {'holds' if held else 'FAILS'}{note} ({row['turns']} turns{took})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tooluse-limit", type=int, default=None, help="entries per BFCL category (default: all 200)")
    ap.add_argument("--terminal-limit", type=int, default=None, help="terminal message turns (default: all)")
    ap.add_argument("--tooluse-verifiers", default="functional,exact,paper")
    ap.add_argument("--terminal-verifiers", default="execution,exact")
    ap.add_argument("--sandbox", default="local")
    ap.add_argument("--skip-terminal", action="store_true")
    ap.add_argument("--skip-tooluse", action="store_true")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of the existing JSON for the domains not measured in this run")
    ap.add_argument("--merge-from", default=None,
                    help="a JSON written by another run whose rows fill the domains not measured here")
    ap.add_argument("--name", default="constant_messages", help="results file name (benchmarks/results/NAME.json)")
    a = ap.parse_args()
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows = [] if a.skip_tooluse else tooluse_rows(a.tooluse_verifiers.split(","), a.tooluse_limit)
    if not a.skip_terminal:
        rows += terminal_rows(a.terminal_verifiers.split(","), a.terminal_limit, a.sandbox)
    source = Path(a.merge_from) if a.merge_from else RESULTS / f"{a.name}.json" if a.merge else None
    if source is not None and source.exists():
        measured = {r["domain"].split("[")[0] for r in rows}
        old = json.loads(source.read_text())["rows"]
        rows = [r for r in old if r["domain"].split("[")[0] not in measured] + rows
    print(f"load average before: {load0}, after: {os.getloadavg()}, {time.perf_counter() - t0:.0f} s")
    print_table(rows)
    for row in rows:
        print(verdict_line(row))
    path = write_json(a.name, {
        "constants": list(CONSTANTS), "zero_share_required": ZERO_SHARE_REQUIRED,
        "load_average": {"before": load0, "after": os.getloadavg()},
        "rows": [{**row, "rule_holds": rule_holds(row)} for row in rows]})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
