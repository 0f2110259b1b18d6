"""SFT with unit="trajectory" (one packed forward per conversation) has the same loss and gradient as
SFT with unit="turn" over the same turns - it only avoids recomputing the shared history."""

from __future__ import annotations

import numpy as np
import torch

from pivot_algo.algorithms import get_algorithm
from pivot_algo.algorithms.base import CollectContext
from pivot_algo.rollout import Rollouts, StartState


def _ctx(rollouts, states):
    return CollectContext(step=0, rng=np.random.default_rng(0), seed=0, rollouts=rollouts,
                          train_trajectory_ids=sorted({s.trajectory_id for s in states}),
                          train_states=states, pivots=[])


def test_packed_trajectory_loss_equals_per_turn_loss(tiny_policy, adder_env):
    traj = adder_env.trajectories[0]
    states = [StartState(traj.id, k) for k in range(traj.num_turns)]
    rollouts = Rollouts(tiny_policy, adder_env)
    SFT = get_algorithm("sft")
    per_turn = SFT(SFT.Config(states_per_step=len(states)))
    packed = SFT(SFT.Config(unit="trajectory", trajectories_per_step=1))

    results = []
    for algo in (per_turn, packed):
        batch = algo.collect(_ctx(rollouts, states))
        tiny_policy.model.zero_grad()
        loss, _ = algo.loss(tiny_policy, batch)
        loss.backward()
        grads = [p.grad.detach().clone() for p in tiny_policy.model.parameters() if p.grad is not None]
        results.append((float(loss.detach()), batch.num_tokens, grads))
    (loss_a, tok_a, g_a), (loss_b, tok_b, g_b) = results
    assert len(packed.collect(_ctx(rollouts, states)).groups) == 1  # really packed
    assert tok_a == tok_b
    assert abs(loss_a - loss_b) < 1e-4
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-3)
