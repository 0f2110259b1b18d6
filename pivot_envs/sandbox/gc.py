"""`pivotrl sandbox gc`: remove what killed pivotrl runs left behind, on both backends.

A run that dies without closing its backend (SIGKILL, OOM, power loss) can leave docker containers
and snapshot images, local overlay/volume mounts, loop devices, cgroups and state dirs. Everything a
backend creates carries its owner: docker objects the labels `pivotrl.pid`/`pivotrl.host`, local
state dirs an `owner.pid` file. This removes what belongs to processes that no longer exist and
never touches the sandboxes of live processes. A new backend instance does the same for its
backend when it starts; this command does it on demand, for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile

from pivot_envs.errors import SandboxUnavailableError

log = logging.getLogger(__name__)


def local_state_parents() -> list[str]:
    """Where local backends put their state dirs (see LocalBackend's `root` argument)."""
    parents = [tempfile.gettempdir()]
    if os.environ.get("PIVOTRL_CACHE"):
        parents.append(os.path.join(os.environ["PIVOTRL_CACHE"], "local"))
    return parents


def collect(docker: bool = True, local: bool = True) -> dict[str, dict[str, int] | str]:
    """Reap dead runs' leftovers; returns what was removed per backend (or why it was skipped)."""
    report: dict[str, dict[str, int] | str] = {}
    if local:
        from pivot_envs.sandbox.local_backend import sweep_stale_roots

        removed = 0
        for parent in local_state_parents():
            if os.path.isdir(parent):
                removed += sweep_stale_roots(parent)
        report["local"] = {"state_dirs": removed}
    if docker:
        try:
            from pivot_envs.sandbox.docker_backend import remove_stale

            report["docker"] = remove_stale()
        except SandboxUnavailableError as e:
            report["docker"] = f"skipped: {e}"
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pivotrl sandbox gc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("all", "docker", "local"), default="all")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    report = collect(docker=args.backend in ("all", "docker"), local=args.backend in ("all", "local"))
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
