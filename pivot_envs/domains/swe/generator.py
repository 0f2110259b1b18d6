"""Task generator, SWE-smith style: inject a bug by AST mutation, run the repository's test suite in
its container, and keep the bug only when at least one test that passed before now fails
(FAIL_TO_PASS) and at least one still passes (PASS_TO_PASS).

    python -m pivot_envs.domains.swe.generator --per-repo 45 --seed 0     # writes data/instances.jsonl.gz

Per repository, one container from its image (sandboxes/swe):
1. the clean suite runs twice: tests that pass both times are the reference (a flaky test is never
   FAIL_TO_PASS or PASS_TO_PASS);
2. candidate mutations of the library's modules (test files excluded) are drawn round-robin over
   mutation kinds with a seeded RNG; each is written into the working tree, the suite runs, the file
   is restored;
3. a candidate is kept when 1..MAX_FAIL_TO_PASS reference tests fail, no test module fails to import
   (that would be a broken package, not a bug), and the run ends within its time limit. The
   bug is committed (fixed author/date: the commit id is reproducible) to get `base_commit`; the gold
   patch is `git diff` from the buggy to the clean tree, made by git itself.

The problem statement is written from the real failing output the way a user reports a bug: the
failing test, the assertion or exception with the test's own lines from the traceback, and the other
failing tests. Frames inside the library are dropped and the statement is checked not to contain the
mutated line or the patch.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import logging
import random
import re
import shlex
import time
from pathlib import Path
from typing import Any

from pivot_envs.domains.swe.mutations import (
    KINDS,
    Mutation,
    find_mutations,
    is_valid,
    sample_balanced,
)
from pivot_envs.domains.swe.repository import FRESH_HISTORY
from pivot_envs.domains.swe.testlog import (
    collection_errors,
    failure_sections,
    parse_pytest_log,
    passing,
    section_name,
)
from pivot_envs.errors import PivotError
from pivot_envs.sandbox import Sandbox, SandboxBackend, SandboxLimits, make_backend

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
INSTANCES_FILE = DATA_DIR / "instances.jsonl.gz"
MAX_FAIL_TO_PASS = 25
SUITE_TIMEOUT_S = 90.0
MAX_CANDIDATE_SECONDS = 40.0  # a mutated run slower than this hangs somewhere: dropped
SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
CREATED_AT = "2026-01-01T00:00:00Z"
LIMITS = SandboxLimits(cpus=1.0, memory_mb=2048, pids=512, timeout_s=SUITE_TIMEOUT_S, output_bytes=4 * 1024 * 1024)


class GenerationError(PivotError, RuntimeError):
    """The repository cannot be used to make tasks (its clean suite fails to run, no tests pass)."""


@dataclasses.dataclass
class Candidate:
    mutation: Mutation
    outcomes: dict[str, str]
    log: str
    seconds: float


def run_suite(box: Sandbox, spec: Any, timeout_s: float = SUITE_TIMEOUT_S, per_test_s: float = 20.0,
              files: list[str] | None = None) -> tuple[dict[str, str], str, float, bool]:
    """Run the repository's suite (or `files` of it); (outcomes, log, seconds, timed_out)."""
    t0 = time.perf_counter()
    res = box.exec(spec.test_command(files, timeout_s=per_test_s), timeout=timeout_s)
    text = res.stdout + res.stderr
    return parse_pytest_log(text), text, time.perf_counter() - t0, res.timed_out


def library_modules(box: Sandbox, spec: Any) -> list[str]:
    """The library's .py files (relative to /testbed), test modules excluded."""
    res = box.exec("git ls-files -- " + " ".join(f"'{d}/*.py'" for d in spec.package_dirs), timeout=30)
    files = [f for f in res.stdout.split() if f.endswith(".py")]
    return sorted(f for f in files if "/tests/" not in f and "/test/" not in f
                  and not Path(f).name.startswith(("test_", "conftest")))


def related_test_files(box: Sandbox, spec: Any, module_path: str, n_modules: int) -> list[str] | None:
    """The test files that mention the mutated module by name (SWE-bench, too, runs an instance's test
    files, not the whole suite); None = none found, run everything. A module named like its package
    (`__init__.py`) or a package of one module counts as used by every test file."""
    name = Path(module_path).stem
    if name == "__init__" or n_modules <= 1:
        return None
    res = box.exec("grep -rlw -- " + shlex.quote(name) + " " + " ".join(shlex.quote(p) for p in spec.test_paths)
                   + " --include='*.py' | sort", timeout=30)
    files = [f for f in res.stdout.split() if f.endswith(".py")]
    return files or None


def classify(reference_pass: set[str], outcomes: dict[str, str]) -> tuple[list[str], list[str]]:
    """(FAIL_TO_PASS, PASS_TO_PASS) of a mutated run against the reference passing tests."""
    now_pass = passing(outcomes)
    f2p = sorted(t for t in reference_pass if t not in now_pass)
    p2p = sorted(t for t in reference_pass if t in now_pass)
    return f2p, p2p


# --------------------------------------------------------------------------- problem statements

_FRAME = re.compile(r"^(\S+\.py):(\d+): in (\S+)$")


def traceback_excerpt(section: str, library_files: set[str], forbidden: list[str], max_lines: int = 14) -> str:
    """The user-visible part of a `--tb=short` failure: the test's own frames and the error lines.
    Frames inside the library (the bug's location) are dropped; so is any line that contains a
    forbidden text (the mutated or the original source line)."""
    out: list[str] = []
    skip_code = False
    for line in section.splitlines():
        m = _FRAME.match(line)
        if m:
            skip_code = m.group(1) in library_files or not ("test" in m.group(1))
            if not skip_code:
                out.append(line)
            continue
        if line.startswith(("E ", "E\t")) or line == "E":
            skip_code = False
            out.append(line)
            continue
        if line.startswith("    ") and not skip_code:
            out.append(line)
    cleaned = [ln for ln in out if not any(f and f in ln for f in forbidden)]
    return "\n".join(cleaned[:max_lines]).rstrip()


_TEMPLATES = (
    ("After updating to the current {repo} sources, `{test}` fails for me.\n\n```\n{excerpt}\n```\n{others}"
     "It passed before. Could you take a look?"),
    ("{symptom}\n\nTo reproduce: `python -m pytest {test}`\n\n```\n{excerpt}\n```\n{others}"
     "Expected: the test passes, as it did on the release."),
    ("I think there is a regression in {repo}. Running the test suite I get a failure in `{test}`:\n\n"
     "```\n{excerpt}\n```\n{others}"),
    ("Wrong result from {repo}: `{test}` no longer passes.\n\n```\n{excerpt}\n```\n{others}"
     "Nothing else changed on my side."),
)


def problem_statement(repo: str, f2p: list[str], sections: dict[str, str], mutation: Mutation,
                      library_files: set[str], rng: random.Random) -> str:
    first = f2p[0]
    forbidden = [line.strip() for line in (mutation.old_text + "\n" + mutation.new_text).splitlines()
                 if len(line.strip()) >= 8]
    section = sections.get(section_name(first), "")
    excerpt = traceback_excerpt(section, library_files, forbidden) or "(the test fails; no traceback was printed)"
    e_lines = [ln[1:].strip() for ln in excerpt.splitlines() if ln.startswith("E") and ln[1:].strip()]
    symptom = f"`{first.split('::')[-1]}` fails: {e_lines[0][:160]}" if e_lines else f"`{first}` fails"
    rest = f2p[1:]
    if rest:
        shown = ", ".join(f"`{t}`" for t in rest[:5])
        more = f" (and {len(rest) - 5} more)" if len(rest) > 5 else ""
        others = f"These fail as well: {shown}{more}.\n\n"
    else:
        others = ""
    text = rng.choice(_TEMPLATES).format(repo=repo, test=first, excerpt=excerpt, others=others, symptom=symptom)
    for f in forbidden:
        if f in text:
            raise GenerationError(f"problem statement would leak the mutated line {f!r}")
    return text


# --------------------------------------------------------------------------- instances

def split_of(instance_id: str, seed: int) -> str:
    """Seeded, order-independent split: a hash of (seed, id) picks train / val / test."""
    u = int(hashlib.sha256(f"{seed}:{instance_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    acc = 0.0
    for name, share in SPLITS:
        acc += share
        if u <= acc:
            return name
    return SPLITS[-1][0]


def _git(box: Sandbox, cmd: str) -> str:
    res = box.exec(cmd, timeout=60)
    if not res.ok:
        raise GenerationError(f"`{cmd}` failed in the repository container: {res.stdout[-500:]} {res.stderr[-500:]}")
    return res.stdout


def instance_id_of(spec: Any, m: Mutation) -> str:
    digest = hashlib.sha256(f"{m.path}:{m.start_line}:{m.new_text}".encode()).hexdigest()[:8]
    return f"pivotrl__{spec.name}.{m.kind}.{digest}"


def make_instance(box: Sandbox, spec: Any, cand: Candidate, f2p: list[str], p2p: list[str], env_commit: str,
                  library_files: set[str], seed: int) -> dict[str, Any]:
    """Take both patches from git (the bug: clean -> buggy; the gold patch: its reverse), compute the
    instance's base commit in a copy of the buggy tree, write the statement."""
    m = cand.mutation
    instance_id = instance_id_of(spec, m)
    bug_patch = _git(box, f"git diff -- '{m.path}'")
    gold_patch = _git(box, f"git diff -R -- '{m.path}'")
    base_commit = _git(box, f"rm -rf /tmp/pivotrl-base && cp -a /testbed /tmp/pivotrl-base && cd /tmp/pivotrl-base "
                            f"&& {FRESH_HISTORY} && rm -rf /tmp/pivotrl-base").strip()
    rng = random.Random(f"{seed}:{instance_id}")
    statement = problem_statement(spec.name, f2p, failure_sections(cand.log), m, library_files, rng)
    return {
        "instance_id": instance_id,
        "repo": spec.github,
        "base_commit": base_commit,
        "patch": gold_patch,
        "test_patch": "",
        "problem_statement": statement,
        "hints_text": "",
        "created_at": CREATED_AT,
        "version": spec.version,
        "FAIL_TO_PASS": json.dumps(f2p),
        "PASS_TO_PASS": json.dumps(p2p),
        "environment_setup_commit": env_commit,
        # beyond SWE-bench's fields (SWE-smith carries the same kind): how to rebuild the instance
        "image_name": spec.image,
        "bug_patch": bug_patch,
        "mutation": {"kind": m.kind, "path": m.path, "function": m.function, "line": m.start_line,
                     "description": m.description},
        "split": split_of(instance_id, seed),
    }


def generate_repo(spec: Any, backend: SandboxBackend, *, per_repo: int, max_candidates: int,
                  seed: int, part: Path | None = None, per_function: int = 2) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Instances of one repository and a report (candidates tried, kept, dropped by reason). With
    `part`, the instances so far and the report are rewritten there after every kept instance, so
    a run that is stopped keeps what it made."""
    from pivot_envs.images.swe.repos import build_repo_image

    build_repo_image(spec)
    stats: dict[str, Any] = {"repo": spec.name, "candidates": 0, "kept": 0, "no_failing_test": 0,
                             "too_many_failing": 0, "import_error": 0, "slow_or_hung": 0, "no_passing_left": 0}
    with backend.create(spec.image, workdir="/testbed", limits=LIMITS) as box:
        env_commit = _git(box, "git rev-parse HEAD").strip()
        runs = [run_suite(box, spec) for _ in range(2)]
        for outcomes, text, _, timed_out in runs:
            if timed_out or not passing(outcomes) or collection_errors(outcomes):
                raise GenerationError(f"{spec.name}: the clean test suite does not run cleanly "
                                      f"(timed out={timed_out}): {text[-1500:]}")
        reference = passing(runs[0][0]) & passing(runs[1][0])
        stats.update(reference_tests=len(reference), suite_seconds=round(runs[1][2], 2))
        modules = library_modules(box, spec)
        sources = {p: box.read_file(p).decode() for p in modules}
        candidates = [m for p in modules for m in find_mutations(p, sources[p])]
        rng = random.Random(f"{seed}:{spec.name}")
        sampled = sample_balanced(candidates, max_candidates, rng, valid=lambda m: is_valid(m, sources[m.path]),
                                  per_function=per_function)
        # resume: instances already in `part` are kept, and their mutations are not run again
        instances: list[dict[str, Any]] = load_instances(part) if part is not None and part.is_file() else []
        done = {i["instance_id"] for i in instances}
        stats["kept"] = stats["resumed"] = len(instances)
        related_files: dict[str, list[str] | None] = {}
        for m in sampled:
            if len(instances) >= per_repo:
                break
            if instance_id_of(spec, m) in done:
                continue
            stats["candidates"] += 1
            box.write_file(m.path, m.apply(sources[m.path]))
            try:
                # a mutation that makes tests loop is dropped fast: 5 s per test, 40 s per run
                if m.path not in related_files:
                    related_files[m.path] = related_test_files(box, spec, m.path, len(modules))
                files = related_files[m.path]
                outcomes, text, seconds, timed_out = run_suite(box, spec, timeout_s=MAX_CANDIDATE_SECONDS, per_test_s=5.0,
                                                               files=files)
                cand = Candidate(m, outcomes, text, seconds)
                selected = reference if files is None else {t for t in reference if t.split("::")[0] in files}
                f2p, p2p = classify(selected, outcomes)
                reason = ("slow_or_hung" if timed_out or seconds > MAX_CANDIDATE_SECONDS else
                          "import_error" if collection_errors(outcomes) else
                          "no_failing_test" if not f2p else
                          "too_many_failing" if len(f2p) > MAX_FAIL_TO_PASS else
                          "no_passing_left" if not p2p else None)
                if reason is None:
                    try:
                        instances.append(make_instance(box, spec, cand, f2p, p2p, env_commit, set(modules), seed))
                        stats["kept"] += 1
                        if part is not None:
                            save_instances(instances, part)
                            part.with_suffix("").with_suffix(".stats.json").write_text(json.dumps(stats) + "\n")
                    except GenerationError as e:
                        log.info("dropped %s: %s", m.description, e)
                        stats["leaky_statement"] = stats.get("leaky_statement", 0) + 1
                else:
                    stats[reason] += 1
            finally:
                box.write_file(m.path, sources[m.path])
                box.exec(f"git reset -q --hard {env_commit}", timeout=60)
            log.info("%s: %d/%d kept (%s)", spec.name, stats["kept"], stats["candidates"], m.kind)
    return instances, stats


def save_instances(instances: list[dict[str, Any]], path: Path = INSTANCES_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for inst in instances:
            fh.write(json.dumps(inst, ensure_ascii=False, sort_keys=True) + "\n")


def load_instances(path: Path | str = INSTANCES_FILE) -> list[dict[str, Any]]:
    """The generated instances (SWE-bench fields plus ours). `path` may be .jsonl or .jsonl.gz."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no SWE instances at {path}; generate them with "
                                f"`python -m pivot_envs.domains.swe.generator`")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main(argv: list[str] | None = None) -> int:
    from pivot_envs.images.swe.repos import REPOS

    parser = argparse.ArgumentParser(prog="python -m pivot_envs.domains.swe.generator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", nargs="*", default=list(REPOS))
    parser.add_argument("--per-repo", type=int, default=45, help="instances to keep per repository")
    parser.add_argument("--max-candidates", type=int, default=120, help="mutations to try per repository")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-function", type=int, default=2, help="mutations tried per function at most")
    parser.add_argument("--parts", type=Path, default=DATA_DIR / "parts",
                        help="one file per repository is written here as it finishes (several runs may share it)")
    parser.add_argument("--merge", action="store_true", help="only merge the parts into --out")
    parser.add_argument("--out", type=Path, default=INSTANCES_FILE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not args.merge:
        backend = make_backend("docker")
        try:
            for name in args.repos:
                instances, stats = generate_repo(REPOS[name], backend, per_repo=args.per_repo,
                                                 max_candidates=args.max_candidates, seed=args.seed,
                                                 part=args.parts / f"{name}.jsonl.gz", per_function=args.per_function)
                save_instances(instances, args.parts / f"{name}.jsonl.gz")
                (args.parts / f"{name}.stats.json").write_text(json.dumps(stats) + "\n")
                print(json.dumps(stats))
        finally:
            backend.close()
        return 0
    all_instances: list[dict[str, Any]] = []
    report = []
    for name in REPOS:
        part = args.parts / f"{name}.jsonl.gz"
        if part.is_file():
            all_instances += load_instances(part)
            report.append(json.loads((args.parts / f"{name}.stats.json").read_text()))
    save_instances(all_instances, args.out)
    kinds = {k: sum(1 for i in all_instances if i["mutation"]["kind"] == k) for k in KINDS}
    summary = {"instances": len(all_instances), "per_repo": {s["repo"]: s["kept"] for s in report},
               "per_kind": kinds, "per_split": {s: sum(1 for i in all_instances if i["split"] == s) for s, _ in SPLITS},
               "repos": report}
    (args.out.parent / "generation_report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "repos"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
