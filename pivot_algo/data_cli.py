"""`pivotrl data convert|validate|stats`: bring a trajectory file in, check it, see what it holds.

    pivotrl data convert --from chat mine.jsonl --out trajectories.jsonl     # import (chat, sharegpt, nemo_gym, atif, pivotrl)
    pivotrl data convert --to nemo_gym trajectories.jsonl --out rows.jsonl  # export (optionally --pivots profile.jsonl)
    pivotrl data convert --from atif run.json --task-dir TASK --out t.jsonl # agent runs on a Harbor task -> terminal
    pivotrl data validate trajectories.jsonl [--from FORMAT] [--verifier canonical] [--replay]
    pivotrl data stats trajectories.jsonl [--from FORMAT]

A data error (a record that cannot be read) is one line naming the file, line and field, exit 2.
`validate` prints a table of every failure and exits 1 when anything failed, 0 when all passed.
The formats: `pivot_envs/formats/` and `docs/trajectory_format.md`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from pivot_envs.errors import PivotError
from pivot_envs.sandbox import backend_names

FORMATS = ("pivotrl", "chat", "sharegpt", "nemo_gym", "atif")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pivotrl data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    conv = sub.add_parser("convert", help="import a file into pivotrl trajectories, or export them (--to)")
    conv.add_argument("input", help="input file (JSON Lines, or one JSON array)")
    conv.add_argument("--from", dest="fmt", default="pivotrl", choices=FORMATS, help="input format (default pivotrl)")
    conv.add_argument("--to", default="pivotrl", choices=("pivotrl", "nemo_gym"), help="output format (default pivotrl)")
    conv.add_argument("--out", required=True, help="output file")
    conv.add_argument("--pivots", help="with --to nemo_gym: a profile.jsonl; export only its pivot states")
    conv.add_argument("--lambda-diff", type=float, default=0.6, help="with --pivots: the profile's pivot threshold")
    conv.add_argument("--agent", default=None, help="with --to nemo_gym: agent_ref name of exported rows")
    conv.add_argument("--task-dir", default=None,
                      help="with --from atif: the Harbor / Terminal-Bench task folder the runs were recorded on; "
                           "the runs become terminal trajectories of that task, checked by replaying them there")
    conv.add_argument("--backend", default="docker", choices=backend_names(),
                      help="with --task-dir: where the runs are checked (docker builds the task's image; local "
                           "reads its Dockerfile as a recipe on the host's tools)")
    val = sub.add_parser("validate", help="load-time checks, then the demonstration scored against itself at every turn")
    val.add_argument("input")
    val.add_argument("--from", dest="fmt", default="pivotrl", choices=FORMATS)
    val.add_argument("--verifier", default=None, help="the env's verifier (default: the domain's default)")
    val.add_argument("--sandbox", default=None, help="sandbox backend for terminal / SWE data (docker, local)")
    val.add_argument("--replay", action="store_true", help="also replay each demonstration as a whole episode")
    val.add_argument("--no-progress", action="store_true")
    st = sub.add_parser("stats", help="turns, tool-call vs message turns, domains, tools")
    st.add_argument("input")
    st.add_argument("--from", dest="fmt", default="pivotrl", choices=FORMATS)
    return parser


def _pivot_turns(profile_path: str, lambda_diff: float) -> dict[str, list[int]]:
    from pivot_algo.profiler import read_profile

    turns: dict[str, list[int]] = {}
    for state in read_profile(profile_path):
        if state.is_pivot(lambda_diff):
            turns.setdefault(state.trajectory_id, []).append(state.turn)
    return turns


def _convert(args: argparse.Namespace) -> int:
    from pivot_envs.formats import export_file, import_file

    if args.task_dir is not None:
        return _convert_runs(args)
    trajectories = import_file(args.fmt, args.input)
    turns = _pivot_turns(args.pivots, args.lambda_diff) if args.pivots else None
    agent = {"type": "responses_api_agents", "name": args.agent} if args.agent else None
    n = export_file(trajectories, args.out, to=args.to, turns=turns, agent_ref=agent)
    what = "rows" if args.to == "nemo_gym" else "trajectories"
    print(f"pivotrl data convert: {len(trajectories)} trajectories read from {args.input} ({args.fmt}); "
          f"{n} {what} written to {args.out} ({args.to})")
    return 0


def _convert_runs(args: argparse.Namespace) -> int:
    from pivot_envs.domains.terminal.harbor.agent_runs import convert_agent_runs
    from pivot_envs.trajectory import load_trajectories, save_jsonl

    if args.fmt != "atif" or args.to != "pivotrl":
        raise PivotError("--task-dir pairs ATIF agent runs with their task: use it with --from atif (and no --to)")
    trajectories = load_trajectories(convert_agent_runs(args.input, args.task_dir, args.backend))
    save_jsonl(trajectories, args.out)
    turns = sum(t.num_turns for t in trajectories)
    print(f"pivotrl data convert: {len(trajectories)} agent runs read from {args.input} (atif) on the task "
          f"{args.task_dir}, replayed on {args.backend} and passing its test; {len(trajectories)} terminal "
          f"trajectories ({turns} turns) written to {args.out}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pivot_envs.validate import validate_file

    kwargs = {k: v for k, v in (("verifier", args.verifier), ("sandbox", args.sandbox)) if v is not None}
    report = validate_file(args.input, args.fmt, kwargs, replay=args.replay, progress=not args.no_progress)
    print(report.table())
    return 0 if report.ok else 1


def _stats(args: argparse.Namespace) -> int:
    from pivot_envs.formats import import_file
    from pivot_envs.validate import stats

    counts = stats(import_file(args.fmt, args.input))
    width = max(len(k) for k in counts)
    for key, value in counts.items():
        print(f"{key:<{width}}  {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        return {"convert": _convert, "validate": _validate, "stats": _stats}[args.action](args)
    except (PivotError, FileNotFoundError) as e:  # bad data or a data/verifier mismatch: one line, no traceback
        print(f"pivotrl data {args.action}: data error: {e}", file=sys.stderr)
        return 2


__all__ = ["FORMATS", "main"]
