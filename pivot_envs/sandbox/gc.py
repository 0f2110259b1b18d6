"""`pivotrl sandbox gc`: remove what killed pivotrl runs left behind, on every sandbox backend.

A run that dies without closing its backend (SIGKILL, OOM, power loss) can leave docker containers
and snapshot images, local overlay/volume mounts, loop devices, cgroups and state dirs. Everything a
backend creates carries its owner (docker objects the labels `pivotrl.pid`/`pivotrl.host`, state
dirs an `owner.pid` file), and each backend class says how it reaps (`capabilities`,
`reap_stale`). This removes what belongs to processes that no longer exist and never touches the
sandboxes of live processes. A new backend instance does the same for its backend when it starts;
this command does it on demand, for every registered backend or the one named.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterable

from pivot_envs.errors import SandboxUnavailableError
from pivot_envs.sandbox.registry import backend_class, backend_names

log = logging.getLogger(__name__)


def collect(backends: Iterable[str] | None = None) -> dict[str, dict[str, int] | str]:
    """Reap dead runs' leftovers of `backends` (default: all registered); returns what was
    removed per backend (or why it was skipped)."""
    report: dict[str, dict[str, int] | str] = {}
    for name in backends if backends is not None else backend_names():
        try:
            report[name] = backend_class(name).reap_stale()
        except SandboxUnavailableError as e:
            report[name] = f"skipped: {e}"
    return report


def main(argv: list[str] | None = None) -> int:
    names = backend_names()
    parser = argparse.ArgumentParser(prog="pivotrl sandbox gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("all", *names), default="all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    report = collect(None if args.backend == "all" else [args.backend])
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
