"""Learning curves: the plateau rule, the trainer's periodic evaluator (points, early stop, its time kept
out of the run's wall cost, resumption), and the learning-rate warm-up."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time

import pytest

from pivot_algo.experiments.curves import (
    IN_DOMAIN,
    calls_to_reach,
    plateau_value,
    plateaued,
)
from pivot_algo.rollout import Rollouts
from pivot_algo.trainer import TrainConfig, Trainer


def _points(values, every=10):
    return [{"step": every * i, IN_DOMAIN: v, "costs/rollout_turns": 50.0 * i} for i, v in enumerate(values)]


@pytest.mark.parametrize("values, stop", [
    ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], False),   # still climbing
    ([0.1, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6], True),    # flat for the last quarter
    ([0.1, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.62], False),  # +2 points in the last quarter: not a plateau
    ([0.1, 0.2, 0.2], False),                             # too few points
    ([0.27, 0.13, 0.18, 0.18, 0.18, 0.18, 0.18, 0.18], False),  # flat, never above its start: a slow start
    ([0.27, 0.13, 0.18, 0.18, 0.28, 0.28, 0.28, 0.28], True),   # rose 1 point above its start, then flat
])
def test_plateau_rule(values, stop):
    assert plateaued(_points(values), min_points=5, gain=0.01) is stop


def test_plateau_value_and_calls_to_reach():
    curve = _points([0.1, 0.3, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6])
    assert plateau_value(curve) == pytest.approx(0.6)  # mean of the last quarter of steps (50..70)
    assert calls_to_reach(curve, 0.5) == 100.0 and calls_to_reach(curve, 0.5, offset=7) == 107.0
    assert calls_to_reach(curve, 0.9) == float("inf")


@dataclasses.dataclass
class _CountingEvaluator:
    """Scores a fixed sequence (not the policy): the trainer's wiring is what is under test here."""

    scores: list[float]
    every: int = 2
    sleep: float = 0.0
    calls: int = 0

    def evaluate(self, policy):
        time.sleep(self.sleep)
        self.calls += 1
        return {IN_DOMAIN: self.scores[min(self.calls - 1, len(self.scores) - 1)]}

    def should_stop(self, curve):
        return plateaued(curve, min_points=4, gain=0.01)


def _sft(tmp_path, steps, **kw):
    return TrainConfig(algorithm="sft", algorithm_config={"states_per_step": 2}, steps=steps, learning_rate=1e-3,
                       output_dir=str(tmp_path), progress=False, tensorboard=False, **kw)


def test_evaluator_draws_the_curve_stops_at_a_plateau_and_is_not_charged(tiny_policy, adder_env, tmp_path):
    rollouts = Rollouts(tiny_policy, adder_env)
    ev = _CountingEvaluator([0.1, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4], sleep=0.3)
    trainer = Trainer(_sft(tmp_path, 20, run_name="curve"), tiny_policy, rollouts, rollouts.trajectory_ids(), evaluator=ev)
    t0 = time.perf_counter()
    summary = trainer.train()
    elapsed = time.perf_counter() - t0
    steps = [p["step"] for p in summary["curve"]]
    assert steps[0] == 0 and all(b - a == 2 for a, b in itertools.pairwise(steps))  # start model, then every 2 steps
    assert summary["steps"] < 20 and summary["steps"] == steps[-1]  # the plateau stopped it early
    assert summary["eval_seconds"] >= 0.3 * ev.calls
    # The evaluations' time is not the method's: wall cost = elapsed minus evaluation time.
    assert summary["costs"]["wall_seconds"] <= elapsed - 0.3 * ev.calls + 0.05
    lines = (tmp_path / "curve" / "curve.jsonl").read_text().splitlines()
    assert len(lines) == len(steps)


def test_warmup_ramps_the_learning_rate_linearly(tiny_policy, adder_env, tmp_path):
    rollouts = Rollouts(tiny_policy, adder_env)
    trainer = Trainer(_sft(tmp_path, 6, warmup_steps=4), tiny_policy, rollouts, rollouts.trajectory_ids())
    rates = [trainer.train_step()["charts/learning_rate"] for _ in range(6)]
    # The rate a step reports is the one it stepped with: 1/4, 2/4, 3/4, then the full rate.
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_a_rerun_in_the_same_run_directory_keeps_one_curve(tiny_policy, adder_env, tmp_path):
    # The paper table re-uses run names: a cell killed and started again must not leave two step-0 points.
    rollouts = Rollouts(tiny_policy, adder_env)
    for _ in range(2):
        ev = _CountingEvaluator([0.1, 0.2, 0.3])
        summary = Trainer(_sft(tmp_path, 4, run_name="again"), tiny_policy, rollouts, rollouts.trajectory_ids(),
                          evaluator=ev).train()
    steps = [json.loads(line)["step"] for line in (tmp_path / "again" / "curve.jsonl").read_text().splitlines()]
    assert steps == [p["step"] for p in summary["curve"]] == [0, 2, 4]


def test_forward_kl_is_zero_for_the_start_policy_and_grows_when_it_moves(tiny_policy, adder_env):
    import copy

    import torch

    from pivot_algo.experiments.curves import ForwardKL

    rollouts = Rollouts(tiny_policy, adder_env)
    states = rollouts.states(rollouts.trajectory_ids())[:4]

    def sample(policy):
        groups = Rollouts(policy, adder_env).sample(states, 3, max_new_tokens=4, temperature=1.0, seed=0)
        return [(g.prompt_ids, [c.token_ids for c in g.completions]) for g in groups]

    probe = ForwardKL(sample)
    assert probe(tiny_policy) == 0.0 and len(probe.reference) == 4  # step 0: the start policy itself
    assert probe(tiny_policy) == pytest.approx(0.0, abs=1e-6)
    moved = copy.deepcopy(tiny_policy)
    with torch.no_grad():
        for p in moved.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert abs(probe(moved)) > 1e-3
