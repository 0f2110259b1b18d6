"""Env demo: reset PivotTerminal-v0 to several turns of a built-in trajectory and print the verifier's
verdict for the demonstration's action and for a few variants of it.

    python -m pivot_envs.demo --sandbox docker     # or --sandbox local
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import pivot_envs  # noqa: F401  (registers the envs)
from pivot_envs.base_env import pivot_env
from pivot_envs.parsing import render_bash_call, render_tool_call
from pivot_envs.sandbox import backend_names
from pivot_envs.trajectory import tool_calls_of


def variants(reference: dict) -> list[tuple[str, str]]:
    """(label, model text) pairs to judge at a turn whose demonstration action is `reference`."""
    calls = tool_calls_of(reference)
    call = render_bash_call
    if not calls:
        return [("plain message", "All done."), ("needless command", call("ls"))]
    cmd = calls[0].arguments["command"]
    return [
        ("demonstration", call(cmd)),
        ("same, extra spaces + ' ; true'", call(f"  {cmd} ; true")),
        ("different command", call("echo something-else > /dev/null; ls /")),
        ("plain message", "I think the task is done."),
        ("malformed tool call", '<tool_call>{"name": "bash", "arguments": </tool_call>'),
        ("unknown tool", render_tool_call("python", {"code": "1"})),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sandbox", default="docker", choices=backend_names())
    ap.add_argument("--trajectory", default=0, help="index or id of a built-in train trajectory")
    ap.add_argument("--turns", type=int, default=4, help="how many turns to visit (spread over the trajectory)")
    args = ap.parse_args(argv)
    which = int(args.trajectory) if str(args.trajectory).isdigit() else args.trajectory
    env = gym.make("PivotTerminal-v0", sandbox=args.sandbox, trajectory=which)
    try:
        _, info = env.reset()
        n = info["num_turns"]
        turns = sorted({round(i * (n - 1) / max(1, args.turns - 1)) for i in range(args.turns)})
        print(f"trajectory {info['trajectory_id']}: {n} turns; visiting {turns} on the {args.sandbox} backend")
        for k in turns:
            t0 = time.perf_counter()
            _, info = env.reset(options={"turn": k})
            print(f"\n== turn {k}  (reset {1000 * (time.perf_counter() - t0):.0f} ms)")
            ref = info["reference"]
            shown = tool_calls_of(ref)[0].arguments["command"] if ref.get("tool_calls") else ref.get("content")
            print(f"   demonstration: {shown[:100]!r}")
            verdicts = pivot_env(env).judge_actions([text for _, text in variants(ref)])
            for (label, _), v in zip(variants(ref), verdicts):
                flag = "MASKED" if v.masked else f"{v.reward:.0f}"
                print(f"   {label:<32} reward={flag:<6} {v.reason[:90]}")
        print(f"\ncosts: {pivot_env(env).costs.as_dict()}")
    finally:
        env.close()


if __name__ == "__main__":
    main()
