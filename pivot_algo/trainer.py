"""One training loop for every registered algorithm.

Per training step: `batch = algorithm.collect(ctx)`, then the update. By default (as in NVIDIA's
recipe) the update is one AdamW step on the whole batch: gradient accumulation over `grad_accum`
micro-batches (each micro-batch's token-mean loss weighted by its share of the batch's tokens, so the
sum is the batch's token mean), gradient clipping, one step. With `update_epochs` > 1 or
`minibatches` > 1 the batch is reused PPO-style: `update_epochs` passes over it, each split into
`minibatches` groups of whole sampled groups, one AdamW step per minibatch. From the second optimiser
step on, the policy no longer equals the sampling policy, so the importance ratio leaves 1 and the
clipped objective of the RL losses actually engages.

Plumbing it owns:
- seeds (python / numpy / torch) and a numpy data generator handed to `collect` (checkpointed);
- a sampling seed per step, derived from (seed, step), so a resumed step samples what an
  uninterrupted run would have;
- checkpoints every `checkpoint_every` steps: model and optimizer state, RNG states, step, the
  algorithm's data-iterator state, the pivot set and the cost counters; `resume_from=` restores them
  exactly (the next step's loss equals an uninterrupted run's: tested);
- metrics to `metrics.jsonl` and TensorBoard, namespaced `losses/`, `charts/`, `costs/`; the whole
  config saved as `config.json` in the run directory `{env}__{algo}__{seed}__{time}`;
- cost accounting, as the paper counts it: rollout turns = model calls generated (one per sampled
  completion, whole-episode turns included), kept apart from sandbox executions (the envs' own
  `rollout_turns` meter: every action an env ran, verification and replay included); sandbox
  seconds, generated tokens, trained tokens, optimiser steps, wall time;
- optional re-profiling of the pivot set with the current policy, when the mean reward plateaus
  (`reprofile_patience`) or when pivot variance collapses (`reprofile_zero_variance_frac`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from pivot_algo.algorithms import get_algorithm
from pivot_algo.algorithms.base import Algorithm, CollectContext, ConfigError
from pivot_algo.plugins import load_plugins
from pivot_algo.rollout import Rollouts, StartState, stable_seed

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainConfig:
    # --- what to train
    algorithm: str = "pivotrl"
    """Registered algorithm name (`pivot_algo.list_algorithms()`)."""
    algorithm_config: dict = dataclasses.field(default_factory=dict)
    """Fields of the algorithm's own config dataclass."""
    plugins: list = dataclasses.field(default_factory=list)
    """Modules or .py files to import before `algorithm` is looked up (they register outside algorithms)."""
    steps: int = 100
    """Optimiser steps."""
    # --- optimiser
    learning_rate: float = 1e-6
    """AdamW learning rate (constant after the warm-up), 1e-6 in the public recipes for large models."""
    warmup_steps: int = 0
    """Optimiser steps of linear learning-rate warm-up from lr/warmup_steps to lr (0 = none). A fresh
    AdamW's first steps are large (its second-moment estimate starts at zero); starting a trained model
    at full rate can undo what it knew before the run learns anything."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    grad_accum: int = 1
    """Micro-batches per optimiser step (splits the collected batch; memory, not maths)."""
    update_epochs: int = 1
    """Passes over each collected batch (PPO epochs). 1 = on-policy, the public recipes' default."""
    minibatches: int = 1
    """Optimiser steps per pass, each on a share of the batch's groups. 1 = one step per batch."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 = no clipping)."""
    # --- run bookkeeping
    seed: int = 0
    """Seeds python, numpy, torch, the data generator and the per-step sampling seeds."""
    checkpoint_every: int = 0
    """Write a resumable checkpoint every N steps (0 = only at the end)."""
    output_dir: str = "runs"
    """Where run directories are created."""
    env_name: str = "env"
    """The env's name in the run name."""
    run_name: str = ""
    """Run directory name; empty = `{env}__{algo}__{seed}__{unix time}`."""
    tensorboard: bool = True
    """Also write TensorBoard event files."""
    progress: bool = True
    """Show a tqdm progress bar."""
    # --- optional re-profiling (pivot algorithms)
    reprofile_patience: int = 0
    """Re-profile pivots with the current policy after this many steps without a mean-reward gain of at
    least `reprofile_min_delta` (0 = never; the paper profiles once)."""
    reprofile_min_delta: float = 0.01
    """What counts as a gain for `reprofile_patience`."""
    reprofile_zero_variance_frac: float = 0.0
    """Re-profile when a step finds at least this share of its pivot groups with zero reward variance
    (the policy has learnt those states, or gave up on them, so they carry no signal any more); 0 = off."""

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]
        if self.steps < 0 or self.warmup_steps < 0:
            raise ConfigError(f"steps and warmup_steps must be >= 0, got {self.steps}, {self.warmup_steps}")
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.grad_accum < 1:
            raise ConfigError(f"grad_accum must be >= 1, got {self.grad_accum}")
        if self.max_grad_norm < 0:
            raise ConfigError(f"max_grad_norm must be >= 0 (0 = off), got {self.max_grad_norm}")
        if self.checkpoint_every < 0 or self.reprofile_patience < 0:
            raise ConfigError(f"checkpoint_every and reprofile_patience must be >= 0, got {self.checkpoint_every}, "
                              f"{self.reprofile_patience}")
        if self.update_epochs < 1 or self.minibatches < 1:
            raise ConfigError(f"update_epochs and minibatches must be >= 1, got {self.update_epochs}, "
                              f"{self.minibatches}")
        if not 0 <= self.reprofile_zero_variance_frac <= 1:
            raise ConfigError(f"reprofile_zero_variance_frac must be in [0, 1] (0 = off), got "
                              f"{self.reprofile_zero_variance_frac}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")


class Evaluator(Protocol):
    """Periodic evaluation during training (a learning curve). `evaluate(policy)` returns numbers (e.g.
    {"eval/in_domain": 0.4}); it runs at step 0 and every `every` steps, its time is excluded from the
    run's wall cost, and `should_stop(curve)` may end training early (a plateau)."""

    every: int

    def evaluate(self, policy: Any) -> dict[str, float]: ...

    def should_stop(self, curve: list[dict[str, float]]) -> bool: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Trainer:
    """Trains `policy` with a registered algorithm; see the module docstring.

    `rollouts` wraps the policy and the env(s); `train_trajectory_ids` is the training split;
    `pivots` the profiled pivot states (needed when the algorithm `needs_pivots`); `reprofile` an
    optional callable returning a fresh pivot set for the current policy."""

    def __init__(self, config: TrainConfig, policy: Any, rollouts: Rollouts, train_trajectory_ids: Sequence[str], *,
                 pivots: Sequence[StartState] | None = None, algorithm: Algorithm | None = None,
                 reprofile: Callable[[], list[StartState]] | None = None, resume_from: str | Path | None = None,
                 extra_config: dict[str, Any] | None = None, evaluator: Evaluator | None = None):
        self.config = config
        self.policy = policy
        self.rollouts = rollouts
        self.train_trajectory_ids = list(train_trajectory_ids)
        self.train_states = rollouts.states(self.train_trajectory_ids)
        if algorithm is None:
            load_plugins(config.plugins)
            cls = get_algorithm(config.algorithm)
            algorithm = cls(cls.make_config(config.algorithm_config))
        self.algorithm = algorithm
        self.pivots = list(pivots or [])
        if algorithm.needs_pivots and not self.pivots:
            raise ConfigError(f"algorithm {config.algorithm!r} trains on pivots, but none were given: profile first "
                              "(pivot_algo.profiler.profile) and pass pivots=report.pivots")
        self.reprofile = reprofile
        seed_everything(config.seed)
        self.rng = np.random.default_rng(config.seed)
        params = [p for p in policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           betas=config.adam_betas)
        warm = config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        self.evaluator = evaluator
        self.eval_seconds = 0.0  # spent in `evaluator`: not a cost of the method, kept out of its wall time
        self.step = 0
        self.trained_tokens = 0
        self.optimizer_steps = 0
        self.reprofiles = 0
        self.curve: list[dict[str, float]] = []  # periodic evaluations (see Evaluator)
        self.wall_offset = 0.0  # wall seconds spent before a resume
        self._best_reward = -float("inf")
        self._since_best = 0
        self.algorithm.setup(policy)

        self.run_dir = self._make_run_dir(resume_from)
        self._save_config(extra_config)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self._writer = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / "tb"))

    # ------------------------------------------------------------------ run directory
    def _make_run_dir(self, resume_from: str | Path | None) -> Path:
        if resume_from is not None:  # <run>/checkpoints/step_N.pt
            return Path(resume_from).resolve().parent.parent
        c = self.config
        name = c.run_name or f"{c.env_name}__{c.algorithm}__{c.seed}__{int(time.time())}"
        run_dir = Path(c.output_dir) / name
        run_dir.mkdir(parents=True, exist_ok=True)
        return run_dir

    def _save_config(self, extra: dict[str, Any] | None) -> None:
        record = {"train": dataclasses.asdict(self.config),
                  "algorithm": {"name": self.config.algorithm, **dataclasses.asdict(self.algorithm.config)},
                  "train_trajectories": self.train_trajectory_ids, "num_pivots": len(self.pivots), **(extra or {})}
        (self.run_dir / "config.json").write_text(json.dumps(record, indent=1, default=str))

    # ------------------------------------------------------------------ one step
    def train_step(self) -> dict[str, float]:
        """Collect, accumulate gradients, clip, step. Returns this step's metrics."""
        t0 = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this step updates with (warm-up moves it after)
        self.policy.model.train()
        ctx = CollectContext(step=self.step, rng=self.rng, seed=stable_seed(self.config.seed, "step", self.step),
                             rollouts=self.rollouts, train_trajectory_ids=self.train_trajectory_ids,
                             train_states=self.train_states, pivots=self.pivots)
        batch = self.algorithm.collect(ctx)
        t_collect = time.perf_counter() - t0
        metrics: dict[str, float] = dict(batch.metrics)
        if batch.empty or batch.num_tokens == 0:
            metrics["charts/skipped_update"] = 1.0  # every group had zero variance: nothing to learn from
        else:
            metrics.update(self._update(batch))
        self.step += 1
        step_s = time.perf_counter() - t0
        metrics.update({"charts/step_seconds": step_s, "charts/collect_seconds": t_collect,
                        "charts/update_seconds": step_s - t_collect,
                        "charts/learning_rate": lr})
        return metrics

    def _update(self, batch: Any) -> dict[str, float]:
        """`update_epochs` passes x `minibatches` optimiser steps over `batch` (1 x 1 by default).
        Loss metrics are averaged over the optimiser steps; `losses/*_last` are the last step's, which is
        where the clipped ratio shows whether the policy moved beyond the trust region."""
        c = self.config
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        sums: dict[str, float] = {}
        last: dict[str, float] = {}
        updates = 0
        for _ in range(c.update_epochs):
            for minibatch in batch.split(c.minibatches):
                self.optimizer.zero_grad(set_to_none=True)
                total = minibatch.num_tokens
                if total == 0:
                    continue
                step_metrics: dict[str, float] = {"losses/loss": 0.0}
                for micro in minibatch.split(c.grad_accum):
                    loss, m = self.algorithm.loss(self.policy, micro)
                    weight = micro.num_tokens / total
                    (loss * weight).backward()
                    step_metrics["losses/loss"] += float(loss.detach()) * weight
                    for k, v in m.items():
                        step_metrics[k] = step_metrics.get(k, 0.0) + v * weight
                if c.max_grad_norm > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm)
                else:
                    grad_norm = torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params if p.grad is not None))
                step_metrics["losses/grad_norm"] = float(grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer_steps += 1
                self.trained_tokens += total
                updates += 1
                for k, v in step_metrics.items():
                    sums[k] = sums.get(k, 0.0) + v
                last = step_metrics
        out = {k: v / max(updates, 1) for k, v in sums.items()}
        if updates > 1:
            out.update({f"{k}_last": v for k, v in last.items()})
        out.update({"charts/skipped_update": 0.0, "charts/trained_tokens_step": float(batch.num_tokens),
                    "charts/optimizer_steps": float(updates)})
        return out

    # ------------------------------------------------------------------ the loop
    def costs(self, wall_seconds: float) -> dict[str, float]:
        """What training has spent so far (rollout turns = model calls; see the module docstring)."""
        c = self.rollouts.costs()
        return {"rollout_turns": c.get("samples", 0), "sandbox_executions": c.get("rollout_turns", 0),
                "sandbox_seconds": c.get("sandbox_seconds", 0.0),
                "generated_tokens": c.get("generated_tokens", 0), "trained_tokens": self.trained_tokens,
                "optimizer_steps": self.optimizer_steps, "reprofiles": self.reprofiles,
                "verdicts": c.get("verdicts", 0), "verdict_cache_hits": c.get("verdict_cache_hits", 0),
                "wall_seconds": wall_seconds}

    def train(self) -> dict[str, Any]:
        """Run the remaining steps; return a summary (final metrics and costs)."""
        t_start = time.perf_counter()
        last: dict[str, float] = {}
        self._trim_jsonl("metrics.jsonl", self.step)
        # Curve points past the checkpoint are dropped; a fresh start (step 0) evaluates its start model
        # again, so it keeps none (a re-used run directory would otherwise hold two step-0 points).
        self.curve = self._trim_jsonl("curve.jsonl", self.step if self.step else -1)
        if self.evaluator is not None and self.step == 0:
            self._evaluate(0.0)  # the curve's first point: the start model
        bar = tqdm(total=self.config.steps, initial=self.step, desc=f"train {self.config.algorithm}",
                   disable=not self.config.progress, unit="step")
        try:
            with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as fh:
                while self.step < self.config.steps:
                    last = self.train_step()
                    self._maybe_reprofile(last)  # before logging: the step's line says whether it re-profiled
                    wall = self.wall_offset + time.perf_counter() - t_start - self.eval_seconds
                    last.update({f"costs/{k}": float(v) for k, v in self.costs(wall).items()})
                    fh.write(json.dumps({"step": self.step, **last}) + "\n")
                    fh.flush()
                    if self._writer is not None:
                        for k, v in last.items():
                            self._writer.add_scalar(k, v, self.step)
                    bar.update(1)
                    bar.set_postfix({k.split("/")[-1]: round(last[k], 4) for k in
                                     ("losses/loss", "charts/mean_reward") if k in last})
                    if self.config.checkpoint_every and self.step % self.config.checkpoint_every == 0:
                        self.save_checkpoint(wall)
                    evaluate_now = self.evaluator is not None and self.step % self.evaluator.every == 0
                    if evaluate_now and self._evaluate(wall):
                        break  # the evaluator saw a plateau
        finally:
            bar.close()
            if self._writer is not None:
                self._writer.flush()
        wall = self.wall_offset + time.perf_counter() - t_start - self.eval_seconds
        return {"run_dir": str(self.run_dir), "steps": self.step, "last_metrics": last, "costs": self.costs(wall),
                "curve": self.curve, "eval_seconds": self.eval_seconds}

    def _evaluate(self, wall: float) -> bool:
        """One point of the learning curve: the evaluator's numbers with this step's costs, appended to
        `curve.jsonl` in the run directory. True when the evaluator says training should stop."""
        assert self.evaluator is not None
        t0 = time.perf_counter()
        self.policy.model.eval()
        numbers = self.evaluator.evaluate(self.policy)
        self.policy.model.train()
        self.eval_seconds += time.perf_counter() - t0
        point = {"step": self.step, **{f"costs/{k}": float(v) for k, v in self.costs(wall).items()}, **numbers}
        with (self.run_dir / "curve.jsonl").open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(point) + "\n")
        self.curve.append(point)
        return self.evaluator.should_stop(self.curve)

    def _maybe_reprofile(self, metrics: dict[str, float]) -> None:
        if self.reprofile is None:
            return
        c = self.config
        collapsed = (c.reprofile_zero_variance_frac > 0 and "charts/zero_variance_frac" in metrics
                     and metrics["charts/zero_variance_frac"] >= c.reprofile_zero_variance_frac)
        if collapsed:
            self._reprofile(f"{metrics['charts/zero_variance_frac']:.2f} of this step's pivot groups had zero "
                            f"variance (threshold {c.reprofile_zero_variance_frac})")
            metrics["charts/reprofiled"] = 1.0
            return
        if not (c.reprofile_patience and "charts/mean_reward" in metrics):
            return
        reward = metrics["charts/mean_reward"]
        if reward > self._best_reward + c.reprofile_min_delta:
            self._best_reward, self._since_best = reward, 0
            return
        self._since_best += 1
        if self._since_best >= c.reprofile_patience:
            self._reprofile(f"mean reward plateaued for {self._since_best} steps")
            metrics["charts/reprofiled"] = 1.0
            self._since_best = 0

    def _reprofile(self, why: str) -> None:
        """Replace the pivot set by the current policy's; an empty result keeps the old set (nothing
        else to train on), and says so."""
        assert self.reprofile is not None
        log.info("%s: re-profiling pivots with the current policy", why)
        fresh = list(self.reprofile())
        self.reprofiles += 1
        if fresh:
            self.pivots = fresh
        else:
            log.warning("re-profiling kept no pivots; training continues on the previous %d", len(self.pivots))

    def _trim_jsonl(self, name: str, last_step: int) -> list[dict[str, Any]]:
        """After a resume, drop the lines of a run-directory log (metrics.jsonl, curve.jsonl) that a killed
        run wrote past `last_step`; returns the rows kept."""
        path = self.run_dir / name
        if not path.exists():
            return []
        keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and (step := _line_step(ln)) is not None and step <= last_step]
        path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
        return [json.loads(ln) for ln in keep]

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, step: int) -> Path:
        return self.run_dir / "checkpoints" / f"step_{step:06d}.pt"

    def save_checkpoint(self, wall_seconds: float = 0.0) -> Path:
        """Everything needed to continue exactly from this step (see module docstring)."""
        path = self.checkpoint_path(self.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "step": self.step, "model": self.policy.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": _rng_state(), "data_rng": self.rng.bit_generator.state, "algorithm": self.algorithm.state_dict(),
            "pivots": [dataclasses.astuple(p) for p in self.pivots], "trained_tokens": self.trained_tokens,
            "rollout_costs": self.rollouts.costs(), "wall_seconds": wall_seconds,
            "reprofile": (self._best_reward, self._since_best), "optimizer_steps": self.optimizer_steps,
            "reprofiles": self.reprofiles,
        }
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # a kill mid-write never leaves a half checkpoint under the real name
        log.info("checkpoint written: %s", path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)
        self.policy.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # older checkpoints had no schedule (constant rate)
            self.scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        self.rng.bit_generator.state = state["data_rng"]
        self.algorithm.load_state_dict(state["algorithm"])
        self.pivots = [StartState(*p) for p in state["pivots"]]
        self.step = state["step"]
        self.trained_tokens = state["trained_tokens"]
        live = self.rollouts.costs()  # whatever the fresh envs already spent is added on top
        self.rollouts.cost_offset = {k: v - live.get(k, 0) for k, v in state["rollout_costs"].items()
                                     if isinstance(v, (int, float))}
        self.wall_offset = state["wall_seconds"]
        self._best_reward, self._since_best = state["reprofile"]
        self.optimizer_steps = state.get("optimizer_steps", self.step)  # older checkpoints: one per step
        self.reprofiles = state.get("reprofiles", 0)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _line_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest `step_N.pt` of a run directory, or None."""
    found = sorted((Path(run_dir) / "checkpoints").glob("step_*.pt"))
    return found[-1] if found else None
