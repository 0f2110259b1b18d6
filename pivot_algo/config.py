"""Typed run configuration: what a preset (pivot_algo/presets/*.yaml) may say, checked on load.

A preset is YAML; `key.path=value` overrides (values parsed as YAML) are applied to it first, then the
whole tree is turned into `RunConfig` and its sections. Every section is a dataclass; a key that is not
one of its fields is a `ConfigError` that names the key, its section and the valid keys, so a typo
(`trainers.pivotrl.step=4`) fails at once instead of being silently ignored.

Sections:
- `env`: which env, its constructor kwargs, extra kwargs for episode-mode envs, trajectories;
- `data`: the deterministic held-out / warm-up / train split;
- `warmup`: an optional SFT warm-up of the base on a disjoint split (`enabled` + trainer fields);
- `profile`: `pivot_algo.profiler.ProfileConfig`;
- `trainers.<algorithm>`: fields of `pivot_algo.trainer.TrainConfig` (minus the ones the pipeline
  sets: algorithm, seed, output_dir, run_name, env_name), `algorithm_config` checked against the
  algorithm's own config dataclass;
- `eval`: held-out evaluation sizes and sampling.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pivot_algo.algorithms.base import ConfigError
from pivot_algo.profiler import ProfileConfig

PRESET_DIR = Path(__file__).parent / "presets"

# TrainConfig fields the pipeline fills in itself; a preset setting them would be overwritten.
PIPELINE_TRAIN_FIELDS = frozenset({"algorithm", "seed", "output_dir", "run_name", "env_name"})


# ----------------------------------------------------------------------------- generic dict -> dataclass

def _check_keys(cls: type, values: dict[str, Any], where: str, exclude: frozenset[str] = frozenset()) -> None:
    valid = sorted(f.name for f in dataclasses.fields(cls) if f.name not in exclude)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where}; valid keys: {valid}")


def _is_scalar_type(tp: Any, value: Any) -> bool:
    """Light type check of a YAML scalar against an annotation (int/float/str/bool, Optional of those)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_scalar_type(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    return True  # containers and Any: checked by the section's own __post_init__


def checked_values(cls: type, values: dict[str, Any] | None, where: str,
                   exclude: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`values` after checking its keys and scalar types against `cls`'s fields (numbers written as
    strings coerced); errors name `where` (a dotted path)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping, got {values!r}")
    values = dict(values or {})
    _check_keys(cls, values, where, exclude)
    hints = typing.get_type_hints(cls)
    for key, value in list(values.items()):
        if isinstance(value, str) and _is_scalar_type(hints.get(key, Any), 0.5) and not _is_scalar_type(
                hints.get(key, Any), value):
            try:  # YAML 1.1 reads `1e-3` as a string; a float field takes it as the number it means
                values[key] = value = float(value)
            except ValueError:
                pass
        if not _is_scalar_type(hints.get(key, Any), value):
            raise ConfigError(f"{where}.{key} = {value!r} has the wrong type; expected {hints[key]}")
    return values


def build(cls: type, values: dict[str, Any] | None, where: str, exclude: frozenset[str] = frozenset()) -> Any:
    """`cls(**values)` after `checked_values`."""
    values = checked_values(cls, values, where, exclude)
    try:
        return cls(**values)
    except TypeError as e:  # e.g. a tuple field given a scalar
        raise ConfigError(f"{where}: {e}") from None


# ----------------------------------------------------------------------------- sections

@dataclasses.dataclass
class EnvConfig:
    id: str = "PivotTerminal-v0"
    """A registered Gymnasium id, or `module:Class` of a PivotEnv subclass."""
    kwargs: dict = dataclasses.field(default_factory=dict)
    """Constructor kwargs of every env (e.g. `{sandbox: local}`)."""
    episode_kwargs: dict = dataclasses.field(default_factory=dict)
    """Extra kwargs of episode-mode envs (e.g. `{max_turns: 4}`)."""
    trajectories: Any = None
    """A JSONL path or a list of trajectory dicts (None = the env's built-in suite)."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ConfigError("env.id is empty; name an env, e.g. PivotTerminal-v0 or my.module:MyEnv")
        for name in ("kwargs", "episode_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"env.{name} must be a mapping, got {getattr(self, name)!r}")

    @property
    def name(self) -> str:
        return self.id.split(":")[-1]


@dataclasses.dataclass
class DataConfig:
    split_seed: int = 0
    """Seed of the shuffle that splits trajectories into held-out / warm-up / train."""
    heldout_fraction: float = 0.25
    """Share of trajectories held out for evaluation."""
    warmup_fraction: float = 0.25
    """Share used by the SFT warm-up (only when warmup.enabled)."""
    max_trajectories: int | None = None
    """Use only the first N trajectories after the shuffle (None = all)."""

    def __post_init__(self) -> None:
        if not 0 < self.heldout_fraction < 1 or not 0 <= self.warmup_fraction < 1:
            raise ConfigError(f"data.heldout_fraction must be in (0, 1) and data.warmup_fraction in [0, 1), got "
                              f"{self.heldout_fraction}, {self.warmup_fraction}")
        if self.max_trajectories is not None and self.max_trajectories < 2:
            raise ConfigError(f"data.max_trajectories must be >= 2 (or null), got {self.max_trajectories}")


@dataclasses.dataclass
class TrainerSection:
    """A `trainers.<algorithm>` (or `warmup`) section: TrainConfig fields as given in the preset."""

    algorithm: str
    values: dict = dataclasses.field(default_factory=dict)

    def train_config(self, **plumbing: Any) -> Any:
        """The TrainConfig for one run: the preset's values plus the pipeline's plumbing fields."""
        from pivot_algo.trainer import TrainConfig

        return TrainConfig(**{**self.values, **plumbing, "algorithm": self.algorithm})


def _trainer_section(algorithm: str, values: dict[str, Any] | None, where: str) -> TrainerSection:
    from pivot_algo.trainer import TrainConfig

    values = checked_values(TrainConfig, values, where, exclude=PIPELINE_TRAIN_FIELDS)
    build(TrainConfig, values, where)  # TrainConfig's own rules (ranges, combinations)
    return TrainerSection(algorithm, values)


@dataclasses.dataclass
class WarmupConfig:
    enabled: bool = False
    """Warm the base up with SFT on a disjoint split first (for a base that emits no valid action)."""
    trainer: TrainerSection = dataclasses.field(default_factory=lambda: TrainerSection("sft"))
    """The warm-up's TrainConfig fields (given flat in the preset, beside `enabled`)."""


@dataclasses.dataclass
class EvalConfig:
    max_tasks: int | None = None
    """Evaluate on the first N held-out tasks (None = all)."""
    max_new_tokens: int = 128
    """Longest completion per turn."""
    temperature: float = 0.0
    """Episode sampling temperature (0 = greedy)."""
    samples_per_task: int = 1
    """Episodes per held-out task."""
    pivot_samples: int = 8
    """Samples per held-out pivot state for the mean pivot reward."""
    pivot_temperature: float = 1.0
    """Temperature of those samples."""

    def __post_init__(self) -> None:
        if self.max_tasks is not None and self.max_tasks < 1:
            raise ConfigError(f"eval.max_tasks must be >= 1 (or null), got {self.max_tasks}")
        if self.max_new_tokens < 1 or self.samples_per_task < 1 or self.pivot_samples < 1:
            raise ConfigError(f"eval.max_new_tokens, samples_per_task and pivot_samples must be >= 1, got "
                              f"{self.max_new_tokens}, {self.samples_per_task}, {self.pivot_samples}")


@dataclasses.dataclass
class RayConfig:
    """Profiling on a Ray pool of verifier actors (`pivot_algo.distributed`); off by default."""

    num_actors: int = 0
    """Verifier actors that judge profiling samples in parallel (0 = judge in this process)."""
    address: str | None = None
    """Ray address: None starts (or reuses) a local instance; "auto" or "HOST:PORT" joins a cluster."""
    num_cpus_per_actor: float = 1.0
    """CPUs Ray reserves per actor."""

    def __post_init__(self) -> None:
        if self.num_actors < 0 or not self.num_cpus_per_actor > 0:
            raise ConfigError(f"ray.num_actors must be >= 0 and ray.num_cpus_per_actor > 0, got {self.num_actors}, "
                              f"{self.num_cpus_per_actor}")


@dataclasses.dataclass
class RunConfig:
    """One preset, typed (see the module docstring)."""

    name: str = "run"
    """Output subdirectory name."""
    model: str = "tiny"
    """`pivot_algo.policy.load_policy` spec: tiny, smollm2-135m, or a saved policy directory."""
    sampler: str = "shared_prefix"
    """HF sampling path (`HFPolicy.use_sampler`): "shared_prefix" (shared-prefix decoding, prefix
    reuse across calls, a trajectory's turns in one decode) or "legacy" (the sampler before those:
    prompt KV copied per row, every prompt prefilled from scratch). Same samples; only speed differs."""
    seed: int = 0
    """Seeds training and sampling (profiling too, unless profile.seed is given)."""
    output_dir: str = "runs"
    """Where runs are written."""
    torch_threads: int = 0
    """torch.set_num_threads (0 = leave torch's default)."""
    progress: bool = True
    """Progress bars."""
    algo: str = "pivotrl"
    """What `pivotrl train` trains."""
    plugins: list = dataclasses.field(default_factory=list)
    """Modules or .py files that register outside algorithms (imported before anything is looked up)."""
    pivotrl_after_sft: bool = False
    """`pivotrl run` also trains PivotRL from the SFT checkpoint (an extra row)."""
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    warmup: WarmupConfig = dataclasses.field(default_factory=WarmupConfig)
    profile: ProfileConfig = dataclasses.field(default_factory=ProfileConfig)
    trainers: dict = dataclasses.field(default_factory=dict)
    """algorithm name -> TrainerSection."""
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    ray: RayConfig = dataclasses.field(default_factory=RayConfig)
    raw: dict = dataclasses.field(default_factory=dict, repr=False)
    """The preset tree as loaded (overrides applied), saved with every run."""

    def __post_init__(self) -> None:
        if self.sampler not in ("shared_prefix", "legacy"):
            raise ConfigError(f"sampler must be 'shared_prefix' or 'legacy', got {self.sampler!r}")

    def trainer(self, algorithm: str) -> TrainerSection:
        """The preset's section for `algorithm` (an empty one = TrainConfig defaults)."""
        return self.trainers.get(algorithm) or TrainerSection(algorithm)

    @classmethod
    def from_dict(cls, tree: dict[str, Any]) -> RunConfig:
        """Check and type a preset tree. Outside algorithms must be registered (plugins loaded) first
        so that their `trainers.<name>.algorithm_config` can be checked."""
        from pivot_algo.algorithms import get_algorithm
        from pivot_algo.plugins import load_plugins

        if not isinstance(tree, dict):
            raise ConfigError(f"a preset must be a mapping at the top level, got {type(tree).__name__}")
        tree = dict(tree)
        nested = {"env", "data", "warmup", "profile", "trainers", "eval", "ray"}
        _check_keys(cls, tree, "the preset's top level", exclude=frozenset({"raw"}))
        top = {k: v for k, v in tree.items() if k not in nested}
        run = build(cls, top, "the preset's top level", exclude=frozenset({"raw", *nested}))
        run.raw = tree
        load_plugins(run.plugins)
        run.env = build(EnvConfig, tree.get("env"), "env")
        run.data = build(DataConfig, tree.get("data"), "data")
        run.ray = build(RayConfig, tree.get("ray"), "ray")
        warm = dict(tree.get("warmup") or {})
        enabled = warm.pop("enabled", False)
        if not isinstance(enabled, bool):
            raise ConfigError(f"warmup.enabled must be true or false, got {enabled!r}")
        run.warmup = WarmupConfig(enabled, _trainer_section("sft", warm, "warmup"))
        run.profile = build(ProfileConfig, {"seed": run.seed, **(tree.get("profile") or {})}, "profile")
        trainers = tree.get("trainers") or {}
        if not isinstance(trainers, dict):
            raise ConfigError(f"trainers must map algorithm names to sections, got {trainers!r}")
        run.trainers = {}
        for algo, section in trainers.items():
            algo_cls = get_algorithm(algo)  # unknown names: UnknownAlgorithmError listing the registered ones
            section = section or {}
            run.trainers[algo] = _trainer_section(algo, section, f"trainers.{algo}")
            algo_cls.make_config(section.get("algorithm_config"))
        algo_cls = get_algorithm(run.algo)
        algo_cls.make_config(run.trainer(run.algo).values.get("algorithm_config"))
        run.eval = build(EvalConfig, tree.get("eval"), "eval")
        return run


# ----------------------------------------------------------------------------- loading

def preset_names() -> list[str]:
    return sorted(x.stem for x in PRESET_DIR.glob("*.yaml"))


def apply_overrides(tree: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set `key.path=value` entries (values parsed as YAML) in `tree`, in place; returns it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.path=value")
        key, value = item.split("=", 1)
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return tree


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The preset tree (a path, or the name of a file in pivot_algo/presets) with overrides applied.
    Untyped on purpose: plug-ins it names must load before `RunConfig.from_dict` checks it."""
    p = Path(path)
    if not p.exists() and (PRESET_DIR / f"{path}.yaml").exists():
        p = PRESET_DIR / f"{path}.yaml"
    if not p.exists():
        raise ConfigError(f"config {str(path)!r} not found; give a YAML path or one of {preset_names()}")
    tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: a preset must be a mapping at the top level")
    return apply_overrides(tree, overrides)


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """`load_config` + `RunConfig.from_dict`: the typed preset."""
    return RunConfig.from_dict(load_config(path, overrides))
