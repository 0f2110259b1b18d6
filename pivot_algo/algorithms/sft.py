"""SFT: cross-entropy on the demonstration's assistant turns (the baseline PivotRL is compared with).

`unit="turn"`: each step takes the next `states_per_step` assistant turns of the training
trajectories from a shuffled epoch order (reshuffled every epoch with the trainer's data generator;
the order and the position are checkpointed, so a resumed run sees the same turns). The loss is the
token-level mean negative log-likelihood of the demonstration turn (end-of-turn token included)
after its prompt.

`unit="trajectory"`: each step takes `trajectories_per_step` whole conversations and computes the
same token-level loss over all their assistant turns in ONE forward pass per conversation (tool and
user tokens masked out). Same objective, but a T-turn conversation's shared history is computed once
instead of T times - this is how SFT is usually run, and several times cheaper on long trajectories.
It relies on the chat template's prefix property (turn k's prompt + target is a prefix of turn k+1's
prompt), which the policy tests check; a trajectory that breaks it falls back to per-turn groups.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.base import (
    Algorithm,
    Batch,
    CollectContext,
    ConfigError,
    TrainGroup,
)


@dataclasses.dataclass
class SFTConfig:
    states_per_step: int = 16
    """Assistant turns (start states with their demonstration) per optimiser step."""
    max_completion_tokens: int = 0
    """Truncate demonstration turns longer than this (0 = keep whole turns)."""
    unit: str = "turn"
    """"turn": one group per assistant turn; "trajectory": one packed forward per conversation."""
    trajectories_per_step: int = 2
    """Whole conversations per optimiser step when unit="trajectory"."""

    def __post_init__(self) -> None:
        if self.unit not in ("turn", "trajectory"):
            raise ConfigError(f"unit must be 'turn' or 'trajectory', got {self.unit!r}")
        if self.trajectories_per_step < 1:
            raise ConfigError(f"trajectories_per_step must be >= 1, got {self.trajectories_per_step}")
        if self.states_per_step < 1:
            raise ConfigError(f"states_per_step must be >= 1, got {self.states_per_step}")
        if self.max_completion_tokens < 0:
            raise ConfigError(f"max_completion_tokens must be >= 0 (0 = no limit), got {self.max_completion_tokens}")


def packed_trajectory(rollouts: Any, states: list[Any]) -> list[TrainGroup]:
    """One group for a whole conversation: prompt = the history before the first turn, one completion
    = everything after it up to the end of the last turn, mask = 1 on the demonstration turns. (One
    group per turn instead when the chat template breaks the prefix property.)"""
    demos = [rollouts.demonstration(s) for s in states]
    last_prompt, last_target = demos[-1]
    full = last_prompt + last_target
    start = len(demos[0][0])
    mask = [0.0] * (len(full) - start)
    for prompt, target in demos:
        if full[: len(prompt) + len(target)] != prompt + target:  # template breaks the prefix property
            return [TrainGroup(prompt_ids=p, completions=[t]) for p, t in demos]
        for i in range(len(prompt), len(prompt) + len(target)):
            mask[i - start] = 1.0
    return [TrainGroup(prompt_ids=full[:start], completions=[full[start:]], token_masks=[mask])]


@register_algorithm("sft")
class SFT(Algorithm):
    """Supervised fine-tuning on the same trajectories PivotRL uses."""

    Config = SFTConfig
    config: SFTConfig

    def __init__(self, config: SFTConfig | None = None):
        super().__init__(config)
        self._order: list[int] = []  # indices into ctx.train_states for the current epoch
        self._pos = 0
        self.epoch = 0

    def _next_states(self, ctx: CollectContext) -> list[Any]:
        if not ctx.train_states:
            raise ConfigError("sft has no training states: the training split has no trajectories")
        out: list[Any] = []
        while len(out) < min(self.config.states_per_step, len(ctx.train_states)):
            if self._pos >= len(self._order):  # a new epoch, freshly shuffled
                self._order = ctx.rng.permutation(len(ctx.train_states)).tolist()
                self._pos = 0
                self.epoch += 1
            out.append(ctx.train_states[self._order[self._pos]])
            self._pos += 1
        return out

    def _next_trajectories(self, ctx: CollectContext) -> list[list[Any]]:
        """The start states of the next `trajectories_per_step` trajectories (turn order kept)."""
        by_traj: dict[str, list[Any]] = {}
        for s in ctx.train_states:
            by_traj.setdefault(s.trajectory_id, []).append(s)
        ids = sorted(by_traj)
        out: list[list[Any]] = []
        while len(out) < min(self.config.trajectories_per_step, len(ids)):
            if self._pos >= len(self._order):
                self._order = ctx.rng.permutation(len(ids)).tolist()
                self._pos = 0
                self.epoch += 1
            out.append(sorted(by_traj[ids[self._order[self._pos]]], key=lambda s: s.turn))
            self._pos += 1
        return out

    def collect(self, ctx: CollectContext) -> Batch:
        groups = []
        if self.config.unit == "trajectory":
            for states in self._next_trajectories(ctx):
                groups.extend(packed_trajectory(ctx.rollouts, states))
            return Batch(groups, {"charts/epoch": float(self.epoch)})
        for state in self._next_states(ctx):
            prompt, target = ctx.rollouts.demonstration(state)
            if self.config.max_completion_tokens:
                target = target[: self.config.max_completion_tokens]
            groups.append(TrainGroup(prompt_ids=prompt, completions=[target]))
        return Batch(groups, {"charts/epoch": float(self.epoch)})

    def loss(self, policy: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        total = torch.zeros(())
        n_tokens = 0
        for g in batch.groups:
            out = policy.group_logprobs(g.prompt_ids, g.completions)
            mask = out.mask
            if g.token_masks is not None:
                weights = torch.zeros_like(mask)
                for i, m in enumerate(g.token_masks):
                    weights[i, : len(m)] = torch.tensor(m, dtype=mask.dtype)
                mask = mask * weights
            total = total - (out.logprobs * mask).sum()
            n_tokens += int(mask.sum())
        loss = total / max(n_tokens, 1)
        return loss, {"losses/nll": float(loss.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"order": list(self._order), "pos": self._pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._pos, self.epoch = list(state["order"]), int(state["pos"]), int(state["epoch"])
