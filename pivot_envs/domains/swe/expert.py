"""Scripted expert: SFT trajectories of 6-20 turns recorded inside the real container.

    python -m pivot_envs.domains.swe.expert       # records data/trajectories.jsonl.gz from the instances

The expert works like a careful engineer with the instance's problem statement: it looks at the
repository (`str_replace_editor view /testbed` or `ls`), reproduces the failure (runs the first
failing test), finds the function (`grep -n`), opens it with a line range, fixes it with one
`str_replace` (an `old_str` grown with context lines until it is unique), reruns the failing tests and
the test files, sometimes reviews `git diff`, and submits with a message that names the file and
function it fixed. Every tool output in the trajectory is the real output of that call (through
`tools.run_call`, the function the env uses). A trajectory is kept only when the instance is
resolved afterwards (FAIL_TO_PASS pass, PASS_TO_PASS still pass): `ExpertFailedError` otherwise.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import logging
import random
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pivot_envs.domains.swe import repository
from pivot_envs.domains.swe.generator import DATA_DIR, INSTANCES_FILE, load_instances
from pivot_envs.domains.swe.swebench_format import task_from_instance
from pivot_envs.domains.swe.tools import TOOLS, run_call
from pivot_envs.errors import PivotError
from pivot_envs.sandbox import Sandbox, SandboxBackend, SandboxLimits, make_backend
from pivot_envs.trajectory import ToolCall

log = logging.getLogger(__name__)

TRAJECTORIES_FILE = DATA_DIR / "trajectories.jsonl.gz"
SPLITS = ("train", "val", "test")

SYSTEM_PROMPT = (
    "You are a software engineer fixing a bug in the Python repository at /testbed (a git repository). "
    "Tools: `bash` runs one command in a fresh shell in /testbed; `str_replace_editor` views and edits files "
    "(absolute paths). Reproduce the problem, find its cause, fix it with a minimal change to the library "
    "(not the tests), and check that the tests pass. When you are done, reply without a tool call and say what "
    "you changed.")


class ExpertFailedError(PivotError, RuntimeError):
    """The scripted expert did not resolve an instance (a bug in the expert or the instance)."""


def user_message(task: dict[str, Any]) -> str:
    return (f"I'm working in the repository at /testbed. Please fix this issue:\n\n{task['problem_statement']}\n\n"
            f"Make the failing tests pass without breaking the others; don't change the tests.")


def fix_edit(buggy: str, clean: str) -> tuple[str, str]:
    """(old_str, new_str) for one `str_replace` that turns `buggy` into `clean`: the differing lines
    plus context lines, grown until `old_str` occurs once in `buggy` (without the trailing newline
    of its last line, as a person would select it)."""
    b, c = buggy.splitlines(keepends=True), clean.splitlines(keepends=True)
    head = 0
    while head < min(len(b), len(c)) and b[head] == c[head]:
        head += 1
    tail = 0
    while tail < min(len(b), len(c)) - head and b[-1 - tail] == c[-1 - tail]:
        tail += 1
    lo, hi = head, len(b) - tail
    while True:
        old, new = "".join(b[lo:hi]), "".join(c[lo:len(c) - (len(b) - hi)])
        if old.endswith("\n") and new.endswith("\n"):
            old, new = old[:-1], new[:-1]
        if (old.strip() and buggy.count(old) == 1) or (lo == 0 and hi >= len(b)):
            return old, new
        lo, hi = max(0, lo - 1), min(len(b), hi + 1)


def function_span(source: str, qualname: str, line: int) -> tuple[int, int]:
    """Lines (1-based, inclusive) of the innermost def named by `qualname`'s last part around `line`."""
    name = qualname.rsplit(".", 1)[-1]
    best = (max(1, line - 10), line + 10)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end or abs(node.lineno - line) < 40:
                start = min(d.lineno for d in node.decorator_list) if node.decorator_list else node.lineno
                best = (start, end)
    return best


class Recorder:
    """Runs the expert's calls in one sandbox and records (assistant, tool) message pairs."""

    def __init__(self, box: Sandbox, task: dict[str, Any]):
        self.box = box
        self.task = task
        self.messages: list[dict[str, Any]] = []

    def _exec(self, box: Sandbox, cmd: str, timeout_s: float | None = None, workdir: str | None = None):
        return box.exec(cmd, timeout=timeout_s or float(self.task["timeout_s"]), workdir=workdir)

    def call(self, thought: str, name: str, arguments: dict[str, Any]) -> str:
        k = sum(1 for m in self.messages if m["role"] == "assistant")
        call_id = f"call_{k}"
        result = run_call(self.box, ToolCall(name, arguments), lambda b, c: self._exec(b, c), float(self.task["timeout_s"]))
        self.messages.append({"role": "assistant", "content": thought,
                              "tool_calls": [{"id": call_id, "type": "function",
                                              "function": {"name": name, "arguments": json.dumps(arguments)}}]})
        self.messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": result.content})
        return result.content

    def bash(self, thought: str, command: str) -> str:
        return self.call(thought, "bash", {"command": command})

    def editor(self, thought: str, **arguments: Any) -> str:
        return self.call(thought, "str_replace_editor", arguments)


def _pytest(tests: Iterable[str]) -> str:
    return "python3 -m pytest -q -p no:cacheprovider --tb=short " + " ".join(shlex.quote(t) for t in tests)


def record(instance: dict[str, Any], backend: SandboxBackend, *, seed: int = 0) -> dict[str, Any]:
    """Record the expert on one instance; returns the trajectory dict."""
    task = task_from_instance(instance)
    mutation = instance["mutation"]
    path, func = mutation["path"], mutation["function"]
    rng = random.Random(f"{seed}:{task['instance_id']}")
    limits = SandboxLimits(**{**task["limits"], "timeout_s": task["timeout_s"]})
    with backend.create(task["image"], workdir=task["workdir"], limits=limits) as box:
        rec = Recorder(box, task)
        repository.checkout_instance(box, task, rec._exec)
        buggy = box.read_file(f"/testbed/{path}").decode()
        clean = _apply_patch(box, rec, path, task["gold_patch"], buggy)
        f2p = task["fail_to_pass"]
        short = func.rsplit(".", 1)[-1]

        if rng.random() < 0.5:
            rec.editor("Let me look at the layout of the repository first.", command="view", path="/testbed")
        else:
            rec.bash("Let me look at the layout of the repository first.", "ls && git status --short | head")
        rec.bash("I'll reproduce the failure the issue reports.", _pytest(f2p[:1]))
        if rng.random() < 0.4:
            test_file, test_name = f2p[0].split("::")[0], f2p[0].split("::")[-1].split("[")[0]
            rec.bash("Let me see what the failing test checks.", f"grep -n 'def {test_name}' {shlex.quote(test_file)}")
        rec.bash(f"The failure points at `{short}`. Let me find where it is defined.",
                 f"grep -rn 'def {short}\\b' {shlex.quote(path.rsplit('/', 1)[0] or '.')} --include=*.py")
        start, end = function_span(buggy, func, mutation["line"])
        n_lines = len(buggy.splitlines())
        rec.editor(f"Let me read `{short}`.", command="view", path=f"/testbed/{path}",
                   view_range=[max(1, start), min(n_lines, max(end, start + 1))])
        old, new = fix_edit(buggy, clean)
        out = rec.editor(f"I see the problem in `{short}`; fixing it.", command="str_replace",
                         path=f"/testbed/{path}", old_str=old, new_str=new)
        if out.startswith("ERROR"):
            raise ExpertFailedError(f"{task['instance_id']}: the expert's edit was refused: {out[:300]}")
        rec.bash("Now the failing tests should pass.", _pytest(f2p))
        rec.bash("And the rest of the test files should still pass.",
                 "python3 -m pytest -q -p no:cacheprovider --tb=short " + " ".join(shlex.quote(p) for p in task["test_paths"]))
        if rng.random() < 0.5:
            rec.bash("Let me review the change.", "git diff")
        resolved, report = repository.grade(task, repository.run_tests(box, task, rec._exec))
        if not resolved:
            raise ExpertFailedError(f"{task['instance_id']}: the expert did not resolve the instance: {report}")
        final = (f"I fixed the bug in `{short}` in `{path}`: the code there did not do what the tests expect, and I "
                 f"restored the intended logic with a minimal change. The {len(f2p)} failing test(s) now pass and "
                 f"the rest of the test files still pass.")
        rec.messages.append({"role": "assistant", "content": final})
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message(task)},
                *rec.messages]
    return {"id": task["instance_id"], "domain": "swe", "task": {**task, "split": instance.get("split", "train")},
            "tools": TOOLS, "messages": messages}


def _apply_patch(box: Sandbox, rec: Recorder, path: str, patch: str, buggy: str) -> str:
    """The clean text of `path`: the gold patch applied in a scratch copy (the expert's own edit is
    then checked by the tests, not assumed)."""
    box.write_file("/tmp/pivotrl-gold.patch", patch)
    res = rec._exec(box, f"rm -rf /tmp/gold && mkdir -p /tmp/gold/$(dirname {shlex.quote(path)}) && "
                         f"cp {shlex.quote(path)} /tmp/gold/{shlex.quote(path)} && cd /tmp/gold && "
                         f"git apply --unsafe-paths /tmp/pivotrl-gold.patch && cat {shlex.quote(path)} && "
                         f"rm -rf /tmp/gold /tmp/pivotrl-gold.patch")
    if not res.ok:
        raise ExpertFailedError(f"the gold patch does not apply to {path}: {res.stderr[-300:]}")
    return res.stdout


def save(trajs: list[dict[str, Any]], path: Path = TRAJECTORIES_FILE) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for t in trajs:
            fh.write(json.dumps(t, ensure_ascii=False) + "\n")


_LOADED: dict[str, list[dict[str, Any]]] = {}


def builtin_trajectories(split: str = "train", path: Path = TRAJECTORIES_FILE) -> list[Any]:
    """The recorded expert trajectories of `split` ("train" | "val" | "test" | "all")."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown split {split!r}; use one of {[*SPLITS, 'all']}")
    key = str(path)
    if key not in _LOADED:
        if not path.is_file():
            raise FileNotFoundError(f"no recorded SWE trajectories at {path}; record them with "
                                    f"`python -m pivot_envs.domains.swe.expert`")
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            _LOADED[key] = [json.loads(line) for line in fh if line.strip()]
    rows = _LOADED[key]
    return [dict(r) for r in rows if split == "all" or r["task"].get("split") == split]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pivot_envs.domains.swe.expert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--instances", type=Path, default=None, help="default: data/instances.jsonl.gz")
    parser.add_argument("--out", type=Path, default=TRAJECTORIES_FILE, help="resumed when it exists")
    parser.add_argument("--shard", default="0/1", help="i/n: record every n-th instance from the i-th (parallel runs)")
    parser.add_argument("--merge", nargs="*", type=Path, default=None,
                        help="only concatenate these trajectory files into --out, in instance order")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.merge is not None:
        by_id = {}
        for part in args.merge:
            with gzip.open(part, "rt", encoding="utf-8") as fh:
                by_id.update({t["id"]: t for t in map(json.loads, fh)})
        order = [i["instance_id"] for i in load_instances(args.instances or INSTANCES_FILE)]
        save([by_id[i] for i in order if i in by_id], args.out)
        print(json.dumps({"trajectories": sum(1 for i in order if i in by_id), "instances": len(order)}))
        return 0
    instances = load_instances(args.instances or INSTANCES_FILE)[:args.limit]
    shard, n_shards = map(int, args.shard.split("/"))
    instances = instances[shard::n_shards]
    trajs: list[dict[str, Any]] = []
    if args.out.is_file():  # resume: keep what an earlier run recorded
        with gzip.open(args.out, "rt", encoding="utf-8") as fh:
            trajs = [json.loads(line) for line in fh if line.strip()]
        done = {t["id"] for t in trajs}
        instances = [i for i in instances if i["instance_id"] not in done]
    backend = make_backend("docker")
    failed: list[str] = []
    try:
        for i, inst in enumerate(instances):
            try:
                trajs.append(record(inst, backend))
                save(trajs, args.out)  # after every trajectory: a stopped run keeps what it recorded
            except ExpertFailedError as e:
                failed.append(inst["instance_id"])
                log.error("%s", e)
            log.info("%d/%d recorded (%d failed)", len(trajs), i + 1, len(failed))
    finally:
        backend.close()
    save(trajs, args.out)
    turns = sorted(sum(1 for m in t["messages"] if m["role"] == "assistant") for t in trajs)
    print(json.dumps({"trajectories": len(trajs), "failed": failed, "median_turns": turns[len(turns) // 2] if turns else 0,
                      "min_turns": turns[0] if turns else 0, "max_turns": turns[-1] if turns else 0}))
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
