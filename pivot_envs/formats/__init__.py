"""Importers from the trajectory formats people have, and exporters to the ones trainers read.

One module per format, each with `to_trajectory(record, where) -> trajectory dict`:

| name | module | what it reads |
|---|---|---|
| `chat` | `chat.py` | OpenAI / Hugging Face chat JSONL (`messages` + `tools`; structured or Hermes tool calls) |
| `sharegpt` | `sharegpt.py` | ShareGPT (`conversations` of `from` / `value`; `function_call` / `observation` turns) |
| `nemo_gym` | `nemo_gym.py` | NeMo-Gym pivot rows (`responses_create_params` + `expected_action`); also exported |
| `atif` | `atif.py` | Harbor ATIF agent trajectories (`steps` with `tool_calls` and `observation`), as backend-free tool use; with their Harbor task folder, as terminal tasks (`domains/terminal/harbor/agent_runs.py`) |
| `pivotrl` | - | the project's own format (`pivot_envs/trajectory.py`), checked as it is |

`import_file(fmt, path)` reads a whole file (JSON Lines, or one JSON array) into validated
trajectories, so a bad record fails early with the file, line and field; `convert_file` writes them
as pivotrl JSONL; `export_file(..., to="nemo_gym")` writes NeMo-Gym rows. The field-by-field
mapping of every format: `docs/trajectory_format.md`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pivot_envs.errors import TrajectoryError
from pivot_envs.formats import atif, chat, nemo_gym, sharegpt
from pivot_envs.formats.common import Where, read_records
from pivot_envs.trajectory import (
    Trajectory,
    load_trajectories,
    save_jsonl,
    validate_record,
)


def _pivotrl(rec: Any, where: Where) -> dict[str, Any]:
    validate_record(rec, line=where.line, source=where.source)
    return dict(rec)


IMPORTERS: dict[str, Callable[[Any, Where], dict[str, Any]]] = {
    "chat": chat.to_trajectory, "sharegpt": sharegpt.to_trajectory, "nemo_gym": nemo_gym.to_trajectory,
    "atif": atif.to_trajectory, "pivotrl": _pivotrl}
EXPORTERS = ("nemo_gym", "pivotrl")


def import_file(fmt: str, path: str | os.PathLike) -> list[Trajectory]:
    """Every record of `path` in format `fmt` as a validated Trajectory (ids must be unique)."""
    if fmt not in IMPORTERS:
        raise TrajectoryError(f"unknown input format {fmt!r}; use one of {sorted(IMPORTERS)}")
    to_trajectory = IMPORTERS[fmt]
    records: list[dict[str, Any]] = []
    where_of: dict[str, int] = {}
    for rec, where in read_records(path):
        traj = to_trajectory(rec, where)
        if traj["id"] in where_of:
            raise TrajectoryError(f"duplicate trajectory id {traj['id']!r} (first at line {where_of[traj['id']]}); "
                                  "ids must be unique", line=where.line, field="id", source=where.source)
        where_of[traj["id"]] = where.line
        records.append(traj)
    return load_trajectories(records)


def convert_file(fmt: str, path: str | os.PathLike, out: str | os.PathLike) -> list[Trajectory]:
    """Import `path` (format `fmt`) and write it as pivotrl JSONL to `out`."""
    trajectories = import_file(fmt, path)
    save_jsonl(trajectories, out)
    return trajectories


def export_file(trajectories: list[Trajectory], out: str | os.PathLike, to: str = "nemo_gym",
                turns: dict[str, list[int]] | None = None, agent_ref: dict[str, Any] | None = None) -> int:
    """Write `trajectories` in format `to`; return the number of records written."""
    if to == "pivotrl":
        save_jsonl(trajectories, out)
        return len(trajectories)
    if to != "nemo_gym":
        raise TrajectoryError(f"unknown output format {to!r}; use one of {list(EXPORTERS)}")
    rows = nemo_gym.export_rows(trajectories, turns, agent_ref)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


__all__ = ["EXPORTERS", "IMPORTERS", "convert_file", "export_file", "import_file"]
