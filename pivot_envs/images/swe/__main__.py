"""`python -m pivot_envs.images.swe [NAME ...] [--force]` (in a checkout also `python -m sandboxes.swe`): build the
SWE repository images (cached)."""

from __future__ import annotations

import argparse
import logging
import sys

from pivot_envs.images.build import ImageBuildError
from pivot_envs.images.swe.repos import REPOS, build_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pivot_envs.images.swe", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"repositories (default: all of {sorted(REPOS)})")
    parser.add_argument("--force", action="store_true", help="rebuild images that exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        for tag in build_all(args.names or None, force=args.force):
            print(tag)
    except (ImageBuildError, ValueError) as e:
        logging.getLogger("pivot_envs.images.swe").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
