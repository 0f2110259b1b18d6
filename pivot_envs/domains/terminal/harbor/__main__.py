"""`python -m pivot_envs.domains.terminal.harbor convert DIR --out FILE.jsonl`: convert a directory of
Harbor / Terminal-Bench task folders (resumable; prints the summary table)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pivot_envs.domains.terminal.harbor.folder import (
    convert_folder,
    episode_only_path,
    status_path,
)
from pivot_envs.errors import PivotError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pivot_envs.domains.terminal.harbor",
                                     description="Convert Harbor / Terminal-Bench task folders into trajectories.")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("convert", help="convert every task folder under DIR")
    conv.add_argument("dir", type=Path, help="a task folder or a folder of task folders (searched recursively)")
    conv.add_argument("--out", type=Path, required=True, help="trajectories JSONL (status goes next to it)")
    conv.add_argument("--backend", default="docker", help="sandbox backend (task images need docker)")
    conv.add_argument("--fallback-base", default=None,
                      help="image that replaces FROM images that cannot be pulled (default: the sandbox base)")
    conv.add_argument("--internet-tasks", choices=("refuse", "offline"), default="offline",
                      help="tasks declaring allow_internet = true: convert offline, kept (flagged declares_internet) "
                           "only when they pass offline (default), or refuse them before any build")
    conv.add_argument("--no-resume", action="store_true", help="start over instead of skipping finished tasks")
    conv.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = convert_folder(args.dir, args.backend, out=args.out, resume=not args.no_resume,
                                progress=not args.quiet, fallback_base=args.fallback_base,
                                internet_tasks=args.internet_tasks)
    except PivotError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.table())
    print(f"\n{len(report.trajectories)} trajectories -> {args.out}; {len(report.episode_tasks)} episode-only "
          f"tasks -> {episode_only_path(args.out)}; per-task status -> {status_path(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
