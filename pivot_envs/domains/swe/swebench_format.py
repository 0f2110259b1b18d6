"""SWE-bench adapter: instances in SWE-bench's own format in and out, and the env task they become.

SWE-bench instance fields (all strings; FAIL_TO_PASS / PASS_TO_PASS are JSON-encoded lists):
`instance_id, repo, base_commit, patch, test_patch, problem_statement, hints_text, created_at,
version, FAIL_TO_PASS, PASS_TO_PASS, environment_setup_commit`. SWE-Gym and SWE-smith rows carry the
same fields (SWE-smith adds `image_name`); extra keys are kept.

Bringing your own instances (`task_from_instance(instance, image=...)` or `repo_checkout=...`):
- `image`: a docker image whose `/testbed` is a git checkout of the repository containing
  `base_commit` (SWE-bench's instance images are laid out like this), with the test
  dependencies installed;
- `repo_checkout`: a local git checkout; an image is built from the sandbox base with the tree of
  `base_commit` as the only commit of `/testbed` (no history: `git log --all` cannot show the fix)
  and pytest installed (`sandboxes.swe.repos.build_checkout_image`). That commit has a new id: the
  task's `base_commit` is it, `upstream_base_commit` the instance's. The image tag hashes the tree,
  the test dependencies and the base image, so a changed checkout gets a new image.
Our generated instances name their image in `image_name` and carry the bug as `bug_patch`: the env
applies it to the clean tree and makes the buggy tree the only commit (= `base_commit`).

Test ids are pytest node ids; the env runs the test files they name and grades with FAIL_TO_PASS /
PASS_TO_PASS (resolved = every FAIL_TO_PASS test passes and every PASS_TO_PASS test still passes).
Patches are read with `unidiff`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pivot_envs.errors import TrajectoryError

SWEBENCH_FIELDS = ("instance_id", "repo", "base_commit", "patch", "test_patch", "problem_statement",
                   "hints_text", "created_at", "version", "FAIL_TO_PASS", "PASS_TO_PASS",
                   "environment_setup_commit")
REQUIRED = ("instance_id", "repo", "base_commit", "patch", "problem_statement", "FAIL_TO_PASS", "PASS_TO_PASS")
WORKDIR = "/testbed"
COMMAND_TIMEOUT_S = 60.0
TEST_TIMEOUT_S = 180.0
LIMITS = {"memory_mb": 2048, "pids": 512, "output_bytes": 1024 * 1024}


class SWEBenchFormatError(TrajectoryError):
    """A SWE-bench instance is malformed; the message names the instance and the field."""


def _test_list(value: Any, field: str, iid: str) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise SWEBenchFormatError(f"instance {iid!r}: {field} must be a JSON list of test ids ({e.msg})",
                                      field=field) from None
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        raise SWEBenchFormatError(f"instance {iid!r}: {field} must be a list of test-id strings", field=field)
    return value


def changed_files(patch: str) -> list[str]:
    """Paths a unified diff changes (target paths; a deleted file counts by its source path)."""
    from unidiff import PatchSet
    from unidiff.errors import UnidiffParseError

    if not patch.strip():
        return []
    try:
        patch_set = PatchSet(patch)
    except UnidiffParseError as e:
        raise SWEBenchFormatError(f"not a unified diff: {e}", field="patch") from None
    if not len(patch_set):
        raise SWEBenchFormatError("not a unified diff: no `--- a/...` / `+++ b/...` file headers", field="patch")
    out = []
    for f in patch_set:
        path = f.path
        out.append(path[2:] if path.startswith(("a/", "b/")) else path)
    return out


def check_instance(instance: dict[str, Any]) -> dict[str, Any]:
    """Validate a SWE-bench instance; return it with FAIL_TO_PASS / PASS_TO_PASS decoded to lists."""
    if not isinstance(instance, dict):
        raise SWEBenchFormatError(f"an instance must be an object, got {type(instance).__name__}")
    iid = str(instance.get("instance_id", "<no instance_id>"))
    for key in REQUIRED:
        if key not in instance:
            raise SWEBenchFormatError(f"instance {iid!r}: missing field; SWE-bench instances need {list(REQUIRED)}",
                                      field=key)
    for key in ("instance_id", "repo", "base_commit", "patch", "problem_statement"):
        if not isinstance(instance[key], str) or not instance[key].strip():
            raise SWEBenchFormatError(f"instance {iid!r}: must be a non-empty string", field=key)
    f2p = _test_list(instance["FAIL_TO_PASS"], "FAIL_TO_PASS", iid)
    p2p = _test_list(instance["PASS_TO_PASS"], "PASS_TO_PASS", iid)
    if not f2p:
        raise SWEBenchFormatError(f"instance {iid!r}: FAIL_TO_PASS is empty, so nothing says the bug is fixed",
                                  field="FAIL_TO_PASS")
    for key in ("patch", "test_patch"):
        try:
            changed_files(instance.get(key) or "")
        except SWEBenchFormatError as e:
            raise SWEBenchFormatError(f"instance {iid!r}: {e}", field=key) from None
    return {**instance, "FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p}


def to_swebench(instance: dict[str, Any], *, extras: bool = True) -> dict[str, Any]:
    """The instance as SWE-bench stores it (test lists as JSON strings). `extras=False` keeps
    SWE-bench's fields only."""
    inst = check_instance(instance)
    out: dict[str, Any] = {k: inst.get(k, "") for k in SWEBENCH_FIELDS}
    out["FAIL_TO_PASS"] = json.dumps(inst["FAIL_TO_PASS"])
    out["PASS_TO_PASS"] = json.dumps(inst["PASS_TO_PASS"])
    if extras:
        out.update({k: v for k, v in instance.items() if k not in SWEBENCH_FIELDS})
    return out


def read_instances(path: str | os.PathLike) -> list[dict[str, Any]]:
    """SWE-bench instances from a JSON list, a JSONL file (optionally .gz). Errors name the line."""
    import gzip

    path = Path(path)
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    if text.lstrip().startswith("["):
        records = json.loads(text)
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise SWEBenchFormatError(f"not valid JSON ({e.msg})", line=lineno, source=str(path)) from None
    return [check_instance(r) for r in records]


def write_instances(instances: Iterable[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write instances as SWE-bench JSONL."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for inst in instances:
            fh.write(json.dumps(to_swebench(inst), ensure_ascii=False) + "\n")


def test_files(tests: Iterable[str]) -> list[str]:
    """The test files that pytest node ids name, in order of first appearance."""
    seen: dict[str, None] = {}
    for t in tests:
        seen.setdefault(t.split("::", 1)[0], None)
    return list(seen)


def task_from_instance(instance: dict[str, Any], *, image: str | None = None,
                       repo_checkout: str | os.PathLike | None = None) -> dict[str, Any]:
    """The env's task spec for a SWE-bench instance (see the module docstring for `image` and
    `repo_checkout`; default: the instance's own `image_name`)."""
    inst = check_instance(instance)
    base_commit, upstream = inst["base_commit"], {}
    if repo_checkout is not None:
        from pivot_envs.images.swe.repos import build_checkout_image

        built = build_checkout_image(Path(repo_checkout), base_commit=inst["base_commit"], name=inst["instance_id"])
        image, base_commit, upstream = built.tag, built.base_commit, {"upstream_base_commit": built.source_commit}
    image = image or inst.get("image_name")
    if not image:
        raise SWEBenchFormatError(f"instance {inst['instance_id']!r} names no image: pass image=... (a docker image "
                                  f"with the repository at /testbed) or repo_checkout=... (a local git checkout)",
                                  field="image_name")
    tests = inst["FAIL_TO_PASS"] + inst["PASS_TO_PASS"]
    return {
        "instance_id": inst["instance_id"],
        "repo": inst["repo"],
        "image": image,
        "workdir": WORKDIR,
        "state_roots": [WORKDIR],
        "base_commit": base_commit,
        **upstream,
        "environment_setup_commit": inst.get("environment_setup_commit") or "",
        "bug_patch": inst.get("bug_patch") or "",
        "gold_patch": inst["patch"],
        "test_patch": inst.get("test_patch") or "",
        "problem_statement": inst["problem_statement"],
        "fail_to_pass": inst["FAIL_TO_PASS"],
        "pass_to_pass": inst["PASS_TO_PASS"],
        "test_paths": test_files(tests),
        "version": inst.get("version") or "",
        "created_at": inst.get("created_at") or "",
        "hints_text": inst.get("hints_text") or "",
        "timeout_s": COMMAND_TIMEOUT_S,
        "test_timeout_s": TEST_TIMEOUT_S,
        "limits": dict(LIMITS),
        **({"mutation": inst["mutation"]} if "mutation" in inst else {}),
    }


EPISODE_ONLY_MESSAGE = "(no demonstration: use this record in episode mode from turn 0)"


def record_from_instance(instance: dict[str, Any], *, image: str | None = None,
                         repo_checkout: str | os.PathLike | None = None,
                         demonstration: list[dict[str, Any]] | None = None, split: str = "test") -> dict[str, Any]:
    """A SWE-bench instance as a trajectory record that `PivotSWE-v0` takes as it is, in one call.

    `image` / `repo_checkout` as in `task_from_instance` (a checkout is built into an image here).
    Without `demonstration` the record is episode-ready: system prompt, the issue as the user's
    message, the env's tool schemas (`bash`, `str_replace_editor`) and one placeholder assistant
    turn, marked `task["episode_only"]` (use `mode="episode"` at turn 0: evaluation, E2E-RL; never
    as a demonstration). With `demonstration` - the messages after the user's, in OpenAI chat
    format: assistant turns with `bash` / `str_replace_editor` tool calls, their `tool` results,
    and a final assistant answer (how SWE-agent and OpenHands trajectories look once written as
    chat messages) - it is pivot-ready: every turn can be reset to and judged.

    Before this, a user wrote the record by hand and found the tool schemas in `tools.py`."""
    from pivot_envs.domains.swe.expert import SYSTEM_PROMPT, user_message
    from pivot_envs.domains.swe.tools import TOOLS
    from pivot_envs.trajectory import validate_record

    task = {**task_from_instance(instance, image=image, repo_checkout=repo_checkout), "split": split}
    if demonstration is None:
        task["episode_only"] = True
        turns: list[dict[str, Any]] = [{"role": "assistant", "content": EPISODE_ONLY_MESSAGE}]
    else:
        turns = [dict(m) for m in demonstration]
    record = {"id": task["instance_id"], "domain": "swe", "task": task, "tools": TOOLS,
              "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                           {"role": "user", "content": user_message(task)}, *turns]}
    validate_record(record, source=f"instance {task['instance_id']}")  # a bad demonstration fails here, named
    return record


def instance_from_task(task: dict[str, Any]) -> dict[str, Any]:
    """The SWE-bench instance a task was made from (inverse of `task_from_instance`)."""
    out = {
        "instance_id": task["instance_id"], "repo": task["repo"], "base_commit": task["base_commit"],
        "patch": task["gold_patch"], "test_patch": task.get("test_patch", ""),
        "problem_statement": task["problem_statement"], "hints_text": task.get("hints_text", ""),
        "created_at": task.get("created_at", ""), "version": task.get("version", ""),
        "FAIL_TO_PASS": json.dumps(task["fail_to_pass"]), "PASS_TO_PASS": json.dumps(task["pass_to_pass"]),
        "environment_setup_commit": task.get("environment_setup_commit", ""), "image_name": task["image"],
    }
    if task.get("upstream_base_commit"):
        out["upstream_base_commit"] = task["upstream_base_commit"]
    if task.get("bug_patch"):
        out["bug_patch"] = task["bug_patch"]
    if task.get("mutation"):
        out["mutation"] = task["mutation"]
    return out

