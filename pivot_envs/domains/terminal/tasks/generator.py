"""Seeded generation of terminal tasks, and the train / val / test / held-out-family splits.

Task identity: a task is fixed by (family, task seed). `generate_tasks(n, seed)` deals tasks
round-robin over the families with consecutive task seeds `seed, seed+1, ...`, so the same
arguments always give the same tasks and different seeds give different ones.

Splits use disjoint task-seed ranges (so no train task reappears in val/test), and the held-out
families never appear in train/val/test: they measure out-of-family generalisation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence

from pivot_envs.domains.terminal.tasks.families import FAMILIES
from pivot_envs.domains.terminal.tasks.spec import TaskSpec

SPLITS = ("train", "val", "test", "heldout_families")
HELDOUT_FAMILIES: tuple[str, ...] = ("sqlite_query", "checksums", "dedupe")
# Task-seed ranges per split; `suite(..., seed=s)` takes the s-th block of the split's range.
SPLIT_SEED_RANGES: dict[str, range] = {
    "train": range(1_000_000),
    "val": range(1_000_000, 2_000_000),
    "test": range(2_000_000, 3_000_000),
    "heldout_families": range(3_000_000, 4_000_000),
}
# Locale fixed for every command: `sort` and `ls` then order like Python's sorted().
BASE_ENV: dict[str, str] = {"LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}


def family_names(split: str | None = None) -> list[str]:
    """The families of a split (all families when `split` is None), sorted."""
    if split is None:
        return sorted(FAMILIES)
    _check_split(split)
    if split == "heldout_families":
        return sorted(HELDOUT_FAMILIES)
    return sorted(set(FAMILIES) - set(HELDOUT_FAMILIES))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")


def make_task(family: str, task_seed: int, *, split: str = "") -> TaskSpec:
    """Build the task of `family` for `task_seed` (deterministic)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown terminal task family {family!r}; known families: {sorted(FAMILIES)}")
    rng = random.Random(f"{family}:{task_seed}")  # str seeds are hashed with sha512: stable across runs
    draft = FAMILIES[family].build(rng)
    if not 3 <= len(draft.expert) <= 15:
        raise AssertionError(f"family {family} made an expert with {len(draft.expert)} steps (want 3-15)")
    return TaskSpec(id=f"terminal-{family}-{task_seed}", family=family, seed=task_seed,
                    instruction=draft.instruction, setup=draft.setup, test=draft.test,
                    expert=tuple(draft.expert), final_message=draft.final_message, split=split,
                    env=BASE_ENV | draft.env)


def generate_tasks(n: int, seed: int = 0, families: Iterable[str] | None = None, *,
                   split: str = "") -> list[TaskSpec]:
    """`n` tasks, round-robin over `families` (default: all), task seeds `seed + i // len(families)`."""
    fams: Sequence[str] = sorted(families) if families is not None else sorted(FAMILIES)
    if not fams:
        raise ValueError("families is empty; pass at least one family name")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [make_task(fams[i % len(fams)], seed + i // len(fams), split=split) for i in range(n)]


def suite(split: str, n: int, seed: int = 0) -> list[TaskSpec]:
    """`n` tasks of `split` ("train" | "val" | "test" | "heldout_families"). Different `seed`s give
    disjoint blocks of the split's seed range."""
    _check_split(split)
    fams = family_names(split)
    per_family = max(1, math.ceil(n / len(fams)))
    rng = SPLIT_SEED_RANGES[split]
    start = rng.start + seed * per_family
    if seed < 0 or start + per_family > rng.stop:
        raise ValueError(f"seed {seed} with n={n} leaves the {split} seed range {rng}; use a smaller seed")
    return generate_tasks(n, start, fams, split=split)
