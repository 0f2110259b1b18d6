"""Harbor / Terminal-Bench task folders -> pivotrl terminal tasks and SFT trajectories.

Two layouts are read:

Harbor (`task.toml`)                      Terminal-Bench (`task.yaml`)
    instruction.md                            task.yaml      (instruction, max_*_timeout_sec, ...)
    task.toml                                 Dockerfile
    environment/Dockerfile                    solution.sh
    solution/solve.sh                         run-tests.sh
    tests/test.sh                             tests/...

Conversion (`load_task` then `to_task_dict`):
    * `image`: the task's Dockerfile built with `sandboxes.build.build_task_image`, which rebuilds
      on the local sandbox base when the `FROM` image cannot be pulled (no registry here).
    * `setup`: empty; the Dockerfile made the initial state.
    * `test`: one self-contained bash script that unpacks the task's tests folder into /tests
      (base64 tar inside the script, so the env needs nothing but `exec`), runs `test.sh` /
      `run-tests.sh` from the workdir, and succeeds when it exits 0, or, when the test wrote
      `/logs/verifier/reward.txt` (Harbor's reward file), when that file holds a reward >= 1.
    * limits: `[environment] cpus / memory / memory_mb` and the agent/verifier timeouts.

The solution becomes the expert: `split_solution` cuts solve.sh into top-level commands (heredocs,
if/for/while/case blocks, functions, brace groups and line continuations stay whole), and
`record_solution` runs them one per assistant turn. Each step runs in a fresh shell, like an
agent's command, so state-setting lines (`cd`, `export`, assignments, `source`, function
definitions) are carried as a prefix into every later step instead of being steps themselves.
`set -e` lines are dropped and their meaning kept: recording stops at the first failing step.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import logging
import re
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import yaml

from pivot_envs.domains.terminal.tasks.format import BASH_TOOL, format_tool_output
from pivot_envs.domains.terminal.tasks.recorder import ExpertFailedError, build_messages
from pivot_envs.domains.terminal.tasks.spec import ExpertStep
from pivot_envs.errors import PivotError
from pivot_envs.sandbox import SandboxBackend, SandboxLimits, make_backend

logger = logging.getLogger(__name__)

DEFAULT_WORKDIR = "/app"
DEFAULT_AGENT_TIMEOUT_S = 600.0
DEFAULT_TEST_TIMEOUT_S = 120.0
MAX_COMMAND_TIMEOUT_S = 300.0  # one command never gets more than this, whatever the agent budget
MAX_TEST_SCRIPT_BYTES = 100_000  # `bash -c` arguments are capped at 128 KiB by the kernel
TESTS_DIR = "/tests"
REWARD_FILE = "/logs/verifier/reward.txt"
FINAL_MESSAGE = "The task is complete."


class HarborTaskError(PivotError, ValueError):
    """A Harbor / Terminal-Bench task folder is missing a file or has a malformed one. The message
    names the file and the key."""


# ----------------------------------------------------------------------------- parsing


@dataclasses.dataclass(frozen=True)
class HarborTask:
    """A task folder, read and validated (nothing built or run yet)."""

    name: str
    path: Path
    layout: str  # "harbor" | "terminal-bench"
    instruction: str
    dockerfile_dir: Path
    test_entry: str  # file name inside the tests bundle that runs the tests ("test.sh" | "run-tests.sh")
    tests_bundle: dict[str, bytes]  # relative path -> content, unpacked into /tests
    solution: str | None
    workdir: str
    agent_timeout_s: float
    test_timeout_s: float
    build_timeout_s: float | None
    limits: SandboxLimits
    metadata: dict[str, Any]

    def image_tag(self) -> str:
        """A tag that changes whenever the build context changes."""
        h = hashlib.sha256()
        for p in sorted(self.dockerfile_dir.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(self.dockerfile_dir)).encode() + b"\0" + p.read_bytes() + b"\0")
        slug = re.sub(r"[^a-z0-9_.-]+", "-", self.name.lower()).strip("-.") or "task"
        return f"pivotrl/task-{slug}:{h.hexdigest()[:12]}"


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise HarborTaskError(f"{path}: missing {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HarborTaskError(f"{path}: {what} is not UTF-8 text ({e})") from None


def parse_task_toml(text: str, source: str = "task.toml") -> dict[str, Any]:
    """Parse a Harbor task.toml; TOML syntax errors name the line and column."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise HarborTaskError(f"{source}: invalid TOML: {e}. Fix the syntax (strings need quotes, "
                              f"tables look like [verifier]).") from None
    for table in ("metadata", "verifier", "agent", "environment"):
        if table in data and not isinstance(data[table], dict):
            raise HarborTaskError(f"{source}: [{table}] must be a table, got {type(data[table]).__name__}")
    return data


def parse_task_yaml(text: str, source: str = "task.yaml") -> dict[str, Any]:
    """Parse a Terminal-Bench task.yaml; it must be a mapping with a non-empty `instruction`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise HarborTaskError(f"{source}: invalid YAML{where}: {problem}. Check indentation and quoting.") from None
    if not isinstance(data, dict):
        raise HarborTaskError(f"{source}: expected a mapping with an 'instruction' key, got {type(data).__name__}")
    instruction = data.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise HarborTaskError(f"{source}: key 'instruction' is missing or empty; it holds the task text")
    return data


def _number(value: Any, source: str, key: str, default: float | None) -> float | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise HarborTaskError(f"{source}: {key} must be a positive number of seconds/cores, got {value!r}")
    return float(value)


_MEM_UNITS = {"": 1 / (1024 * 1024), "b": 1 / (1024 * 1024), "k": 1 / 1024, "kb": 1 / 1024, "ki": 1 / 1024,
              "kib": 1 / 1024, "m": 1, "mb": 1, "mi": 1, "mib": 1, "g": 1024, "gb": 1024, "gi": 1024,
              "gib": 1024, "t": 1024 * 1024, "tb": 1024 * 1024}


def parse_memory_mb(value: Any, source: str = "task.toml", key: str = "memory") -> int:
    """'2G' / '512M' / '1.5GiB' / 2048 (MiB when a plain number) -> MiB."""
    if isinstance(value, bool):
        raise HarborTaskError(f"{source}: {key} must be a size like '2G' or a number of MiB, got {value!r}")
    if isinstance(value, (int, float)):
        mb = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in _MEM_UNITS:
            raise HarborTaskError(f"{source}: {key} = {value!r} is not a size; use e.g. '512M' or '2G'")
        mb = float(m.group(1)) * _MEM_UNITS[m.group(2).lower()] if m.group(2) else float(m.group(1))
    else:
        raise HarborTaskError(f"{source}: {key} must be a size like '2G' or a number of MiB, got {value!r}")
    if mb < 16:
        raise HarborTaskError(f"{source}: {key} = {value!r} is below 16 MiB; nothing would run")
    return int(mb)


def dockerfile_workdir(text: str) -> str:
    """The last absolute WORKDIR of a Dockerfile (the container's start directory), else /app."""
    workdir = DEFAULT_WORKDIR
    for line in text.splitlines():
        m = re.match(r"\s*WORKDIR\s+(\S+)\s*$", line, flags=re.I)
        if m and m.group(1).startswith("/"):
            workdir = m.group(1).rstrip("/") or "/"
    return workdir


def _bundle(folder: Path | None, extra: dict[str, bytes]) -> dict[str, bytes]:
    files = dict(extra)
    if folder is not None and folder.is_dir():
        for p in sorted(folder.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                files[str(p.relative_to(folder))] = p.read_bytes()
    return files


def load_task(path: str | Path) -> HarborTask:
    """Read a Harbor (task.toml) or Terminal-Bench (task.yaml) task folder."""
    root = Path(path)
    if not root.is_dir():
        raise HarborTaskError(f"{root}: not a directory; pass a task folder")
    if (root / "task.toml").is_file():
        return _load_harbor(root)
    if (root / "task.yaml").is_file():
        return _load_terminal_bench(root)
    raise HarborTaskError(f"{root}: neither task.toml (Harbor) nor task.yaml (Terminal-Bench) found")


def _load_harbor(root: Path) -> HarborTask:
    src = str(root / "task.toml")
    cfg = parse_task_toml(_read_text(root / "task.toml", "task.toml"), src)
    instruction = _read_text(root / "instruction.md", "instruction.md (the task text)").strip()
    if not instruction:
        raise HarborTaskError(f"{root / 'instruction.md'}: the instruction is empty")
    env_cfg, agent, verifier = cfg.get("environment", {}), cfg.get("agent", {}), cfg.get("verifier", {})
    dockerfile_dir = root / "environment"
    dockerfile = _read_text(dockerfile_dir / "Dockerfile", "environment/Dockerfile")
    test_sh = root / "tests" / "test.sh"
    _read_text(test_sh, "tests/test.sh (the verifier)")
    solve = root / "solution" / "solve.sh"
    _check_solution_dir(root / "solution", {"solve.sh"})
    memory_mb = 1024
    if "memory_mb" in env_cfg:
        memory_mb = parse_memory_mb(env_cfg["memory_mb"], src, "[environment] memory_mb")
    elif "memory" in env_cfg:
        memory_mb = parse_memory_mb(env_cfg["memory"], src, "[environment] memory")
    agent_t = _number(agent.get("timeout_sec"), src, "[agent] timeout_sec", DEFAULT_AGENT_TIMEOUT_S)
    test_t = _number(verifier.get("timeout_sec"), src, "[verifier] timeout_sec", DEFAULT_TEST_TIMEOUT_S)
    cpus = _number(env_cfg.get("cpus"), src, "[environment] cpus", 1.0)
    return HarborTask(
        name=root.name, path=root, layout="harbor", instruction=instruction, dockerfile_dir=dockerfile_dir,
        test_entry="test.sh", tests_bundle=_bundle(root / "tests", {}),
        solution=solve.read_text(encoding="utf-8") if solve.is_file() else None,
        workdir=dockerfile_workdir(dockerfile), agent_timeout_s=agent_t, test_timeout_s=test_t,
        build_timeout_s=_number(env_cfg.get("build_timeout_sec"), src, "[environment] build_timeout_sec", None),
        limits=SandboxLimits(cpus=cpus, memory_mb=memory_mb, timeout_s=min(agent_t, MAX_COMMAND_TIMEOUT_S)),
        metadata=dict(cfg.get("metadata", {})))


def _load_terminal_bench(root: Path) -> HarborTask:
    src = str(root / "task.yaml")
    cfg = parse_task_yaml(_read_text(root / "task.yaml", "task.yaml"), src)
    dockerfile = _read_text(root / "Dockerfile", "Dockerfile")
    run_tests = _read_text(root / "run-tests.sh", "run-tests.sh (the test runner)")
    solve = root / "solution.sh"
    if not solve.is_file() and (root / "solution.yaml").is_file():
        raise HarborTaskError(f"{root / 'solution.yaml'}: command-list solutions are not supported; "
                              f"write the commands as solution.sh")
    agent_t = _number(cfg.get("max_agent_timeout_sec"), src, "max_agent_timeout_sec", DEFAULT_AGENT_TIMEOUT_S)
    test_t = _number(cfg.get("max_test_timeout_sec"), src, "max_test_timeout_sec", DEFAULT_TEST_TIMEOUT_S)
    meta = {k: v for k, v in cfg.items() if k != "instruction"}
    return HarborTask(
        name=root.name, path=root, layout="terminal-bench", instruction=cfg["instruction"].strip(),
        dockerfile_dir=root, test_entry="run-tests.sh",
        tests_bundle=_bundle(root / "tests", {"run-tests.sh": run_tests.encode()}),
        solution=solve.read_text(encoding="utf-8") if solve.is_file() else None,
        workdir=dockerfile_workdir(dockerfile), agent_timeout_s=agent_t, test_timeout_s=test_t,
        build_timeout_s=None, limits=SandboxLimits(timeout_s=min(agent_t, MAX_COMMAND_TIMEOUT_S)), metadata=meta)


def _check_solution_dir(folder: Path, allowed: set[str]) -> None:
    if not folder.is_dir():
        return
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in allowed)
    if extra:
        raise HarborTaskError(f"{folder}: files besides solve.sh ({extra}) are not supported: each step of "
                              f"the converted trajectory must be a self-contained command; inline them in solve.sh")


# ----------------------------------------------------------------------------- test script


def test_script(task: HarborTask) -> str:
    """The self-contained test script of the converted task (see the module docstring)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sorted(task.tests_bundle.items()):
            info = tarfile.TarInfo(rel)
            info.size, info.mode, info.mtime = len(data), 0o755 if rel.endswith(".sh") else 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    b64 = base64.encodebytes(buf.getvalue()).decode()
    script = f"""# Unpack the task's tests into {TESTS_DIR}, run them, and judge by the reward file when one is written.
rm -rf {TESTS_DIR} /logs/verifier && mkdir -p {TESTS_DIR} /logs/verifier
base64 -d <<'PIVOT_TESTS_B64' | tar -xzf - -C {TESTS_DIR}
{b64}PIVOT_TESTS_B64
export TEST_DIR={TESTS_DIR}
cd {task.workdir}
bash {TESTS_DIR}/{task.test_entry}
rc=$?
if [ -f {REWARD_FILE} ]; then
    awk 'NR == 1 {{ exit !($1 + 0 >= 1) }}' {REWARD_FILE}
    exit $?
fi
exit $rc
"""
    if len(script.encode()) > MAX_TEST_SCRIPT_BYTES:
        raise HarborTaskError(f"{task.path}: the tests folder is too large to embed in the test script "
                              f"({len(script.encode())} bytes > {MAX_TEST_SCRIPT_BYTES}); move data files into "
                              f"the Docker image instead")
    return script


# ----------------------------------------------------------------------------- solve.sh splitting


@dataclasses.dataclass(frozen=True)
class SolutionScript:
    """A solve.sh cut into steps. `stop_on_error`: the script had `set -e` (or `-o errexit`)."""

    steps: list[str]
    stop_on_error: bool


_OPENERS = {"if", "for", "while", "until", "case", "select", "{"}
_CLOSERS = {"fi", "done", "esac", "}"}
_KEEP_CMD_POS = {"then", "do", "else", "elif", "if", "while", "until", "!", "{", "time", "}", "fi", "done", "esac"}
_WORD_RE = re.compile(r"[^\s;&|()<>'\"`\\$#]+")
_HEREDOC_RE = re.compile(r"<<(-?)\s*(?:'([^']*)'|\"([^\"]*)\"|\\?([A-Za-z_0-9.-]+))")


class _Scanner:
    """Tracks bash nesting over lines: quotes, $( ) and ( ), keyword blocks, heredocs."""

    def __init__(self) -> None:
        self.stack: list[str] = []  # "'", '"', "`", "$(", "("
        self.depth = 0  # keyword / brace-group blocks
        self.cmd_pos = True
        self.heredocs: list[tuple[str, bool]] = []
        self.continued = False
        self.last_op = ""
        self.function_name_next = False

    def feed(self, line: str) -> None:
        """Scan one physical line (without its newline)."""
        i, n = 0, len(line)
        if not self.continued and not self.stack:
            self.cmd_pos = True  # a newline separates commands, unless the line was continued
        self.continued = False
        self.last_op = ""
        while i < n:
            c = line[i]
            top = self.stack[-1] if self.stack else None
            if top == "'":
                if c == "'":
                    self.stack.pop()
                i += 1
                continue
            if top in ('"', "`"):
                if c == "\\":
                    i += 2
                    continue
                if c == top:
                    self.stack.pop()
                elif c == "$" and line.startswith("$(", i):
                    self.stack.append("$(")
                    self.cmd_pos = True
                    i += 2
                    continue
                elif c == "`" and top == '"':
                    self.stack.append("`")
                i += 1
                continue
            # normal mode (top level, or inside $( ) / ( ))
            if c == "\\":
                if i == n - 1:
                    self.continued = True
                i += 2
                self.cmd_pos = False
                continue
            if c in " \t":
                i += 1
                continue
            if c == "#" and (i == 0 or line[i - 1] in " \t;&|()"):
                break  # comment to end of line
            if c in "'\"`":
                self.stack.append(c)
                self.cmd_pos = False
                self.last_op = ""
                i += 1
                continue
            if c == "$":
                if line.startswith("$(", i):
                    self.stack.append("$(")
                    self.cmd_pos = True
                    i += 2
                    continue
                if line.startswith("${", i):
                    j, braces = i + 2, 1
                    while j < n and braces:
                        braces += {"{": 1, "}": -1}.get(line[j], 0)
                        j += 1
                    i = j
                    self.cmd_pos = False
                    continue
                i += 1
                self.cmd_pos = False
                continue
            if c == "(":
                self.stack.append("(")
                self.cmd_pos = True
                i += 1
                continue
            if c == ")":
                if self.stack and self.stack[-1] in ("(", "$("):
                    self.stack.pop()
                self.cmd_pos = True  # also a case pattern's ')'
                i += 1
                continue
            if c == "<":
                m = _HEREDOC_RE.match(line, i)
                if m and not line.startswith("<<<", i):
                    delim = next(g for g in m.group(2, 3, 4) if g is not None)
                    self.heredocs.append((delim, m.group(1) == "-"))
                    i = m.end()
                    continue
                i += 1
                continue
            if c in ";&|>":
                op = line[i:i + 2] if line[i:i + 2] in ("&&", "||", ";;", ">>", "|&") else c
                self.last_op = op
                self.cmd_pos = op not in (">", ">>")
                i += len(op)
                continue
            m = _WORD_RE.match(line, i)
            if not m:
                i += 1
                continue
            word = m.group(0)
            i = m.end()
            self.last_op = ""
            if self.function_name_next:  # `function name {`: the body's '{' is at command position
                self.function_name_next = False
                self.cmd_pos = True
                continue
            if self.cmd_pos:
                if word == "function":
                    self.function_name_next = True
                if word in _OPENERS:
                    self.depth += 1
                elif word in _CLOSERS:
                    self.depth = max(0, self.depth - 1)
                self.cmd_pos = word in _KEEP_CMD_POS or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word) is not None

    @property
    def complete(self) -> bool:
        return (not self.stack and self.depth == 0 and not self.heredocs and not self.continued
                and self.last_op not in ("&&", "||", "|", "|&"))


_SET_RE = re.compile(r"^set\s+[-+][A-Za-z]*(\s+[-+]?\w+)*\s*$")  # set -e, set -euo pipefail, set -o errexit
_ASSIGN_RE = re.compile(r"^((export|readonly|declare(\s+-\w+)?)(\s+[A-Za-z_]\w*(\+?=\S*)?)+"
                        r"|[A-Za-z_]\w*\+?=\S*(\s+[A-Za-z_]\w*\+?=\S*)*)$")
# `name=$(command)` / `name="..."`: a shell variable later steps read; re-evaluated in each of them.
_SUBST_ASSIGN_RE = re.compile(r"^(export\s+)?[A-Za-z_]\w*=(\$\(.*\)|`.*`|\"[^\"]*\"|'[^']*')$", flags=re.S)
_CONTEXT_RE = re.compile(r"^(cd|pushd|popd|source|\.|shopt|umask|alias|unalias|trap)(\s|$)")
_FUNCTION_RE = re.compile(r"^(function\s+[A-Za-z_][\w-]*|[A-Za-z_][\w-]*\s*\(\s*\))")


def _chunks(script: str) -> list[str]:
    """Top-level commands of `script` (multi-line constructs kept whole; blank and comment-only
    lines between commands dropped)."""
    chunks, buf = [], []
    scanner = _Scanner()
    lines = script.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        buf.append(line)
        scanner.feed(line)
        while scanner.heredocs:  # bodies follow the line that opened them, in order
            delim, strip_tabs = scanner.heredocs.pop(0)
            while i < len(lines):
                body = lines[i]
                i += 1
                buf.append(body)
                if (body.lstrip("\t") if strip_tabs else body) == delim:
                    break
            else:
                raise HarborTaskError(f"solve.sh: heredoc delimited by {delim!r} is never closed")
        if scanner.complete:
            chunks.append("\n".join(buf))
            buf = []
    if buf:
        raise HarborTaskError("solve.sh ends inside an unfinished construct (unclosed quote, if/for/while "
                              "block, brace or line continuation):\n" + "\n".join(buf)[-500:])
    return chunks


def _functions_used(chunk: str, functions: dict[str, str]) -> list[str]:
    """Definitions of the functions `chunk` calls, directly or through other functions, in
    definition order."""
    def calls(text: str, name: str) -> bool:
        return re.search(rf"(^|[\s;&|(`]){re.escape(name)}($|[\s;&|)`])", text, flags=re.M) is not None

    needed: set[str] = set()
    frontier = [chunk]
    while frontier:
        text = frontier.pop()
        for name, definition in functions.items():
            if name not in needed and calls(text, name):
                needed.add(name)
                frontier.append(definition)
    return [d for name, d in functions.items() if name in needed]


def split_solution(script: str) -> SolutionScript:
    """Cut a solve.sh into the steps of an expert trajectory (see the module docstring)."""
    steps: list[str] = []
    context: list[str] = []  # cd / export / assignments / source, in order
    functions: dict[str, str] = {}  # name -> definition, prepended only to steps that call it
    stop_on_error = False
    for chunk in _chunks(script):
        head = chunk.strip()
        if _SET_RE.match(head):
            flags = " ".join(head.split()[1:])
            if re.search(r"-[A-Za-z]*e", flags) or re.search(r"-o\s+errexit", flags):
                stop_on_error = True
            continue
        simple = "\n" not in head and not re.search(r"[;&|]", head)  # one command, no operators
        if (simple and (_CONTEXT_RE.match(head) or _ASSIGN_RE.match(head))) or _SUBST_ASSIGN_RE.match(head):
            context.append(head)
            continue
        fn = _FUNCTION_RE.match(head)
        if fn:
            name = re.sub(r"^function\s+|\s*\(\s*\)$", "", fn.group(1))
            functions[name] = chunk
            continue
        steps.append("\n".join(context + _functions_used(chunk, functions) + [chunk]))
    return SolutionScript(steps, stop_on_error)


# ----------------------------------------------------------------------------- conversion


def build_image(task: HarborTask, fallback_base: str | None = None, *, force: bool = False) -> str:
    """Build (or reuse) the task's image; FROM images that cannot be pulled fall back to the base."""
    try:
        from sandboxes.build import DEFAULT_IMAGE, build_task_image
    except ImportError:
        # `sandboxes/` sits next to the packages in a source checkout but is not installed with them.
        import sys

        repo = Path(__file__).resolve().parents[3]
        if not (repo / "sandboxes" / "build.py").is_file():
            raise HarborTaskError("cannot import sandboxes.build (the image builder); run from a pivotrl "
                                  "source checkout or put its root on PYTHONPATH") from None
        sys.path.insert(0, str(repo))
        from sandboxes.build import DEFAULT_IMAGE, build_task_image

    return build_task_image(task.dockerfile_dir, task.image_tag(), fallback_base or DEFAULT_IMAGE, force=force)


def to_task_dict(task: HarborTask, image: str | None) -> dict[str, Any]:
    """The trajectory's `task` field for a converted task."""
    return {
        "image": image, "workdir": task.workdir, "setup": "", "test": test_script(task),
        "timeout_s": task.limits.timeout_s, "test_timeout_s": task.test_timeout_s,
        "agent_timeout_s": task.agent_timeout_s, "instruction": task.instruction,
        "limits": {"cpus": task.limits.cpus, "memory_mb": task.limits.memory_mb},
        "source": {"format": task.layout, "name": task.name}, "metadata": task.metadata,
    }


@dataclasses.dataclass(frozen=True)
class ConvertedTask:
    """A converted task's trajectory plus what the recording measured."""

    trajectory: dict[str, Any]
    initial_passed: bool | None  # the test's outcome before the solution (None: not checked)
    step_exit_codes: list[int]


def record_solution(task: HarborTask, backend: SandboxBackend | str, image: str, *,
                    check_initial: bool = True) -> ConvertedTask:
    """Run the solution step by step in a sandbox of `image` and return the SFT trajectory.
    Raises ExpertFailedError when a step fails under `set -e` or when the test fails afterwards."""
    if task.solution is None:
        raise HarborTaskError(f"{task.path}: no solution (solution/solve.sh or solution.sh) to turn into a trajectory")
    parsed = split_solution(task.solution)
    if not parsed.steps:
        raise HarborTaskError(f"{task.path}: the solution has no commands")
    be = make_backend(backend) if isinstance(backend, str) else backend
    task_dict = to_task_dict(task, image)
    initial_passed: bool | None = None
    outputs, codes = [], []
    with be.create(image, workdir=task.workdir, limits=task.limits) as sb:
        if check_initial:
            snap = sb.snapshot()
            try:
                with be.fork(snap) as probe:
                    initial_passed = probe.exec(task_dict["test"], timeout=task.test_timeout_s).ok
            finally:
                be.release(snap)
        for k, step in enumerate(parsed.steps):
            res = sb.exec(step, timeout=task.limits.timeout_s)
            outputs.append(format_tool_output(res, timeout_s=task.limits.timeout_s))
            codes.append(-1 if res.timed_out else res.exit_code)
            if parsed.stop_on_error and not res.ok:
                raise ExpertFailedError(f"{task.path}: solution step {k} failed under set -e:\n$ {step}\n{outputs[-1]}")
        res = sb.exec(task_dict["test"], timeout=task.test_timeout_s)
        if not res.ok:
            raise ExpertFailedError(f"{task.path}: the tests fail after the solution ran:\n"
                                    f"{format_tool_output(res, timeout_s=task.test_timeout_s)[-3000:]}")
    task_dict["recorded_with"] = {"backend": be.name, "image": image}
    steps = [ExpertStep("", s) for s in parsed.steps]
    traj = {"id": f"harbor-{task.name}", "domain": "terminal", "task": task_dict, "tools": [BASH_TOOL],
            "messages": build_messages(task.instruction, steps, outputs, FINAL_MESSAGE, task.workdir)}
    return ConvertedTask(traj, initial_passed, codes)


def convert_task(path: str | Path, backend: SandboxBackend | str = "docker", *, fallback_base: str | None = None,
                 check_initial: bool = True) -> ConvertedTask:
    """Read a task folder, build its image and record its solution as a trajectory."""
    task = load_task(path)
    image = build_image(task, fallback_base)
    return record_solution(task, backend, image, check_initial=check_initial)


def convert_folder(root: str | Path, backend: SandboxBackend | str = "docker", **kwargs: Any) -> list[dict[str, Any]]:
    """Convert every task folder directly under `root` (folders with task.toml or task.yaml)."""
    folders = [p for p in sorted(Path(root).iterdir()) if (p / "task.toml").is_file() or (p / "task.yaml").is_file()]
    if not folders:
        raise HarborTaskError(f"{root}: no task folders (with task.toml or task.yaml) found")
    be = make_backend(backend) if isinstance(backend, str) else backend
    return [convert_task(p, be, **kwargs).trajectory for p in folders]


BUILTIN_TASKS_DIR = Path(__file__).resolve().parent / "harbor_tasks"
