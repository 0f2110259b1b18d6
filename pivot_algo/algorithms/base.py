"""What every algorithm is made of: a config dataclass, `collect` and `loss`.

The trainer calls, once per optimiser step:

    batch = algorithm.collect(ctx)            # which start states, how samples are obtained
    loss, metrics = algorithm.loss(policy, b) # for each micro-batch b of batch (gradient accumulation)

`collect` sees start states (`StartState`: trajectory id + turn), sampled completions and verdicts
through `ctx.rollouts`; it never touches env internals. The `Batch` it returns is a list of
`TrainGroup`s: completions that share one prompt, with their sampling log-probs and advantages (RL)
or without them (supervised). `loss` returns a token-level mean over the micro-batch it is given; the
trainer weights micro-batches by their token counts, so accumulation gives the full batch's mean.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from pivot_envs.errors import PivotError


class ConfigError(PivotError, ValueError):
    """A configuration value (or a combination of values) is invalid. The message quotes them."""


@dataclasses.dataclass
class TrainGroup:
    """Completions sharing one prompt, ready for the loss.

    `old_logprobs[i]` are the sampling log-probs of completion i (one per token), `advantages[i]` its
    advantage; both are None for supervised groups."""

    prompt_ids: list[int]
    completions: list[list[int]]
    old_logprobs: list[list[float]] | None = None
    advantages: list[float] | None = None
    token_masks: list[list[float]] | None = None
    """Per-token loss weights of each completion (None = every token counts). A whole packed
    conversation is one completion whose mask is 1 on assistant turns and 0 on tool/user turns."""

    @property
    def num_tokens(self) -> int:
        if self.token_masks is not None:
            return int(sum(sum(m) for m in self.token_masks))
        return sum(len(c) for c in self.completions)


@dataclasses.dataclass
class Batch:
    """What one optimiser step trains on, plus the metrics gathered while collecting it."""

    groups: list[TrainGroup]
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return sum(g.num_tokens for g in self.groups)

    @property
    def empty(self) -> bool:
        return not self.groups

    def split(self, parts: int) -> list[Batch]:
        """`parts` micro-batches of whole groups (round robin), dropping empty ones."""
        chunks = [self.groups[i::parts] for i in range(parts)]
        return [Batch(c) for c in chunks if c]


@dataclasses.dataclass
class CollectContext:
    """What `collect` may use. `rng` is the trainer's data generator (checkpointed with the run);
    `seed` a per-step sampling seed; `pivots` the profiled pivot states (empty unless the algorithm
    `needs_pivots`); `train_states` every assistant turn of the training trajectories."""

    step: int
    rng: np.random.Generator
    seed: int
    rollouts: Any  # pivot_algo.rollout.Rollouts
    train_trajectory_ids: list[str]
    train_states: list[Any]  # list[StartState]
    pivots: list[Any]  # list[StartState]


class Algorithm(abc.ABC):
    """Base class of every algorithm. Subclasses set `Config` (a dataclass) and implement
    `collect` and `loss`; `needs_pivots` says whether the trainer must profile pivots first."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = type(None)
    needs_pivots: ClassVar[bool] = False

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    @classmethod
    def make_config(cls, values: dict[str, Any] | None) -> Any:
        """Build `Config` from a dict (presets, CLI); unknown keys are an error that lists the known ones."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.name or cls.__name__} config key(s) {unknown}; known keys: {sorted(known)}")
        return cls.Config(**values)

    def setup(self, policy: Any) -> None:
        """Called once before training (e.g. to build a frozen reference policy)."""

    @abc.abstractmethod
    def collect(self, ctx: CollectContext) -> Batch:
        """Obtain this step's training data."""

    @abc.abstractmethod
    def loss(self, policy: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Token-level mean loss over `batch` (differentiable) and scalar metrics."""

    # Data-iterator state that must survive a checkpoint (e.g. an epoch order and a position).
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def pad_logprobs(rows: Sequence[Sequence[float]], width: int) -> torch.Tensor:
    """Right-pad per-token log-prob lists into a [len(rows), width] float tensor (pads are 0)."""
    out = torch.zeros(len(rows), width, dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(list(r), dtype=torch.float32)
    return out
