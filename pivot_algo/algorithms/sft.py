"""SFT: cross-entropy on the demonstration's assistant turns (the baseline PivotRL is compared with).

Each step takes the next `states_per_step` assistant turns of the training trajectories from a
shuffled epoch order (reshuffled every epoch with the trainer's data generator; the order and the
position are checkpointed, so a resumed run sees the same turns). The loss is the token-level mean
negative log-likelihood of the demonstration turn (end-of-turn token included) after its prompt.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.base import Algorithm, Batch, CollectContext, ConfigError, TrainGroup


@dataclasses.dataclass
class SFTConfig:
    states_per_step: int = 16
    """Assistant turns (start states with their demonstration) per optimiser step."""
    max_completion_tokens: int = 0
    """Truncate demonstration turns longer than this (0 = keep whole turns)."""

    def __post_init__(self) -> None:
        if self.states_per_step < 1:
            raise ConfigError(f"states_per_step must be >= 1, got {self.states_per_step}")
        if self.max_completion_tokens < 0:
            raise ConfigError(f"max_completion_tokens must be >= 0 (0 = no limit), got {self.max_completion_tokens}")


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
        out = []
        while len(out) < min(self.config.states_per_step, len(ctx.train_states)):
            if self._pos >= len(self._order):  # a new epoch, freshly shuffled
                self._order = ctx.rng.permutation(len(ctx.train_states)).tolist()
                self._pos = 0
                self.epoch += 1
            out.append(ctx.train_states[self._order[self._pos]])
            self._pos += 1
        return out

    def collect(self, ctx: CollectContext) -> Batch:
        groups = []
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
            total = total - (out.logprobs * out.mask).sum()
            n_tokens += int(out.mask.sum())
        loss = total / max(n_tokens, 1)
        return loss, {"losses/nll": float(loss.detach())}

    def state_dict(self) -> dict[str, Any]:
        return {"order": list(self._order), "pos": self._pos, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._order, self._pos, self.epoch = list(state["order"]), int(state["pos"]), int(state["epoch"])
