"""Learning curves: a trained method evaluated at checkpoints until it plateaus, and what a curve says.

`EpisodeEvaluator` is a `pivot_algo.trainer.Evaluator`: every `every` optimiser steps (and at step 0)
it runs greedy whole episodes of the policy on small validation suites (in-domain and out-of-domain
tasks of their own seed range, never the final evaluation's), keeps the weights of the best in-domain
point (early stopping: the run's result is its best validation checkpoint) and stops training at a
plateau:

    plateau: at least `min_points` evaluations, the curve has risen at least `plateau_gain` above its
    start at some point, and the best in-domain score of the last quarter of the evaluated steps is less
    than `plateau_gain` above the best score before it.

A run that has not yet risen above its start is not at a plateau: it goes on to the step cap. (With only
the last rule, SFT at low rates dipped, then stopped at the first allowed point, 35 steps in, while the
same method at a higher rate rose from 18% to 100% between steps 35 and 50: a slow start looked like a
plateau and the rate grid compared runs of unequal length.)

The curve's points carry the run's cumulative costs at that step (model calls, wall seconds), so the
efficiency figure (accuracy against model calls / wall time) is drawn from them, and a matched-accuracy
cost ("calls to first reach accuracy a") is read off them (`calls_to_reach`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

IN_DOMAIN = "eval/in_domain"


def plateaued(curve: Sequence[dict[str, float]], *, key: str = IN_DOMAIN, min_points: int = 5,
              gain: float = 0.01) -> bool:
    """True when the curve rose at least `gain` above its first point and the best `key` over the last
    quarter of the evaluated steps is not at least `gain` above the best before it (see the module
    docstring). Needs `min_points` points."""
    if len(curve) < min_points or max(p[key] for p in curve) < curve[0][key] + gain:
        return False
    last_step = curve[-1]["step"]
    cut = last_step - max(1.0, 0.25 * last_step)
    before = [p[key] for p in curve if p["step"] <= cut]
    recent = [p[key] for p in curve if p["step"] > cut]
    return bool(before) and bool(recent) and max(recent) < max(before) + gain


@dataclasses.dataclass
class EpisodeEvaluator:
    """Greedy episodes on validation suites every `every` steps; stops at a plateau or never (plateau
    rule off with `gain` <= 0). `episodes(policy, suite_tasks) -> per-task success list` runs one suite."""

    suites: dict[str, list[dict]]
    episodes: Callable[[Any, list[dict]], list[float]]
    every: int = 10
    min_points: int = 5
    gain: float = 0.01
    best_score: float = -math.inf
    best_evaluation: int = -1
    """Index (in the curve) of the evaluation with the best in-domain score (the earliest of ties)."""
    best_state: dict[str, Any] | None = None
    """The weights at that evaluation (a CPU copy): early stopping returns the best checkpoint on the
    validation curve, not whatever the last steps drifted to."""
    evaluations: int = 0
    probes: dict[str, Callable[[Any], float]] = dataclasses.field(default_factory=dict)
    """More numbers per point, `eval/<name>` = probe(policy), e.g. the forward KL to the start policy."""

    def evaluate(self, policy: Any) -> dict[str, float]:
        out = {}
        for name, tasks in self.suites.items():
            per = self.episodes(policy, tasks)
            out[f"eval/{name}"] = sum(per) / max(len(per), 1)
        for name, probe in self.probes.items():
            out[f"eval/{name}"] = float(probe(policy))
        if out.get(IN_DOMAIN, -math.inf) > self.best_score:
            self.best_score, self.best_evaluation = out[IN_DOMAIN], self.evaluations
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in policy.model.state_dict().items()}
        self.evaluations += 1
        return out

    def should_stop(self, curve: list[dict[str, float]]) -> bool:
        return self.gain > 0 and plateaued(curve, min_points=self.min_points, gain=self.gain)


def plateau_value(curve: Sequence[dict[str, float]], key: str = IN_DOMAIN) -> float:
    """A curve's plateau accuracy: the mean of `key` over its last quarter of steps (at least one point).
    Less noisy than the last point, and not the maximum (which a noisy curve overstates)."""
    if not curve:
        return math.nan
    last_step = curve[-1]["step"]
    cut = last_step - 0.25 * last_step
    recent = [p[key] for p in curve if p["step"] >= cut] or [curve[-1][key]]
    return sum(recent) / len(recent)


def calls_to_reach(curve: Sequence[dict[str, float]], target: float, *, key: str = IN_DOMAIN,
                   cost: str = "costs/rollout_turns", offset: float = 0.0) -> float:
    """Cumulative `cost` (+ `offset`, e.g. PivotRL's profiling) at the first point whose `key` reaches
    `target`; inf when none does."""
    for p in curve:
        if p[key] >= target - 1e-12:
            return p.get(cost, 0.0) + offset
    return math.inf


class ForwardKL:
    """D_KL(pi_0 || pi) on fixed in-domain prompts: the first call (the trainer's step-0 evaluation, so
    pi_0 is the start policy) samples `samples` completions per prompt from it and keeps their
    log-probs; every later call returns the mean over those completions of
    sum_t [log pi_0(y_t) - log pi(y_t)], a sequence-level Monte Carlo estimate in nats. ("RL's Razor":
    forgetting out of domain tracks this forward KL on the training distribution.)
    `sample(policy) -> [(prompt_ids, [completion token ids, ...]), ...]` draws the completions."""

    def __init__(self, sample: Callable[[Any], list[tuple[list[int], list[list[int]]]]]):
        self.sample = sample
        self.reference: list[tuple[list[int], list[list[int]]]] = []
        self.start_logprobs: list[list[float]] = []

    @staticmethod
    def _sequence_logprobs(policy: Any, prompt: list[int], completions: list[list[int]]) -> list[float]:
        import torch

        with torch.no_grad():
            out = policy.group_logprobs(prompt, completions)
        return [float(x) for x in (out.logprobs * out.mask).sum(dim=1)]

    def __call__(self, policy: Any) -> float:
        if not self.reference:
            self.reference = [(p, cs) for p, cs in self.sample(policy) if cs]
            self.start_logprobs = [self._sequence_logprobs(policy, p, cs) for p, cs in self.reference]
            return 0.0
        gaps = [a - b for (p, cs), start in zip(self.reference, self.start_logprobs)
                for a, b in zip(start, self._sequence_logprobs(policy, p, cs))]
        return sum(gaps) / max(len(gaps), 1)

