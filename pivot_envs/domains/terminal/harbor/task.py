"""Reading Harbor / Terminal-Bench task folders into a validated `HarborTask` (nothing built or run).

Harbor (`task.toml`)                      Terminal-Bench (`task.yaml`)
    instruction.md                            task.yaml      (instruction, max_*_timeout_sec, ...)
    task.toml                                 Dockerfile
    environment/Dockerfile                    solution.sh    (optional)
    solution/solve.sh      (optional)         run-tests.sh
    tests/test.sh                             tests/...

A task without a solution is still a task: it converts to an episode-only record (see convert.py).
`[environment] allow_internet` is read here and judged in convert.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from pivot_envs.errors import PivotError
from pivot_envs.sandbox import SandboxLimits

DEFAULT_WORKDIR = "/app"
DEFAULT_AGENT_TIMEOUT_S = 600.0
DEFAULT_TEST_TIMEOUT_S = 120.0
MAX_COMMAND_TIMEOUT_S = 300.0  # one command never gets more than this, whatever the agent budget
ROOT_AS_DOCKER_GIVES = True
"""Harbor / Terminal-Bench tasks run as root under Docker's default capability set (chown, setuid/setgid,
DAC override, ...) and their solutions rely on it (`chpasswd`, `useradd`, `chown`): converted tasks ask
their sandbox for that allow-list (`SandboxLimits.root_caps`; still no CAP_SYS_ADMIN, NET_ADMIN,
SYS_PTRACE, with no-new-privileges and seccomp), where the built-in suite's sandboxes hold none."""


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
    allow_internet: bool | None = None  # `[environment] allow_internet` as declared (None: not declared)
    # A prebuilt image (`[environment] docker_image`, no Dockerfile): the Dockerfile built is this text.
    generated_dockerfile: str | None = None

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9_.-]+", "-", self.name.lower()).strip("-.") or "task"

    def build_context_hash(self) -> str:
        """Hash of the Docker build context (the Dockerfile folder), file names and contents."""
        if self.generated_dockerfile is not None:
            return hashlib.sha256(self.generated_dockerfile.encode()).hexdigest()
        return tree_hash(self.dockerfile_dir)

    def content_hash(self) -> str:
        """Hash of the whole task folder: a resumed conversion redoes a task only when this changed."""
        return tree_hash(self.path)


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


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


def _number(value: Any, source: str, key: str, default: float) -> float:
    found = _optional_number(value, source, key)
    return default if found is None else found


def _optional_number(value: Any, source: str, key: str) -> float | None:
    if value is None:
        return None
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
        m = re.match(r"\s*WORKDIR\s+(\S+)\s*$", line, flags=re.IGNORECASE)
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
    generated = None
    prebuilt = env_cfg.get("docker_image")
    if not (dockerfile_dir / "Dockerfile").is_file() and prebuilt is not None:
        if not isinstance(prebuilt, str) or not prebuilt.strip() or any(c.isspace() for c in prebuilt.strip()):
            raise HarborTaskError(f"{src}: [environment] docker_image must be an image name, got {prebuilt!r}")
        # Harbor runs a prebuilt image as it is; its working directory is then the task's /app.
        generated = f"FROM {prebuilt.strip()}\nWORKDIR {DEFAULT_WORKDIR}\n"
    dockerfile = generated if generated is not None else _read_text(
        dockerfile_dir / "Dockerfile", "environment/Dockerfile (or [environment] docker_image in task.toml)")
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
        build_timeout_s=_optional_number(env_cfg.get("build_timeout_sec"), src, "[environment] build_timeout_sec"),
        limits=SandboxLimits(cpus=cpus, memory_mb=memory_mb, timeout_s=min(agent_t, MAX_COMMAND_TIMEOUT_S),
                             root_caps=ROOT_AS_DOCKER_GIVES),
        metadata=dict(cfg.get("metadata", {})), generated_dockerfile=generated,
        allow_internet=_flag(env_cfg.get("allow_internet"), src, "[environment] allow_internet"))


def _flag(value: Any, source: str, key: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise HarborTaskError(f"{source}: {key} must be true or false, got {value!r}")


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
        build_timeout_s=None, limits=SandboxLimits(timeout_s=min(agent_t, MAX_COMMAND_TIMEOUT_S), root_caps=ROOT_AS_DOCKER_GIVES),
        metadata=meta)


def _check_solution_dir(folder: Path, allowed: set[str]) -> None:
    if not folder.is_dir():
        return
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name not in allowed)
    if extra:
        raise HarborTaskError(f"{folder}: files besides solve.sh ({extra}) are not supported: each step of "
                              f"the converted trajectory must be a self-contained command; inline them in solve.sh")
