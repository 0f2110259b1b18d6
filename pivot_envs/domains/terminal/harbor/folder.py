"""Convert a directory of task folders (e.g. a public dataset checkout) in one resumable run.

`convert_folder(root, out="tasks.jsonl")` finds every folder under `root` holding a task.toml or
task.yaml (task folders are not searched further), converts each (convert.py) and writes:

* `OUT` — one trajectory per line, converted tasks only, so SFT and PivotRL can read it as it is;
* `OUT` minus `.jsonl` plus `.episode_only.jsonl` — the episode-only records (`task.episode_only`, a
  placeholder assistant turn): for `mode="episode"` (evaluation, E2E-RL), never as demonstrations;
* `OUT` minus `.jsonl` plus `.status.jsonl` — one line per finished task: name, folder, content hash,
  outcome (converted / episode_only / refused), refusal kind and the whole reason (the table shows
  its start), seconds.

All are appended and flushed after every task. A run that is killed and started again with the same
`out` skips every task whose folder content has not changed since this version of the converter (a
hash of its code) finished it; a trailing half-written line is dropped. `FolderReport.table()` is the
summary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pivot_envs.domains.terminal.harbor.convert import (
    BUILD_RECIPE,
    TaskRefusedError,
    convert_task,
)
from pivot_envs.domains.terminal.harbor.task import HarborTaskError, tree_hash
from pivot_envs.sandbox import SandboxBackend, make_backend


def _converter_version() -> str:
    """A hash of the converter's own code (this package and the recorder): a resumed run redoes the
    tasks that another version of the converter finished, and only those."""
    h = hashlib.sha256(BUILD_RECIPE.encode())
    here = Path(__file__).resolve().parent
    for path in sorted(here.glob("*.py")) + [here.parent / "tasks" / "recorder.py"]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return "pivotrl-harbor/" + h.hexdigest()[:12]


CONVERTER_VERSION = _converter_version()
STATUSES = ("converted", "episode_only", "refused")


@dataclasses.dataclass(frozen=True)
class TaskOutcome:
    name: str
    folder: str
    content_hash: str
    status: str  # converted | episode_only | refused
    kind: str = ""  # refusal class (TaskRefusedError.kind)
    reason: str = ""
    turns: int = 0
    seconds: float = 0.0
    flags: tuple[str, ...] = ()
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("resumed")
        d["flags"] = list(self.flags)
        d["converter"] = CONVERTER_VERSION
        return d


@dataclasses.dataclass
class FolderReport:
    outcomes: list[TaskOutcome]
    trajectories: list[dict[str, Any]]  # converted: demonstrations
    episode_tasks: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # episode-only records

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def table(self) -> str:
        """The summary: counts per outcome, then one row per task (refusals with their reason)."""
        lines = ["| outcome | tasks |", "|---|---|"]
        lines += [f"| {s.replace('_', '-')} | {self.count(s)} |" for s in STATUSES]
        lines += ["", "| task | outcome | steps | reason |", "|---|---|---|---|"]
        for o in self.outcomes:
            reason = o.reason.replace("\n", " ").replace("|", "/")
            # the table shows the start; the status file keeps the whole reason
            reason = (f"{o.kind}: " if o.kind else "") + (reason[:160] + "... (whole reason: status file)"
                                                          if len(reason) > 160 else reason)
            if o.flags:
                reason = (reason + " " if reason else "") + "flags: " + ", ".join(o.flags)
            lines.append(f"| {o.name} | {o.status.replace('_', '-')}{' (resumed)' if o.resumed else ''} | "
                         f"{o.turns or '-'} | {reason} |")
        return "\n".join(lines)


def find_task_folders(root: str | Path) -> list[Path]:
    """Folders under `root` (or `root` itself) with a task.toml or task.yaml, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise HarborTaskError(f"{root}: not a directory; pass a folder of task folders")

    def is_task(p: Path) -> bool:
        return (p / "task.toml").is_file() or (p / "task.yaml").is_file()

    if is_task(root):
        return [root]
    found: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if here != root and is_task(here):
            found.append(here)
            dirnames[:] = []  # a task's own subfolders (tests/, environment/) are not tasks
    if not found:
        raise HarborTaskError(f"{root}: no task folders (with task.toml or task.yaml) found")
    return sorted(found)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of `path`; a trailing half-written line (a killed run) is cut off the file."""
    if not path.is_file():
        return []
    rows, good_bytes = [], 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(raw))
            except json.JSONDecodeError:
                break
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with path.open("r+b") as fh:
            fh.truncate(good_bytes)
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def status_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".status.jsonl")


def episode_only_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".episode_only.jsonl")


def _progress(items: list[Path], enabled: bool) -> Iterable[Path]:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="converting tasks", unit="task")


def convert_folder(root: str | Path, backend: SandboxBackend | str = "docker", *, out: str | Path | None = None,
                   resume: bool = True, progress: bool = False, **kwargs: Any) -> FolderReport:
    """Convert every task folder under `root` (see the module docstring); `kwargs` go to `convert_task`."""
    folders = find_task_folders(root)
    root = Path(root)
    names = [str(p.relative_to(root)) if p != root else p.name for p in folders]
    out_path = Path(out) if out is not None else None
    done: dict[str, dict[str, Any]] = {}
    kept: dict[str, dict[str, Any]] = {}
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        outputs = (out_path, episode_only_path(out_path))
        if resume:
            done = {r["folder"]: r for r in _read_jsonl(status_path(out_path)) if r.get("converter") == CONVERTER_VERSION}
            kept = {t["id"]: t for path in outputs for t in _read_jsonl(path)}
        # Rewrite the outputs with only the records whose status is still valid, so nothing is doubled.
        valid_ids = {r.get("trajectory_id") for r in done.values()}
        kept = {tid: t for tid, t in kept.items() if tid in valid_ids}
        rows = [t for t in kept.values() if not t["task"].get("episode_only")]
        episode_rows = [t for t in kept.values() if t["task"].get("episode_only")]
        for path, data in ((outputs[0], rows), (outputs[1], episode_rows), (status_path(out_path), list(done.values()))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in data), encoding="utf-8")
            tmp.replace(path)
    be = make_backend(backend) if isinstance(backend, str) else backend
    outcomes: list[TaskOutcome] = []
    trajectories: list[dict[str, Any]] = []
    episode_tasks: list[dict[str, Any]] = []

    def collect(record: dict[str, Any]) -> None:
        (episode_tasks if record["task"].get("episode_only") else trajectories).append(record)

    try:
        for folder, name in zip(_progress(folders, progress), names):
            content_hash = tree_hash(folder)
            prev = done.get(name)
            if prev is not None and prev["content_hash"] == content_hash:
                outcomes.append(TaskOutcome(name, name, content_hash, prev["status"], prev.get("kind", ""),
                                            prev.get("reason", ""), prev.get("turns", 0), prev.get("seconds", 0.0),
                                            tuple(prev.get("flags", ())), resumed=True))
                traj = kept.get(prev.get("trajectory_id") or "")
                if traj is not None:
                    collect(traj)
                continue
            started = time.monotonic()
            traj = None
            try:
                converted = convert_task(folder, be, **kwargs)
                traj = converted.trajectory
                outcome = TaskOutcome(name, name, content_hash, converted.status,
                                      turns=0 if converted.status == "episode_only" else len(converted.step_exit_codes),
                                      seconds=round(time.monotonic() - started, 1), flags=converted.flags)
            except TaskRefusedError as e:
                outcome = TaskOutcome(name, name, content_hash, "refused", e.kind, str(e).removeprefix(f"{folder}: "),
                                      seconds=round(time.monotonic() - started, 1))
            outcomes.append(outcome)
            if traj is not None:
                collect(traj)
            if out_path is not None:
                if traj is not None:
                    _append(episode_only_path(out_path) if traj["task"].get("episode_only") else out_path, traj)
                row = outcome.to_json()
                row["trajectory_id"] = traj["id"] if traj is not None else None
                _append(status_path(out_path), row)
    finally:
        if isinstance(backend, str):
            be.close()
    return FolderReport(outcomes, trajectories, episode_tasks)
