"""What every out-of-domain benchmark shares: items, verdicts, results, and how the harness asks the
model for completions.

A benchmark turns its data into `EvalItem`s (a chat prompt + whatever its scorer needs), the harness
generates one completion per item (batched when the generate function allows it), and the benchmark
scores each completion into an `ItemVerdict`. Three outcomes are kept apart on purpose:

- scored: the completion was judged, right or wrong (garbage output is simply wrong, with a reason);
- unavailable: the item cannot be judged on this machine (a checker needs data that is not
  installed); it is never scored, only counted with its reason;
- infra-failed: the harness or the model backend broke (generate_fn raised, the executor could not
  start); masked with a `failure_kind`, never counted as a wrong answer.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from pivot_envs.errors import PivotError

logger = logging.getLogger(__name__)

Messages = list[dict]
Tools = list[dict] | None
GenerateFn = Callable[[Messages, Tools], str]


class OODEvalError(PivotError, RuntimeError):
    """The OOD harness was called wrongly (unknown benchmark name, bad limit)."""


class BenchmarkUnavailableError(OODEvalError):
    """A whole benchmark cannot run here (its data package or a dependency is missing). The message
    says what to install."""


class BatchGenerateFn(Protocol):
    """A generate function that can also complete many prompts at once (policy_generate_fn is one)."""

    def __call__(self, messages: Messages, tools: Tools) -> str: ...

    def generate_batch(self, requests: Sequence[tuple[Messages, Tools]]) -> list[str]: ...


@dataclasses.dataclass
class EvalItem:
    """One prompt of a benchmark. `payload` is what the benchmark's scorer needs (tests, answer...)."""

    item_id: str
    messages: Messages
    tools: Tools = None
    payload: Any = None


@dataclasses.dataclass
class ItemVerdict:
    """The judgement of one completion. `correct` is None when the item was not scored (infra failure)."""

    item_id: str
    correct: bool | None
    reason: str
    failure_kind: str | None = None
    output: str = ""

    def to_dict(self, max_output_chars: int = 500) -> dict:
        d = dataclasses.asdict(self)
        d["output"] = self.output[:max_output_chars]
        return d


@dataclasses.dataclass
class BenchmarkResult:
    """One benchmark's outcome. `accuracy` is n_correct / n over scored items; None when nothing was
    scored (the benchmark is unavailable, or every item failed for infra reasons)."""

    name: str
    status: str  # "ok" | "unavailable"
    n: int = 0
    n_correct: int = 0
    n_unavailable: int = 0
    unavailable_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    n_infra_failed: int = 0
    infra_reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0
    note: str = ""
    metric: str = "accuracy"
    items: list[ItemVerdict] = dataclasses.field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.n_correct / self.n if self.n else None

    @classmethod
    def unavailable(cls, name: str, reason: str, wall_s: float = 0.0) -> BenchmarkResult:
        return cls(name=name, status="unavailable", note=reason, wall_s=wall_s)

    @classmethod
    def from_verdicts(cls, name: str, verdicts: Sequence[ItemVerdict], *, metric: str,
                      unavailable_reasons: dict[str, int] | None = None, note: str = "") -> BenchmarkResult:
        scored = [v for v in verdicts if v.correct is not None]
        infra = collections.Counter(v.failure_kind or "unknown" for v in verdicts if v.correct is None)
        unavailable_reasons = dict(unavailable_reasons or {})
        return cls(name=name, status="ok", n=len(scored), n_correct=sum(1 for v in scored if v.correct),
                   n_unavailable=sum(unavailable_reasons.values()), unavailable_reasons=unavailable_reasons,
                   n_infra_failed=sum(infra.values()), infra_reasons=dict(infra), note=note, metric=metric,
                   items=list(verdicts))

    def to_dict(self, include_items: bool = True) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "items"}
        d["accuracy"] = self.accuracy
        if include_items:
            d["items"] = [v.to_dict() for v in self.items]
        return d


def package_dir(module_name: str) -> Path | None:
    """The folder of an installed package, found WITHOUT importing it (importing a data package can
    pull dependencies that are not installed). None when it is not installed."""
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def generate_many(generate_fn: GenerateFn, items: Sequence[EvalItem]) -> list[str | BaseException]:
    """One completion per item: through `generate_fn.generate_batch` when it has one (one batched call,
    much faster for a local policy), else one call per item. A call that raises, or returns something
    other than a string, yields the exception in that item's place, so that one broken call never
    loses the others' results (the caller masks it as an infra failure)."""
    requests = [(it.messages, it.tools) for it in items]
    batch = getattr(generate_fn, "generate_batch", None)
    if callable(batch):
        try:
            outs = list(batch(requests))
            if len(outs) != len(requests):
                raise OODEvalError(f"generate_batch returned {len(outs)} completions for {len(requests)} prompts")
            return [o if isinstance(o, str) else _not_a_string(o) for o in outs]
        except Exception as e:  # noqa: BLE001 - a backend failure is reported per item, never a crash
            logger.warning("generate_batch failed (%s: %s); masking %d items", type(e).__name__, e, len(items))
            return [e for _ in items]
    results: list[str | BaseException] = []
    for messages, tools in requests:
        try:
            out = generate_fn(messages, tools)
            results.append(out if isinstance(out, str) else _not_a_string(out))
        except Exception as e:  # noqa: BLE001 - see above
            logger.warning("generate_fn failed (%s: %s)", type(e).__name__, e)
            results.append(e)
    return results


def _not_a_string(value: Any) -> OODEvalError:
    return OODEvalError(f"generate_fn must return the assistant text (str), got {type(value).__name__}")


def score_items(name: str, generate_fn: GenerateFn, items: Sequence[EvalItem],
                score: Callable[[EvalItem, str], ItemVerdict]) -> list[ItemVerdict]:
    """Generate for every item and score each completion. Generation failures and scorer crashes are
    masked as infra failures: a scorer is supposed to turn bad output into a verdict itself, so a crash
    there is a harness bug, not the model's fault."""
    verdicts = []
    for item, out in zip(items, generate_many(generate_fn, items)):
        if isinstance(out, BaseException):
            verdicts.append(ItemVerdict(item.item_id, None, f"generation failed: {type(out).__name__}: {out}",
                                        failure_kind="generation_error"))
            continue
        try:
            verdicts.append(score(item, out))
        except Exception as e:
            logger.exception("%s scorer crashed on item %s", name, item.item_id)
            verdicts.append(ItemVerdict(item.item_id, None, f"scorer crashed: {type(e).__name__}: {e}",
                                        failure_kind="scorer_error", output=out))
    return verdicts
