"""PivotRL: GRPO restricted to pivot states, with one-turn local rollouts and a functional reward.

Read top to bottom: config, advantages, loss, the algorithm (collect, then loss).

Each step: draw `pivots_per_step` states from the profiled pivot set; sample `group_size` completions
per state from the current policy; the env's verifier scores each 1 (functionally equivalent to the
demonstration's action) or 0; masked samples (infrastructure failures) are dropped; groups whose
rewards all agree are dropped online (they have no group-relative signal); the rest get
group-normalised advantages and a clipped, token-level PPO/GRPO loss, optionally with a KL penalty
to the frozen start policy.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch

from pivot_algo.algorithms import register_algorithm
from pivot_algo.algorithms.base import (
    Algorithm,
    Batch,
    CollectContext,
    ConfigError,
    TrainGroup,
    pad_logprobs,
)


@dataclasses.dataclass
class PivotRLConfig:
    # --- which states, how many samples
    pivots_per_step: int = 64
    """Pivot states drawn (without replacement) per optimiser step."""
    group_size: int = 16
    """G: completions sampled per pivot state."""
    # --- sampling
    max_new_tokens: int = 256
    """Longest sampled completion (tokens)."""
    temperature: float = 1.0
    """Sampling temperature; the loss scores with the same temperature so importance ratios match."""
    top_p: float = 1.0
    """Nucleus sampling. Keep 1.0 unless you accept ratios computed without the nucleus."""
    # --- advantages
    scale_std: bool = True
    """Divide group-centred rewards by the group's standard deviation (GRPO); off = Dr.GRPO style."""
    leave_one_out: bool = False
    """Baseline of sample i = mean of the OTHER samples of its group (RLOO) instead of the group mean."""
    invalid_tool_call_advantage: float | None = None
    """If set (a public recipe uses -5.0), samples that do not parse as a valid action get this
    advantage instead of the group-relative one. Off by default."""
    # --- loss
    eps_low: float = 0.2
    """Lower clip of the importance ratio: ratio >= 1 - eps_low."""
    eps_high: float = 0.28
    """Upper clip of the importance ratio: ratio <= 1 + eps_high."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the frozen start policy (k3 estimator). 0 = no reference model built."""

    def __post_init__(self) -> None:
        if self.pivots_per_step < 1:
            raise ConfigError(f"pivots_per_step must be >= 1, got {self.pivots_per_step}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 for group-relative advantages, got {self.group_size}")
        if self.leave_one_out and self.group_size < 3:
            raise ConfigError(f"leave_one_out=True needs group_size >= 3 (a baseline of >= 2 others), "
                              f"got group_size={self.group_size}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature must be > 0 for on-policy sampling with log-probs, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 <= self.eps_low < 1 or self.eps_high < 0:
            raise ConfigError(f"clip range needs 0 <= eps_low < 1 and eps_high >= 0, got eps_low={self.eps_low}, "
                              f"eps_high={self.eps_high}")
        if self.kl_coef < 0:
            raise ConfigError(f"kl_coef must be >= 0, got {self.kl_coef}")


# ----------------------------------------------------------------------------- advantages

def group_advantages(rewards: np.ndarray, *, scale_std: bool, leave_one_out: bool, eps: float = 1e-6) -> np.ndarray:
    """Group-relative advantages of one group's rewards (already without masked samples)."""
    g = len(rewards)
    if leave_one_out:
        baseline = (rewards.sum() - rewards) / (g - 1)
    else:
        baseline = np.full(g, rewards.mean())
    adv = rewards - baseline
    if scale_std:
        adv = adv / (rewards.std() + eps)
    return adv


# ----------------------------------------------------------------------------- loss

def clipped_policy_loss(policy: Any, groups: list[TrainGroup], *, temperature: float, eps_low: float,
                        eps_high: float, kl_coef: float = 0.0, reference: Any = None
                        ) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-level clipped surrogate (PPO/GRPO) over every completion token of `groups`, averaged over
    tokens. `reference` (a frozen policy) is only used when kl_coef > 0."""
    total = torch.zeros(())
    n_tokens = 0
    clipped = 0.0
    kl_sum = 0.0
    ratio_sum = 0.0
    for g in groups:
        if g.old_logprobs is None or g.advantages is None:
            raise ValueError("clipped_policy_loss needs old_logprobs and advantages on every group "
                             "(a supervised group has neither)")
        kwargs = {"temperature": temperature} if temperature != 1.0 else {}
        out = policy.group_logprobs(g.prompt_ids, g.completions, **kwargs)
        logprobs, mask = out.logprobs, out.mask
        old = pad_logprobs(g.old_logprobs, logprobs.shape[1]).to(logprobs.device)
        adv = torch.tensor(g.advantages, dtype=torch.float32, device=logprobs.device)[:, None]
        ratio = torch.exp(logprobs - old)
        unclipped = -adv * ratio
        clipped_obj = -adv * torch.clamp(ratio, 1 - eps_low, 1 + eps_high)
        per_token = torch.maximum(unclipped, clipped_obj)
        if kl_coef > 0:
            with torch.no_grad():
                ref_lp = reference.group_logprobs(g.prompt_ids, g.completions, **kwargs).logprobs
            log_r = ref_lp - logprobs
            kl = torch.exp(log_r) - log_r - 1  # k3 estimator of KL(pi || ref), >= 0
            per_token = per_token + kl_coef * kl
            kl_sum += float((kl * mask).sum())
        total = total + (per_token * mask).sum()
        n_tokens += int(mask.sum())
        clipped += float(((unclipped < clipped_obj).float() * mask).sum())
        ratio_sum += float((ratio.detach() * mask).sum())
    n = max(n_tokens, 1)
    metrics = {"losses/policy_loss": float(total.detach()) / n, "losses/clip_frac": clipped / n, "losses/ratio_mean": ratio_sum / n}
    if kl_coef > 0:
        metrics["losses/approx_kl"] = kl_sum / n
    return total / n, metrics


# ----------------------------------------------------------------------------- the algorithm

@register_algorithm("pivotrl")
class PivotRL(Algorithm):
    """GRPO on profiled pivot states with verifier rewards (see module docstring)."""

    Config = PivotRLConfig
    needs_pivots = True
    config: PivotRLConfig

    def __init__(self, config: PivotRLConfig | None = None):
        super().__init__(config)
        self.reference: Any = None  # the frozen start policy, built by setup() only when kl_coef > 0

    def setup(self, policy: Any) -> None:
        if self.config.kl_coef > 0:  # a frozen copy of the start policy
            self.reference = copy.deepcopy(policy)
            for p in self.reference.model.parameters():
                p.requires_grad_(False)

    def choose_states(self, ctx: CollectContext) -> list[Any]:
        """Which start states this step trains on: a uniform draw from the pivot set."""
        if not ctx.pivots:
            raise ConfigError("pivotrl has no pivot states: profiling kept none (every state's samples agreed, or "
                              "its mean was >= lambda_diff). Warm the start policy up with SFT, raise lambda_diff, "
                              "or raise the profiling sample count K")
        k = min(self.config.pivots_per_step, len(ctx.pivots))
        idx = ctx.rng.choice(len(ctx.pivots), size=k, replace=False)
        return [ctx.pivots[i] for i in sorted(idx)]

    def judge(self) -> Any:
        """A local judge replacing the env's verifier (None = the env's functional verifier)."""
        return None

    def group_rewards(self, rewards: np.ndarray, ctx: CollectContext) -> np.ndarray:
        """The rewards one group trains on (its samples' verdicts; the null control shuffles them)."""
        return rewards

    def collect(self, ctx: CollectContext) -> Batch:
        c = self.config
        states = self.choose_states(ctx)
        sampled = ctx.rollouts.sample(states, c.group_size, max_new_tokens=c.max_new_tokens, temperature=c.temperature,
                                      top_p=c.top_p, seed=ctx.seed, judge=self.judge())
        groups, rewards_all, kept, masked = [], [], 0, 0
        for s in sampled:
            keep = [i for i, m in enumerate(s.masked) if not m]  # infra failures never count as 0
            masked += len(s.masked) - len(keep)
            rewards = self.group_rewards(np.array([s.rewards[i] for i in keep], dtype=np.float64), ctx)
            rewards_all.extend(rewards.tolist())
            if len(keep) < 2 or rewards.std() == 0:  # no group-relative signal: drop the group online
                continue
            adv = group_advantages(rewards, scale_std=c.scale_std, leave_one_out=c.leave_one_out and len(keep) >= 3)
            if c.invalid_tool_call_advantage is not None:
                adv = np.where([s.is_invalid[i] for i in keep], c.invalid_tool_call_advantage, adv)
            groups.append(TrainGroup(prompt_ids=s.prompt_ids,
                                     completions=[s.completions[i].token_ids for i in keep],
                                     old_logprobs=[s.completions[i].logprobs for i in keep],
                                     advantages=adv.tolist()))
            kept += 1
        n = max(len(sampled), 1)
        metrics = {"charts/mean_reward": float(np.mean(rewards_all)) if rewards_all else 0.0,
                   "charts/groups": len(sampled), "charts/groups_kept_frac": kept / n,
                   "charts/zero_variance_frac": 1 - kept / n, "charts/masked_samples": masked,
                   "charts/tool_call_frac": float(np.mean([t for s in sampled for t in s.is_tool_call] or [0]))}
        return Batch(groups, metrics)

    def loss(self, policy: Any, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        return clipped_policy_loss(policy, batch.groups, temperature=c.temperature, eps_low=c.eps_low,
                                   eps_high=c.eps_high, kl_coef=c.kl_coef, reference=self.reference)
