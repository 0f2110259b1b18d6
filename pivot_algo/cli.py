"""`pivotrl profile|train|eval|run --config preset.yaml [key=value ...]`, `pivotrl data ...`, `pivotrl table ...`, `pivotrl sandbox gc`.

A preset (see pivot_algo/presets/) names the env, the model, the data split and every stage's
settings; `key=value` overrides any entry by its dotted path (values are parsed as YAML, e.g.
`trainers.pivotrl.steps=4 model=tiny`).

- `profile`: profile pivots of the start policy on the training and held-out splits.
- `train`: train the preset's `algo` from `model` (profiling first when the algorithm needs pivots).
- `eval`: evaluate `model` (a spec or a saved policy directory) on the held-out split.
- `plugins: [path/to/file.py, some.module]` in the config imports algorithm plug-ins first, so
  `algo=` can name an algorithm registered outside the package.
- `run`: the SFT-vs-PivotRL comparison: start checkpoint (an SFT warm-up on a disjoint split when the
  preset says the base has no valid actions), pivots profiled once, SFT and PivotRL each trained from
  that start on the same trajectories, optionally PivotRL after SFT, all evaluated; prints a table
  and writes `results.json` and `results.md` beside it in the output directory.

The stages live in `pivot_algo.pipeline`, the typed preset in `pivot_algo.config`; this module only
parses the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pivot_algo.algorithms.base import ConfigError
from pivot_algo.config import RunConfig, load_config
from pivot_algo.pipeline import COMMANDS, NoPivotsError
from pivot_algo.plugins import load_plugins
from pivot_envs.errors import BackendRequiredError, TrajectoryError

__all__ = ["COMMANDS", "load_config", "main"]  # load_config: the preset tree (kept importable from here)

log = logging.getLogger("pivotrl")


def _table_command(argv: list[str]) -> int:
    """`pivotrl table ...`: the paper-table grid (pivot_algo/experiments/table.py), its own options."""
    from pivot_algo.experiments.table import main as table_main

    return int(table_main(argv))


STAGE_HELP = {"profile": "profile pivots of the start policy (training and held-out splits)",
              "train": "train the preset's `algo` from `model` (profiling first when it needs pivots)",
              "eval": "evaluate `model` on the held-out split",
              "run": "SFT vs PivotRL from one start on the same trajectories, both evaluated"}
OTHER_HELP = {"data": "bring your own data: `pivotrl data convert|validate|stats` (`pivotrl data -h`)",
              "table": "the paper's claims in miniature (pivot_algo/experiments/table.py; `pivotrl table -h`)",
              "sandbox": "sandbox maintenance: `pivotrl sandbox gc [--backend all|<registered backend>]`"}


def _overview() -> argparse.ArgumentParser:
    """The top-level parser: lists every command (each has its own options: `pivotrl COMMAND -h`)."""
    parser = argparse.ArgumentParser(prog="pivotrl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in {**STAGE_HELP, **OTHER_HELP}.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _stage_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"pivotrl {command}", description=STAGE_HELP.get(command))
    parser.add_argument("--config", required=True, help="preset YAML path or name (tiny, smollm_terminal)")
    parser.add_argument("overrides", nargs="*", help="key.path=value overrides")
    parser.add_argument("--log-level", default="INFO")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:  # `pivotrl sandbox gc`: maintenance, not a training stage
        return _sandbox_command(argv[1:])
    if argv[:1] == ["data"]:  # `pivotrl data convert|validate|stats`: trajectory files, no preset
        from pivot_algo.data_cli import main as data_main

        return data_main(argv[1:])
    if argv[:1] == ["table"]:  # `pivotrl table --preset ci|dev|full`: the paper-table grid, its own options
        return _table_command(argv[1:])
    if not argv or argv[0] not in COMMANDS:  # -h, nothing, or an unknown command: the overview says what exists
        _overview().parse_args(argv)
        return 2
    command = argv[0]
    # One parser per stage: parse_intermixed_args (options and key=value overrides in any order) does not
    # work with sub-parsers.
    args = _stage_parser(command).parse_intermixed_args(argv[1:])
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        load_plugins(cfg.get("plugins"))  # outside algorithms register themselves before any lookup
        COMMANDS[command](RunConfig.from_dict(cfg))  # typed: unknown keys are errors naming the valid ones
    except NoPivotsError as e:  # a result of profiling, not a crash: say it in one line
        print(f"pivotrl {command}: {e}", file=sys.stderr)
        return 3
    except ConfigError as e:  # bad preset or override: the message says what to fix
        print(f"pivotrl {command}: config error: {e}", file=sys.stderr)
        return 2
    except (TrajectoryError, BackendRequiredError) as e:  # bad data (file, line, field) or data the env cannot run
        print(f"pivotrl {command}: data error: {e}", file=sys.stderr)
        return 2
    return 0


def _sandbox_command(argv: list[str]) -> int:
    """`pivotrl sandbox gc [--backend all|<registered backend>]`: remove what killed runs left behind."""
    if argv[:1] != ["gc"]:
        from pivot_envs.sandbox.registry import backend_names

        print(f"usage: pivotrl sandbox gc [--backend {'|'.join(['all', *backend_names()])}]", file=sys.stderr)
        return 2
    from pivot_envs.sandbox.gc import main as gc_main

    return gc_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
